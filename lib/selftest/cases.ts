/**
 * The GPU self-test's kernel cases: every entry point of cuda/vswift.h called with fresh random inputs
 * (never zeros) on shapes the models use. Each case names its buffers; the runner (compare.ts) gives
 * both builds the same bits, poisons pure outputs with NaN first, and compares what comes back.
 */
import { hostPointer, type Pointer, ptrOffset } from "../ffi/pointers.ts";
import type { Native } from "../ffi/native.ts";
import { Rng } from "../rng.ts";
import { BF16, code, F32, type KernelCase, randn, TOL } from "./kernel_case.ts";
import { mixCases } from "./mix_cases.ts";

const U8 = 2;

/** A host-memory float array as a pointer, for arguments such as mean_std. */
function hostFloats(values: number[]): Pointer {
  const a = Float32Array.from(values);
  keepAlive.push(a);
  return hostPointer(a);
}
const keepAlive: ArrayBufferView[] = [];

function distinctRows(rng: Rng, b: number, nSrc: number, nIdx: number): Int32Array {
  const idx = new Int32Array(b * nIdx);
  for (let i = 0; i < b; i++) idx.set(rng.permutation(nSrc).slice(0, nIdx), i * nIdx);
  return idx;
}

function gemmCases(rng: Rng): KernelCase[] {
  const out: KernelCase[] = [];
  const pairs: ["f32" | "bf16", "f32" | "bf16"][] = [["f32", "f32"], ["bf16", "bf16"], ["bf16", "f32"]];
  const epis = ["none", "bias", "gelu_bias", "dgelu"] as const;
  for (const [ab, c] of pairs) {
    for (const ta of [0, 1]) {
      for (const tb of [0, 1]) {
        for (const [e, epi] of epis.entries()) {
          const [m, n, k] = [96, 64, 80];
          const beta = e === 0 && ta === 1 ? 1 : 0; // the weight-gradient form accumulates
          out.push({
            name: `vs_gemm ${ab}->${c} ${ta ? "T" : "N"}${tb ? "T" : "N"} ${epi}${beta ? " beta 1" : ""}`,
            tol: TOL[ab],
            buffers: {
              a: { dtype: ab, n: m * k, data: randn(rng, m * k) },
              b: { dtype: ab, n: k * n, data: randn(rng, k * n, 0.2) },
              c: { dtype: c, n: m * n, data: beta ? randn(rng, m * n) : undefined, output: true },
              bias: { dtype: c, n, data: randn(rng, n) },
              aux: epi === "dgelu"
                ? { dtype: c, n: m * n, data: randn(rng, m * n) }
                : { dtype: c, n: m * n, output: epi === "gelu_bias" },
            },
            call: (nat, p) =>
              nat.call(
                "vs_gemm",
                code(ab),
                code(c),
                ta,
                tb,
                m,
                n,
                k,
                1,
                p.a,
                p.b,
                beta,
                p.c,
                e === 1 || e === 2 ? p.bias : null,
                e,
                e >= 2 ? p.aux : null,
                null,
              ),
          });
        }
      }
    }
  }
  // An encoder-sized Linear: 2 x 152 visible tokens through qkv of ViT-B.
  const [m, n, k] = [304, 2304, 768];
  out.push({
    name: "vs_gemm bf16 NT bias (ViT-B qkv)",
    tol: TOL.bf16,
    buffers: {
      a: { dtype: "bf16", n: m * k, data: randn(rng, m * k) },
      b: { dtype: "bf16", n: n * k, data: randn(rng, n * k, 0.03) },
      c: { dtype: "bf16", n: m * n, output: true },
      bias: { dtype: "bf16", n, data: randn(rng, n) },
    },
    call: (nat, p) =>
      nat.call("vs_gemm", BF16, BF16, 0, 1, m, n, k, 1, p.a, p.b, 0, p.c, p.bias, 1, null, null),
  });
  // GELU_BIAS with a NULL bias (vswift.h: no bias), in both builds.
  out.push({
    name: "vs_gemm bf16 NT gelu_bias without a bias",
    tol: TOL.bf16,
    buffers: {
      a: { dtype: "bf16", n: 96 * 80, data: randn(rng, 96 * 80) },
      b: { dtype: "bf16", n: 64 * 80, data: randn(rng, 64 * 80, 0.2) },
      c: { dtype: "bf16", n: 96 * 64, output: true },
      aux: { dtype: "bf16", n: 96 * 64, output: true },
    },
    call: (nat, p) =>
      nat.call("vs_gemm", BF16, BF16, 0, 1, 96, 64, 80, 1, p.a, p.b, 0, p.c, null, 2, p.aux, null),
  });
  out.push(...unalignedGemmCases(rng));
  return out;
}

/**
 * GEMMs whose rows are not a multiple of 16 bytes: ViT-g/14's decoder MLP (width 512, hidden 2234; a
 * bf16 row of 2234 is 4468 bytes) in every form a training step calls, an odd shape with 2-byte rows,
 * and inputs offset by one row, as sub-views of a flat buffer are.
 */
function unalignedGemmCases(rng: Rng): KernelCase[] {
  const out: KernelCase[] = [];
  const [tokens, dim, hidden] = [300, 512, 2234];
  const forms = [
    // [name, c dtype, trans_a, trans_b, m, n, k, epilogue, beta]
    ["fc1 forward NT gelu_bias", "bf16", 0, 1, tokens, hidden, dim, 2, 0],
    ["fc1 forward NT bias", "bf16", 0, 1, tokens, hidden, dim, 1, 0],
    ["fc2 forward NT bias", "bf16", 0, 1, tokens, dim, hidden, 1, 0],
    ["fc2 input grad NN dgelu", "bf16", 0, 0, tokens, hidden, dim, 3, 0],
    ["fc1 input grad NN", "bf16", 0, 0, tokens, dim, hidden, 0, 0],
    ["fc1 weight grad TN beta 1", "f32", 1, 0, hidden, dim, tokens, 0, 1],
    ["fc2 weight grad TN beta 1", "f32", 1, 0, dim, hidden, tokens, 0, 1],
  ] as const;
  for (const [what, c, ta, tb, m, n, k, e, beta] of forms) {
    out.push({
      name: `vs_gemm bf16->${c} ${what} (ViT-g/14 decoder MLP, m ${m} n ${n} k ${k})`,
      tol: TOL.bf16,
      buffers: {
        a: { dtype: "bf16", n: m * k, data: randn(rng, m * k) },
        b: { dtype: "bf16", n: k * n, data: randn(rng, k * n, 0.05) },
        c: { dtype: c, n: m * n, data: beta ? randn(rng, m * n) : undefined, output: true },
        bias: { dtype: c, n, data: randn(rng, n) },
        aux: e === 3
          ? { dtype: c, n: m * n, data: randn(rng, m * n) }
          : { dtype: c, n: m * n, output: e === 2 },
      },
      call: (nat, p) =>
        nat.call(
          "vs_gemm",
          BF16,
          code(c),
          ta,
          tb,
          m,
          n,
          k,
          1,
          p.a,
          p.b,
          beta,
          p.c,
          e === 1 || e === 2 ? p.bias : null,
          e,
          e >= 2 ? p.aux : null,
          null,
        ),
    });
  }
  // Rows of 2 bytes' alignment (odd n and k in bf16), every transpose.
  for (const [ta, tb] of [[0, 0], [0, 1], [1, 0], [1, 1]] as const) {
    const [m, n, k] = [37, 45, 51];
    out.push({
      name: `vs_gemm bf16->bf16 ${ta ? "T" : "N"}${tb ? "T" : "N"} bias, odd m ${m} n ${n} k ${k}`,
      tol: TOL.bf16,
      buffers: {
        a: { dtype: "bf16", n: m * k, data: randn(rng, m * k) },
        b: { dtype: "bf16", n: k * n, data: randn(rng, k * n, 0.2) },
        c: { dtype: "bf16", n: m * n, output: true },
        bias: { dtype: "bf16", n, data: randn(rng, n) },
      },
      call: (nat, p) =>
        nat.call("vs_gemm", BF16, BF16, ta, tb, m, n, k, 1, p.a, p.b, 0, p.c, p.bias, 1, null, null),
    });
  }
  // Operands and bias starting one element (a, bias) or one row (b) into their buffers, as sub-views of
  // flat buffers do: 2-, 4- and 4-byte aligned pointers.
  {
    const [m, n, k] = [300, 2234, 512];
    out.push({
      name: `vs_gemm bf16->f32 NN bias, inputs offset into their buffers (m ${m} n ${n} k ${k})`,
      tol: TOL.bf16,
      buffers: {
        a: { dtype: "bf16", n: m * k + 1, data: randn(rng, m * k + 1) },
        b: { dtype: "bf16", n: (k + 1) * n, data: randn(rng, (k + 1) * n, 0.05) },
        c: { dtype: "f32", n: m * n, output: true },
        bias: { dtype: "f32", n: n + 1, data: randn(rng, n + 1) },
      },
      call: (nat, p) =>
        nat.call(
          "vs_gemm",
          BF16,
          F32,
          0,
          0,
          m,
          n,
          k,
          1,
          ptrOffset(p.a, 2),
          ptrOffset(p.b, n * 2),
          0,
          p.c,
          ptrOffset(p.bias, 4),
          1,
          null,
          null,
        ),
    });
  }
  return out;
}

/** The opt-in shared memory per block of sm_86 / sm_89 GPUs (99 KiB). */
const SMEM_99K = 101376;

/**
 * Every attention configuration the CUDA build can select on sm_80, sm_86, sm_89 and sm_90: each padded
 * head_dim (32 to 128 in steps of 16), and for 80, 96 and 112 the smaller backward tiles that fit 99 KiB
 * of shared memory, forced on any GPU through VSWIFT_ATTENTION_SMEM.
 */
function attentionCases(rng: Rng, small: boolean): KernelCase[] {
  const shapes = [
    [2, 152, 12, 64],
    // The whole decoder sequence of ViT-B; on the simulator a sequence of 3 query tiles with a tail.
    [1, small ? 300 : 1568, 6, 64],
    [2, 37, 2, 64],
    [1, 197, 16, 80],
    [1, 200, 16, 88],
    [1, 65, 4, 32],
    [1, 90, 4, 40],
    [1, 100, 2, 112],
    [1, 70, 2, 128],
  ];
  const out: KernelCase[] = [];
  for (const [b, n, h, d] of shapes) {
    const qkv = randn(rng, b * n * 3 * h * d);
    const scale = 1 / Math.sqrt(d);
    out.push({
      name: `vs_attention_fwd bf16 b${b} n${n} h${h} d${d}`,
      tol: TOL.bf16,
      buffers: {
        qkv: { dtype: "bf16", n: qkv.length, data: qkv },
        out: { dtype: "bf16", n: b * n * h * d, output: true },
        lse: { dtype: "f32", n: b * h * n, output: true },
      },
      call: (nat, p) => nat.call("vs_attention_fwd", BF16, b, n, h, d, scale, p.qkv, p.out, p.lse, null),
    });
    out.push(attentionBwdCase(rng, [b, n, h, d]));
    if (d > 64 && d <= 112) out.push(attentionBwdCase(rng, [b, n, h, d], SMEM_99K));
  }
  return out;
}

function attentionBwdCase(rng: Rng, [b, n, h, d]: number[], smemLimit?: number): KernelCase {
  const qkv = randn(rng, b * n * 3 * h * d);
  const dout = randn(rng, b * n * h * d);
  const scale = 1 / Math.sqrt(d);
  const limited = smemLimit !== undefined;
  return {
    name: `vs_attention_bwd bf16 b${b} n${n} h${h} d${d}${
      limited ? ` (${smemLimit} B smem: sm_86/sm_89 tiles)` : ""
    }`,
    tol: TOL.bf16,
    buffers: {
      qkv: { dtype: "bf16", n: qkv.length, data: qkv },
      out: { dtype: "bf16", n: dout.length },
      lse: { dtype: "f32", n: b * h * n },
      dout: { dtype: "bf16", n: dout.length, data: dout },
      dqkv: { dtype: "bf16", n: qkv.length, output: true },
    },
    call: (nat, p) => {
      // The backward takes the forward's own out and lse, as in training.
      nat.call("vs_attention_fwd", BF16, b, n, h, d, scale, p.qkv, p.out, p.lse, null);
      const ws = nat.attentionWorkspaceBytes(BF16, b, n, h, d);
      const wsPtr = ws > 0 ? nat.alloc(ws) : null;
      let failing = true;
      if (limited) Deno.env.set("VSWIFT_ATTENTION_SMEM", String(smemLimit));
      try {
        nat.call(
          "vs_attention_bwd",
          BF16,
          b,
          n,
          h,
          d,
          scale,
          p.qkv,
          p.out,
          p.dout,
          p.lse,
          p.dqkv,
          wsPtr,
          ws,
          null,
        );
        nat.call("vs_stream_sync", null);
        failing = false;
      } finally {
        if (limited) Deno.env.delete("VSWIFT_ATTENTION_SMEM");
        nat.freeAll([wsPtr], failing);
      }
    },
  };
}

/**
 * LayerNorm at ViT-B's width, and at ViT-g's 1408, where the CUDA backward keeps its column sums in
 * shared memory instead of registers.
 */
function normCases(rng: Rng, dt: "f32" | "bf16", [rows, cols]: [number, number]): KernelCase[] {
  const wide = cols > 1024 ? ` ${cols} cols` : "";
  const eps = 1e-6;
  const x = randn(rng, rows * cols, 2);
  const r = randn(rng, rows * cols);
  const gamma = randn(rng, cols);
  const beta = randn(rng, cols);
  const dy = randn(rng, rows * cols);
  const c = code(dt);
  return [
    {
      name: `vs_layernorm_fwd ${dt}${wide}`,
      tol: TOL[dt],
      buffers: {
        x: { dtype: dt, n: x.length, data: x },
        gamma: { dtype: dt, n: cols, data: gamma },
        beta: { dtype: dt, n: cols, data: beta },
        y: { dtype: dt, n: x.length, output: true },
        mean: { dtype: "f32", n: rows, output: true },
        rstd: { dtype: "f32", n: rows, output: true },
      },
      call: (n, p) =>
        n.call(
          "vs_layernorm_fwd",
          c,
          rows,
          cols,
          eps,
          p.x,
          null,
          null,
          p.gamma,
          p.beta,
          p.y,
          p.mean,
          p.rstd,
          null,
        ),
    },
    {
      name: `vs_layernorm_fwd ${dt} with residual${wide}`,
      tol: TOL[dt],
      buffers: {
        x: { dtype: dt, n: x.length, data: x },
        r: { dtype: dt, n: x.length, data: r },
        sum: { dtype: dt, n: x.length, output: true },
        gamma: { dtype: dt, n: cols, data: gamma },
        beta: { dtype: dt, n: cols, data: beta },
        y: { dtype: dt, n: x.length, output: true },
        mean: { dtype: "f32", n: rows, output: true },
        rstd: { dtype: "f32", n: rows, output: true },
      },
      call: (n, p) =>
        n.call(
          "vs_layernorm_fwd",
          c,
          rows,
          cols,
          eps,
          p.x,
          p.r,
          p.sum,
          p.gamma,
          p.beta,
          p.y,
          p.mean,
          p.rstd,
          null,
        ),
    },
    {
      name: `vs_layernorm_bwd ${dt} accumulating${wide}`,
      tol: TOL[dt],
      buffers: {
        x: { dtype: dt, n: x.length, data: x },
        gamma: { dtype: dt, n: cols, data: gamma },
        beta: { dtype: dt, n: cols, data: beta },
        y: { dtype: dt, n: x.length },
        mean: { dtype: "f32", n: rows },
        rstd: { dtype: "f32", n: rows },
        dy: { dtype: dt, n: x.length, data: dy },
        dx: { dtype: dt, n: x.length, data: randn(rng, x.length), output: true },
        dgamma: { dtype: "f32", n: cols, data: randn(rng, cols), output: true },
        dbeta: { dtype: "f32", n: cols, data: randn(rng, cols), output: true },
      },
      call: (n, p) => {
        n.call(
          "vs_layernorm_fwd",
          c,
          rows,
          cols,
          eps,
          p.x,
          null,
          null,
          p.gamma,
          p.beta,
          p.y,
          p.mean,
          p.rstd,
          null,
        );
        n.call(
          "vs_layernorm_bwd",
          c,
          rows,
          cols,
          p.x,
          p.gamma,
          p.mean,
          p.rstd,
          p.dy,
          p.dx,
          1,
          p.dgamma,
          p.dbeta,
          null,
        );
      },
    },
  ];
}

function elementwiseCases(rng: Rng, dt: "f32" | "bf16"): KernelCase[] {
  const c = code(dt);
  const n = 100_003; // odd, so the vector paths meet a tail
  const [outer, inner] = [301, 768];
  const a = randn(rng, n);
  const b = randn(rng, n);
  const bi = { dtype: dt, n, data: a } as const;
  return [
    {
      name: `vs_add ${dt}`,
      tol: TOL[dt],
      buffers: { a: bi, b: { dtype: dt, n, data: b }, o: { dtype: dt, n, output: true } },
      call: (k, p) => k.call("vs_add", c, n, p.a, p.b, p.o, null),
    },
    {
      name: `vs_axpby ${dt}`,
      tol: TOL[dt],
      buffers: { x: bi, y: { dtype: dt, n, data: b, output: true } },
      call: (k, p) => k.call("vs_axpby", c, n, 0.7, p.x, -1.3, p.y, null),
    },
    {
      name: `vs_fill ${dt}`,
      tol: TOL[dt],
      buffers: { o: { dtype: dt, n, output: true } },
      call: (k, p) => k.call("vs_fill", c, n, 3.25, p.o, null),
    },
    {
      name: `vs_add_bcast ${dt}`,
      tol: TOL[dt],
      buffers: {
        a: { dtype: dt, n: outer * inner, data: randn(rng, outer * inner) },
        b: { dtype: dt, n: inner, data: randn(rng, inner) },
        o: { dtype: dt, n: outer * inner, output: true },
      },
      call: (k, p) => k.call("vs_add_bcast", c, outer, inner, p.a, p.b, p.o, null),
    },
    {
      name: `vs_sum_outer ${dt} accumulating`,
      tol: TOL[dt],
      buffers: {
        x: { dtype: dt, n: outer * inner, data: randn(rng, outer * inner) },
        o: { dtype: "f32", n: inner, data: randn(rng, inner), output: true },
      },
      call: (k, p) => k.call("vs_sum_outer", c, outer, inner, p.x, p.o, 1, null),
    },
    {
      name: `vs_scale_rows ${dt}`,
      tol: TOL[dt],
      buffers: {
        x: { dtype: dt, n: outer * inner, data: randn(rng, outer * inner) },
        s: { dtype: "f32", n: outer, data: randn(rng, outer) },
        o: { dtype: dt, n: outer * inner, output: true },
      },
      call: (k, p) => k.call("vs_scale_rows", c, outer, inner, p.x, p.s, p.o, null),
    },
    {
      name: `vs_gelu_fwd ${dt}`,
      tol: TOL[dt],
      buffers: { x: { dtype: dt, n, data: randn(rng, n, 3) }, y: { dtype: dt, n, output: true } },
      call: (k, p) => k.call("vs_gelu_fwd", c, n, p.x, p.y, null),
    },
    {
      name: `vs_gelu_bwd ${dt}`,
      tol: TOL[dt],
      buffers: { x: { dtype: dt, n, data: randn(rng, n, 3) }, dy: bi, dx: { dtype: dt, n, output: true } },
      call: (k, p) => k.call("vs_gelu_bwd", c, n, p.x, p.dy, p.dx, null),
    },
    {
      name: `vs_mean_tokens_fwd ${dt}`,
      tol: TOL[dt],
      buffers: {
        x: { dtype: dt, n: 2 * 1568 * 64, data: randn(rng, 2 * 1568 * 64) },
        o: { dtype: dt, n: 128, output: true },
      },
      call: (k, p) => k.call("vs_mean_tokens_fwd", c, 2, 1568, 64, p.x, p.o, null),
    },
    {
      name: `vs_mean_tokens_bwd ${dt} accumulating`,
      tol: TOL[dt],
      buffers: {
        d: { dtype: dt, n: 128, data: randn(rng, 128) },
        dx: { dtype: dt, n: 2 * 1568 * 64, data: randn(rng, 2 * 1568 * 64), output: true },
      },
      call: (k, p) => k.call("vs_mean_tokens_bwd", c, 2, 1568, 64, p.d, p.dx, 1, null),
    },
    {
      name: `vs_max_tokens_fwd ${dt}`,
      tol: TOL[dt],
      buffers: {
        x: { dtype: dt, n: 2 * 1568 * 64, data: randn(rng, 2 * 1568 * 64) },
        o: { dtype: dt, n: 128, output: true },
        // Both builds see the same bits and break ties the same way, so the argmax must agree exactly.
        a: { dtype: "i32", n: 128, output: true, tol: 0 },
      },
      call: (k, p) => k.call("vs_max_tokens_fwd", c, 2, 1568, 64, p.x, p.o, p.a, null),
    },
    ...[0, 1].map((accumulate) => ({
      name: `vs_max_tokens_bwd ${dt}${accumulate ? " accumulating" : ""}`,
      tol: TOL[dt],
      buffers: {
        d: { dtype: dt, n: 128, data: randn(rng, 128) },
        a: { dtype: "i32" as const, n: 128, data: Int32Array.from({ length: 128 }, () => rng.int(1568)) },
        dx: {
          dtype: dt,
          n: 2 * 1568 * 64,
          data: accumulate ? randn(rng, 2 * 1568 * 64) : undefined,
          output: true,
        },
      },
      call: (k: Native, p: Record<string, Pointer>) =>
        k.call("vs_max_tokens_bwd", c, 2, 1568, 64, p.d, p.a, p.dx, accumulate, null),
    })),
  ];
}

function castCases(rng: Rng): KernelCase[] {
  const n = 4099;
  const u8 = Uint8Array.from({ length: n }, () => rng.int(256));
  return [
    {
      name: "vs_cast f32->bf16",
      tol: 0,
      buffers: { s: { dtype: "f32", n, data: randn(rng, n, 100) }, d: { dtype: "bf16", n, output: true } },
      call: (k, p) => k.call("vs_cast", F32, BF16, n, p.s, p.d, null),
    },
    {
      name: "vs_cast bf16->f32",
      tol: 0,
      buffers: { s: { dtype: "bf16", n, data: randn(rng, n) }, d: { dtype: "f32", n, output: true } },
      call: (k, p) => k.call("vs_cast", BF16, F32, n, p.s, p.d, null),
    },
    {
      name: "vs_cast u8->bf16",
      tol: 0,
      buffers: { s: { dtype: "u8", n, data: u8 }, d: { dtype: "bf16", n, output: true } },
      call: (k, p) => k.call("vs_cast", U8, BF16, n, p.s, p.d, null),
    },
    {
      name: "vs_memset (an odd byte count)",
      tol: 0,
      buffers: { d: { dtype: "u8", n, output: true } },
      call: (k, p) => k.call("vs_memset", p.d, 0x5a, n, null),
    },
  ];
}

function tokenCases(rng: Rng, dt: "f32" | "bf16"): KernelCase[] {
  const c = code(dt);
  const [b, nSrc, nIdx, ch] = [3, 1568, 152, 384];
  const idx = distinctRows(rng, b, nSrc, nIdx);
  return [
    {
      name: `vs_gather_rows ${dt}`,
      tol: TOL[dt],
      buffers: {
        src: { dtype: dt, n: b * nSrc * ch, data: randn(rng, b * nSrc * ch) },
        idx: { dtype: "i32", n: idx.length, data: idx },
        dst: { dtype: dt, n: b * nIdx * ch, output: true },
      },
      call: (k, p) => k.call("vs_gather_rows", c, b, nSrc, nIdx, ch, p.src, 0, p.idx, p.dst, null),
    },
    {
      name: `vs_gather_rows ${dt} shared source`,
      tol: TOL[dt],
      buffers: {
        src: { dtype: dt, n: nSrc * ch, data: randn(rng, nSrc * ch) },
        idx: { dtype: "i32", n: idx.length, data: idx },
        dst: { dtype: dt, n: b * nIdx * ch, output: true },
      },
      call: (k, p) => k.call("vs_gather_rows", c, b, nSrc, nIdx, ch, p.src, 1, p.idx, p.dst, null),
    },
    {
      name: `vs_scatter_rows ${dt} accumulating`,
      tol: TOL[dt],
      buffers: {
        src: { dtype: dt, n: b * nIdx * ch, data: randn(rng, b * nIdx * ch) },
        idx: { dtype: "i32", n: idx.length, data: idx },
        dst: { dtype: dt, n: b * nSrc * ch, data: randn(rng, b * nSrc * ch), output: true },
      },
      call: (k, p) => k.call("vs_scatter_rows", c, b, nSrc, nIdx, ch, p.src, p.idx, p.dst, 1, null),
    },
    {
      name: `vs_sinusoid_table ${dt}`,
      tol: TOL[dt],
      buffers: { o: { dtype: dt, n: 2048 * 1408, output: true } },
      call: (k, p) => k.call("vs_sinusoid_table", c, 2048, 1408, p.o, null),
    },
  ];
}

function videoCases(rng: Rng, small: boolean): KernelCase[] {
  // On the simulator 96 x 96 frames (288 tokens) instead of 224 x 224 (1568).
  const side = small ? 96 : 224;
  const [b, ch, t, h, w, tub, pt] = [2, 3, 16, side, side, 2, 16];
  const n = b * ch * t * h * w;
  const tokens = (t / tub) * (h / pt) * (w / pt);
  const idx = distinctRows(rng, b, tokens, 152);
  const pixels = Uint8Array.from({ length: n }, () => rng.int(256));
  const floats = randn(rng, n);
  const norm = hostFloats([0.485, 0.456, 0.406, 0.229, 0.224, 0.225]);
  const feat = ch * tub * pt * pt;
  const cases: KernelCase[] = [];
  for (const [inDt, data] of [["u8", pixels], ["f32", floats], ["bf16", floats]] as const) {
    const inCode = inDt === "u8" ? U8 : code(inDt);
    const ms = inDt === "u8" ? norm : null;
    cases.push({
      name: `vs_patchify ${inDt}->bf16 (152 tokens of ViT-B)`,
      tol: TOL.bf16,
      buffers: {
        v: { dtype: inDt, n, data },
        idx: { dtype: "i32", n: idx.length, data: idx },
        o: { dtype: "bf16", n: b * 152 * feat, output: true },
      },
      call: (k, p) =>
        k.call("vs_patchify", inCode, BF16, b, ch, t, h, w, tub, pt, ms, p.v, p.idx, 152, p.o, null),
    });
    cases.push({
      name: `vs_patch_target ${inDt} (all tokens)`,
      tol: inDt === "bf16" ? TOL.bf16 : TOL.f32 * 10,
      buffers: { v: { dtype: inDt, n, data }, o: { dtype: "f32", n: b * tokens * feat, output: true } },
      call: (k, p) =>
        k.call("vs_patch_target", inCode, b, ch, t, h, w, tub, pt, 1e-6, ms, p.v, null, tokens, p.o, null),
    });
  }
  return cases;
}

function augmentCases(rng: Rng): KernelCase[] {
  const [frames, h, w] = [40, 180, 320];
  const pixels = Uint8Array.from({ length: frames * h * w * 3 }, () => rng.int(256));
  const idx = Int32Array.from({ length: 16 }, (_, i) => (i * 2 + 3) % frames);
  keepAlive.push(idx);
  const norm = hostFloats([0.485, 0.456, 0.406, 0.229, 0.224, 0.225]);
  const cases: KernelCase[] = [];
  for (
    const [dt, antialias, flip, pix] of [["bf16", 1, 0, 0], ["f32", 0, 1, 0], ["f32", 1, 1, 0], [
      "f32",
      1,
      0,
      1,
    ]] as const
  ) {
    cases.push({
      name: `vs_crop_resize_normalize ${
        pix ? "yuv420p" : "rgb24"
      }->${dt} antialias ${antialias} flip ${flip}`,
      tol: TOL[dt],
      buffers: {
        f: { dtype: "u8", n: pixels.length, data: pixels },
        o: { dtype: dt, n: 3 * 16 * 224 * 224, output: true },
      },
      call: (k, p) =>
        k.call(
          "vs_crop_resize_normalize",
          code(dt),
          pix, // VS_PIX_RGB24 or VS_PIX_YUV420P (which reads the first 40 x 270 x 320 bytes as 40 frames)
          frames,
          h,
          w,
          p.f,
          16,
          hostPointer(idx),
          37.5,
          11,
          231,
          158.4,
          224,
          224,
          antialias,
          flip,
          norm,
          p.o,
          null,
        ),
    });
  }
  return cases;
}

function lossCases(rng: Rng, dt: "f32" | "bf16"): KernelCase[] {
  const c = code(dt);
  const n = 2 * 1416 * 1536;
  const pred = randn(rng, n);
  const target = randn(rng, n);
  const [rows, classes] = [64, 174];
  const logits = randn(rng, rows * classes, 3);
  const soft = Float32Array.from({ length: rows * classes }, () => rng.float() / classes * 2);
  return [
    {
      name: `vs_mse_fwd ${dt}`,
      tol: TOL[dt],
      buffers: {
        p: { dtype: dt, n, data: pred },
        t: { dtype: "f32", n, data: target },
        l: { dtype: "f32", n: 1, output: true },
      },
      call: (k, p) => k.call("vs_mse_fwd", c, n, p.p, p.t, p.l, null),
    },
    {
      name: `vs_mse_bwd ${dt}`,
      tol: TOL[dt],
      buffers: {
        p: { dtype: dt, n, data: pred },
        t: { dtype: "f32", n, data: target },
        dl: { dtype: "f32", n: 1, data: [1.7] },
        d: { dtype: dt, n, output: true },
      },
      call: (k, p) => k.call("vs_mse_bwd", c, n, p.p, p.t, p.dl, p.d, null),
    },
    {
      name: `vs_softmax_xent_fwd ${dt}`,
      tol: TOL[dt],
      buffers: {
        z: { dtype: dt, n: rows * classes, data: logits },
        t: { dtype: "f32", n: rows * classes, data: soft },
        l: { dtype: "f32", n: 1, output: true },
        lse: { dtype: "f32", n: rows, output: true },
      },
      call: (k, p) => k.call("vs_softmax_xent_fwd", c, rows, classes, p.z, p.t, p.l, p.lse, null),
    },
    {
      name: `vs_softmax_xent_bwd ${dt}`,
      tol: TOL[dt],
      buffers: {
        z: { dtype: dt, n: rows * classes, data: logits },
        t: { dtype: "f32", n: rows * classes, data: soft },
        l: { dtype: "f32", n: 1 },
        lse: { dtype: "f32", n: rows },
        dl: { dtype: "f32", n: 1, data: [0.5] },
        d: { dtype: dt, n: rows * classes, output: true },
      },
      call: (k, p) => {
        k.call("vs_softmax_xent_fwd", c, rows, classes, p.z, p.t, p.l, p.lse, null);
        k.call("vs_softmax_xent_bwd", c, rows, classes, p.z, p.t, p.lse, p.dl, p.d, null);
      },
    },
    {
      // A masked-out class: a -inf logit under a zero target adds nothing (not 0 * inf = NaN).
      name: `vs_softmax_xent_fwd ${dt} with -inf logits under zero targets`,
      tol: TOL[dt],
      buffers: {
        z: { dtype: dt, n: rows * classes, data: logits.map((v, i) => (i % classes === 3 ? -Infinity : v)) },
        t: { dtype: "f32", n: rows * classes, data: soft.map((v, i) => (i % classes === 3 ? 0 : v)) },
        l: { dtype: "f32", n: 1, output: true },
        lse: { dtype: "f32", n: rows, output: true },
      },
      call: (k, p) => k.call("vs_softmax_xent_fwd", c, rows, classes, p.z, p.t, p.l, p.lse, null),
    },
  ];
}

function optimCases(rng: Rng): KernelCase[] {
  const n = 1_000_003;
  const g = randn(rng, n, 0.01);
  const v = Float32Array.from(randn(rng, n, 1e-4), Math.abs);
  return [
    {
      name: "vs_grad_norm",
      tol: TOL.f32,
      buffers: { g: { dtype: "f32", n, data: g }, o: { dtype: "f32", n: 1, output: true } },
      call: (k, p) => k.call("vs_grad_norm", n, p.g, p.o, null),
    },
    {
      name: "vs_clip_coef",
      tol: TOL.f32,
      buffers: { norm: { dtype: "f32", n: 1, data: [3.5] }, o: { dtype: "f32", n: 1, output: true } },
      call: (k, p) => k.call("vs_clip_coef", p.norm, 0.05, p.o, null),
    },
    {
      name: "vs_adamw (bf16 copy, clipping scale)",
      tol: TOL.f32,
      buffers: {
        param: { dtype: "f32", n, data: randn(rng, n, 0.02), output: true },
        copy: { dtype: "bf16", n, output: true, tol: TOL.bf16 },
        g: { dtype: "f32", n, data: g },
        m: { dtype: "f32", n, data: randn(rng, n, 1e-3), output: true },
        v: { dtype: "f32", n, data: v, output: true },
        s: { dtype: "f32", n: 1, data: [0.8] },
      },
      call: (k, p) =>
        k.call("vs_adamw", n, p.param, p.copy, p.g, p.m, p.v, 1e-3, 0.9, 0.95, 1e-8, 0.05, 7, p.s, null),
    },
    {
      name: "vs_nonfinite",
      tol: 0,
      buffers: {
        x: { dtype: "f32", n, data: g.map((x, i) => (i === n - 2 ? Infinity : x)) },
        flag: { dtype: "i32", n: 1, data: [0], output: true },
      },
      call: (k, p) => k.call("vs_nonfinite", F32, n, p.x, p.flag, null),
    },
  ];
}

/** Every kernel case, from one seed. */
/**
 * Every case, on fresh inputs from `seed`. `small` shrinks the two largest shapes (the ViT-B decoder's
 * attention and whole-clip patch targets) for the CUDA simulator, which runs the GPU code on 2 cores.
 */
export function kernelCases(seed = 2024, opts: { small?: boolean } = {}): KernelCase[] {
  const small = opts.small ?? false;
  const rng = new Rng(seed);
  return [
    ...castCases(rng),
    ...(["f32", "bf16"] as const).flatMap((dt) => [
      ...elementwiseCases(rng, dt),
      ...normCases(rng, dt, [300, 768]),
      ...normCases(rng, dt, [130, 1408]),
      ...tokenCases(rng, dt),
      ...lossCases(rng, dt),
    ]),
    ...gemmCases(rng),
    ...attentionCases(rng, small),
    ...videoCases(rng, small),
    ...augmentCases(rng),
    ...optimCases(rng),
    ...mixCases(rng),
  ];
}

/**
 * Entry points of cuda/vswift.h that no kernel case calls, and where the self-test exercises them
 * instead. tests/selftest_test.ts checks that every other entry point is called by a kernel case.
 */
export const EXERCISED_ELSEWHERE: Readonly<Record<string, string>> = {
  vs_abi_version: "checked by lib/ffi/native.ts when the library is opened",
  vs_device_count: "doctor's device check (loadLibrary)",
  vs_device_name: "doctor's device line",
  vs_init: "doctor and the GPU test select the device with it",
  vs_mem_info: "the whole-step comparison (lib/selftest/step.ts) reports memory",
  vs_set_threads: "host-only thread control, set by lib/ffi/native.ts",
  vs_malloc_host: "pinned buffers of the loader, exercised by the whole-step comparison",
  vs_free_host: "pinned buffers of the loader, exercised by the whole-step comparison",
  vs_stream_create: "the gradient all-reduce's stream in the NCCL check (lib/selftest/nccl_check.ts)",
  vs_stream_destroy: "the gradient all-reduce's stream in the NCCL check",
  vs_stream_wait_event: "the NCCL check's bucketed all-reduce",
  vs_event_create: "the NCCL check's bucketed all-reduce",
  vs_event_destroy: "the NCCL check's bucketed all-reduce",
  vs_event_record: "the NCCL check's bucketed all-reduce",
  vs_event_elapsed_ms: "kernel timing in bench/timing.ts and the whole-step comparison",
  vs_device_sync: "every comparison synchronises before reading results",
  vs_nccl_available: "the NCCL check (lib/selftest/nccl_check.ts)",
  vs_nccl_unique_id: "the NCCL check, one and two ranks",
  vs_nccl_comm_init: "the NCCL check, one and two ranks",
  vs_nccl_comm_destroy: "the NCCL check, one and two ranks",
  vs_nccl_all_reduce: "the NCCL check, one and two ranks",
  vs_nccl_broadcast: "the NCCL check, one and two ranks",
  vs_nccl_group_start: "the NCCL check's grouped all-reduce",
  vs_nccl_group_end: "the NCCL check's grouped all-reduce",
};
