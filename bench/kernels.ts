/**
 * `deno task bench:kernels`: kernel throughput beside the device's measured ceilings.
 *
 * GEMM TFLOP/s for ViT-B's encoder (768 / 3072 wide on B x 152 rows) and decoder (384 / 1536 on
 * B x 1568 rows) Linear layers, forward and both backward GEMMs, against the best of a large square
 * GEMM; attention TFLOP/s forward and backward at N = 152 and 1568 (head dim 64); LayerNorm and AdamW
 * GB/s against a device-to-device copy. `--record` writes the table to bench/results/.
 * On the host build the shapes shrink (`--batch`) so that it finishes in reasonable time, and the
 * kernels run in f32, the dtype host training uses (`--dtype` to choose). `--only attention,gemm`
 * limits the run to some sections (gemm, attention, layernorm, adamw).
 */
import { type DeviceChoice, native, openNative } from "../lib/ffi/native.ts";
import { allocPersistent, freePersistent } from "../lib/memory.ts";
import { memset } from "../lib/ffi/pointers.ts";
import type { Tensor } from "../lib/tensor.ts";
import { recordResult, timeMs } from "./timing.ts";
import { parseFlags } from "../lib/task_cli.ts";

const USAGE = "usage: deno task bench:kernels [--device auto|host|cuda] [--batch N] [--iters 10] [--record]";
const { values } = parseFlags("deno task bench:kernels", USAGE, {
  options: {
    device: { type: "string", default: "auto" },
    batch: { type: "string" },
    record: { type: "boolean", default: false },
    iters: { type: "string", default: "10" },
    dtype: { type: "string" },
    only: { type: "string" },
  },
});
const n = await openNative({ device: values.device as DeviceChoice });
const gpu = n.isCuda;
/** The compute stream every launch goes to. */
const stream = n.stream;
const batch = Number(values.batch ?? (gpu ? 256 : 2));
const iters = Number(values.iters);
if (!Number.isInteger(batch) || batch < 1) {
  throw new RangeError(`--batch must be a positive integer, got ${values.batch}`);
}
const device = n.deviceName();
const BF16 = 1;
const F32 = 0;
const dtypeName = values.dtype ?? (gpu ? "bf16" : "f32");
if (dtypeName !== "f32" && dtypeName !== "bf16") {
  throw new RangeError(`--dtype must be f32 or bf16, got ${dtypeName}`);
}
/** The dtype of the activations and weights under test. */
const DT = dtypeName === "bf16" ? BF16 : F32;
const SECTIONS = ["gemm", "attention", "layernorm", "adamw"];
const only = values.only?.split(",") ?? SECTIONS;
for (const s of only) {
  if (!SECTIONS.includes(s)) throw new RangeError(`--only takes ${SECTIONS.join(", ")}, got ${s}`);
}
console.log(`kernels on ${device}, batch ${batch}, ${dtypeName}\n`);
const lines: string[] = [];
const row = (name: string, value: string, ceiling = "") => {
  const line = `| ${name} | ${value} | ${ceiling} |`;
  lines.push(line);
  console.log(`${name.padEnd(48)} ${value.padStart(14)}  ${ceiling}`);
};

/** FLOP/s in TFLOP/s, or GFLOP/s below one TFLOP/s (the host build). */
const flops = (perSecond: number) =>
  perSecond >= 1e12 ? `${(perSecond / 1e12).toFixed(1)} TFLOP/s` : `${(perSecond / 1e9).toFixed(1)} GFLOP/s`;

const live: Tensor[] = [];
function buf(numel: number, dtype: "f32" | "bf16" | "u8" = dtypeName as "f32" | "bf16"): Tensor {
  const t = allocPersistent([numel], dtype);
  memset(t.ptr, 0x3c, t.bytes); // small finite values in both f32 and bf16
  live.push(t);
  return t;
}
function freeAll(): void {
  while (live.length) freePersistent(live.pop()!);
}

function gemmTflops(
  m: number,
  nn: number,
  k: number,
  ta: number,
  tb: number,
  cDtype = DT,
  beta = 0,
): number {
  const a = buf(m * k);
  const b = buf(k * nn);
  const c = buf(m * nn, cDtype === F32 ? "f32" : "bf16");
  const ms = timeMs(
    () =>
      native().call(
        "vs_gemm",
        DT,
        cDtype,
        ta,
        tb,
        m,
        nn,
        k,
        1,
        a.ptr,
        b.ptr,
        beta,
        c.ptr,
        null,
        0,
        null,
        stream,
      ),
    { iters },
  );
  freeAll();
  return (2 * m * nn * k) / (ms * 1e-3);
}

// Ceilings: the best square bf16 GEMM, and a device-to-device copy.
const sq = gpu ? 8192 : 1024;
const ceilingGemm = gemmTflops(sq, sq, sq, 0, 1);
const copyBytes = gpu ? 1 << 30 : 1 << 27;
const src = buf(copyBytes, "u8");
const dst = buf(copyBytes, "u8");
const copyMs = timeMs(() => native().call("vs_memcpy", dst.ptr, src.ptr, copyBytes, 3, stream), {
  iters,
});
freeAll();
// A copy reads and writes every byte.
const copyGBs = (2 * copyBytes) / (copyMs * 1e6);
row(`GEMM ceiling: ${dtypeName} ${sq}^3`, flops(ceilingGemm));
row(`copy ceiling: ${copyBytes >> 20} MiB device to device`, `${copyGBs.toFixed(0)} GB/s`);

const shapes: [string, number, number, number][] = [
  ["encoder qkv", batch * 152, 2304, 768],
  ["encoder proj", batch * 152, 768, 768],
  ["encoder fc1", batch * 152, 3072, 768],
  ["encoder fc2", batch * 152, 768, 3072],
  ["decoder qkv", batch * 1568, 1152, 384],
  ["decoder fc1", batch * 1568, 1536, 384],
  ["decoder fc2", batch * 1568, 384, 1536],
];
for (const [name, m, out, inp] of only.includes("gemm") ? shapes : []) {
  const pct = (t: number) => `${((100 * t) / ceilingGemm).toFixed(0)}% of ceiling`;
  const fwd = gemmTflops(m, out, inp, 0, 1);
  row(`GEMM ${name} fwd (${m}x${out}x${inp})`, flops(fwd), pct(fwd));
  const dx = gemmTflops(m, inp, out, 0, 0);
  row(`GEMM ${name} dX`, flops(dx), pct(dx));
  const dw = gemmTflops(out, inp, m, 1, 0, F32, 1);
  row(`GEMM ${name} dW (f32 accumulate)`, flops(dw), pct(dw));
}

const attentionShapes = [["encoder", 152, 12], ["decoder", 1568, 6]] as const;
for (const [label, tokens, heads] of only.includes("attention") ? attentionShapes : []) {
  const d = 64;
  const b = gpu ? batch : 1;
  const qkv = buf(b * tokens * 3 * heads * d);
  const out = buf(b * tokens * heads * d);
  const dout = buf(b * tokens * heads * d);
  const dqkv = buf(b * tokens * 3 * heads * d);
  const lse = buf(b * heads * tokens, "f32");
  const wsBytes = native().attentionWorkspaceBytes(DT, b, tokens, heads, d);
  const ws = buf(Math.max(wsBytes, 1), "u8");
  const scale = 1 / Math.sqrt(d);
  const fwdFlops = 4 * b * heads * tokens * tokens * d;
  const fwd = timeMs(
    () =>
      native().call("vs_attention_fwd", DT, b, tokens, heads, d, scale, qkv.ptr, out.ptr, lse.ptr, stream),
    {
      iters,
    },
  );
  row(`attention fwd ${label} N=${tokens} B=${b} H=${heads} d=64`, flops(fwdFlops / (fwd * 1e-3)));
  const bwd = timeMs(
    () =>
      native().call(
        "vs_attention_bwd",
        DT,
        b,
        tokens,
        heads,
        d,
        scale,
        qkv.ptr,
        out.ptr,
        dout.ptr,
        lse.ptr,
        dqkv.ptr,
        ws.ptr,
        wsBytes,
        stream,
      ),
    { iters },
  );
  // The backward does 2.5x the forward's matmul work (five N x N x d products against two).
  row(`attention bwd ${label} N=${tokens} B=${b} H=${heads} d=64`, flops((2.5 * fwdFlops) / (bwd * 1e-3)));
  row(`attention fwd+bwd ${label}`, flops((3.5 * fwdFlops) / ((fwd + bwd) * 1e-3)));
  freeAll();
}

if (only.includes("layernorm")) {
  const rows = batch * 1568;
  const cols = 384;
  const x = buf(rows * cols);
  const r = buf(rows * cols);
  const s = buf(rows * cols);
  const y = buf(rows * cols);
  const g = buf(cols);
  const be = buf(cols);
  const mean = buf(rows, "f32");
  const rstd = buf(rows, "f32");
  const ms = timeMs(
    () =>
      native().call(
        "vs_layernorm_fwd",
        DT,
        rows,
        cols,
        1e-6,
        x.ptr,
        r.ptr,
        s.ptr,
        g.ptr,
        be.ptr,
        y.ptr,
        mean.ptr,
        rstd.ptr,
        stream,
      ),
    { iters },
  );
  // Reads x and the residual, writes their sum and the normalised output.
  const gbs = (4 * rows * cols * (DT === BF16 ? 2 : 4)) / (ms * 1e6);
  row(
    `layernorm+residual fwd ${dtypeName} ${rows}x${cols}`,
    `${gbs.toFixed(0)} GB/s`,
    `${((100 * gbs) / copyGBs).toFixed(0)}% of copy`,
  );
  freeAll();
}
if (only.includes("adamw")) {
  const count = gpu ? 94_211_328 : 4_000_000;
  const p = buf(count, "f32");
  const copy = buf(count, "bf16");
  const gr = buf(count, "f32");
  const m = buf(count, "f32");
  const v = buf(count, "f32");
  const ms = timeMs(
    () =>
      native().call(
        "vs_adamw",
        count,
        p.ptr,
        copy.ptr,
        gr.ptr,
        m.ptr,
        v.ptr,
        1e-3,
        0.9,
        0.95,
        1e-8,
        0.05,
        1,
        null,
        stream,
      ),
    {
      iters,
    },
  );
  // Per value: param, m, v read and written (24 bytes), the gradient read (4), the bf16 copy written (2).
  const gbs = (30 * count) / (ms * 1e6);
  row(
    `AdamW ${(count / 1e6).toFixed(1)}M params (f32 + bf16 copy)`,
    `${gbs.toFixed(0)} GB/s`,
    `${((100 * gbs) / copyGBs).toFixed(0)}% of copy`,
  );
  freeAll();
}

if (values.record) {
  const body =
    `batch ${batch}, ${dtypeName}, ${iters} timed iterations after 3 warm-up calls\n\n| kernel | throughput | against the ceiling |\n| --- | --- | --- |\n${
      lines.join("\n")
    }`;
  console.log(`\nrecorded in ${await recordResult("kernels", device, body)}`);
}
