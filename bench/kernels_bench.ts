/**
 * `deno bench`: kernel microbenchmarks on the default device (the GPU when one is usable). Each
 * iteration waits for the device, so the times are end to end. For TFLOP/s and GB/s beside the
 * device's ceilings run `deno task bench:kernels`.
 */
import { native, openNative } from "../lib/ffi/native.ts";
import { memset } from "../lib/ffi/pointers.ts";
import { allocPersistent } from "../lib/memory.ts";

const n = await openNative({ quiet: true });
const gpu = n.isCuda;
const BF16 = 1;
const sync = () => native().call("vs_stream_sync", native().stream);
const buf = (numel: number, dtype: "f32" | "bf16" = "bf16") => {
  const t = allocPersistent([numel], dtype);
  memset(t.ptr, 0x3c, t.bytes);
  return t;
};

const rows = gpu ? 64 * 152 : 2 * 152;
const x = buf(rows * 768);
const w = buf(3072 * 768);
const y = buf(rows * 3072);
const bias = buf(3072);
Deno.bench(`gemm bf16 ${rows}x3072x768 + bias`, { group: "gemm" }, () => {
  native().call(
    "vs_gemm",
    BF16,
    BF16,
    0,
    1,
    rows,
    3072,
    768,
    1,
    x.ptr,
    w.ptr,
    0,
    y.ptr,
    bias.ptr,
    1,
    null,
    native().stream,
  );
  sync();
});
Deno.bench(`gemm bf16 ${rows}x3072x768 + bias + gelu`, { group: "gemm" }, () => {
  native().call(
    "vs_gemm",
    BF16,
    BF16,
    0,
    1,
    rows,
    3072,
    768,
    1,
    x.ptr,
    w.ptr,
    0,
    y.ptr,
    bias.ptr,
    2,
    y.ptr,
    native().stream,
  );
  sync();
});

const [b, tokens, heads, d] = gpu ? [64, 1568, 6, 64] : [1, 392, 6, 64];
const qkv = buf(b * tokens * 3 * heads * d);
const out = buf(b * tokens * heads * d);
const lse = buf(b * heads * tokens, "f32");
Deno.bench(`attention fwd bf16 B=${b} N=${tokens} H=${heads} d=${d}`, () => {
  native().call(
    "vs_attention_fwd",
    BF16,
    b,
    tokens,
    heads,
    d,
    0.125,
    qkv.ptr,
    out.ptr,
    lse.ptr,
    native().stream,
  );
  sync();
});

const lnRows = gpu ? 64 * 1568 : 2 * 1568;
const lx = buf(lnRows * 384);
const ly = buf(lnRows * 384);
const gamma = buf(384);
const mean = buf(lnRows, "f32");
const rstd = buf(lnRows, "f32");
Deno.bench(`layernorm fwd bf16 ${lnRows}x384`, () => {
  native().call(
    "vs_layernorm_fwd",
    BF16,
    lnRows,
    384,
    1e-6,
    lx.ptr,
    null,
    null,
    gamma.ptr,
    gamma.ptr,
    ly.ptr,
    mean.ptr,
    rstd.ptr,
    native().stream,
  );
  sync();
});

const count = gpu ? 94_211_328 : 2_000_000;
const p = buf(count, "f32");
const g = buf(count, "f32");
const m = buf(count, "f32");
const v = buf(count, "f32");
const copy = buf(count);
Deno.bench(`adamw ${(count / 1e6).toFixed(0)}M params`, () => {
  native().call(
    "vs_adamw",
    count,
    p.ptr,
    copy.ptr,
    g.ptr,
    m.ptr,
    v.ptr,
    1e-3,
    0.9,
    0.95,
    1e-8,
    0.05,
    1,
    null,
    native().stream,
  );
  sync();
});
