/**
 * The host attention kernels (blocked sgemm, 64 queries per block) against a float64 reference written
 * out here, on shapes whose length is below, at and just past the block size, and the same bits for 1
 * and 2 threads.
 */
import assert from "node:assert/strict";
import { native } from "../lib/ffi/native.ts";
import { allocPersistent, freePersistent } from "../lib/memory.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats, type Tensor, writeTensor } from "../lib/tensor.ts";
import { maxRelDiff, randn } from "./helpers.ts";

const rng = new Rng(5);

interface Shape {
  b: number;
  n: number;
  heads: number;
  hd: number;
}

/** out (b, n, heads, hd) and dqkv (b, n, 3, heads, hd) in float64, straight from the definitions. */
function reference(s: Shape, qkv: Float32Array, dout: Float32Array, scale: number) {
  const { b, n, heads, hd } = s;
  const at = (bi: number, i: number, w: number, h: number, d: number) =>
    (((bi * n + i) * 3 + w) * heads + h) * hd + d;
  const ot = (bi: number, i: number, h: number, d: number) => ((bi * n + i) * heads + h) * hd + d;
  const out = new Float64Array(b * n * heads * hd);
  const dqkv = new Float64Array(qkv.length);
  const p = new Float64Array(n * n);
  for (let bi = 0; bi < b; bi++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < n; i++) {
        let mx = -Infinity;
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += qkv[at(bi, i, 0, h, d)] * qkv[at(bi, j, 1, h, d)];
          p[i * n + j] = s * scale;
          mx = Math.max(mx, p[i * n + j]);
        }
        let sum = 0;
        for (let j = 0; j < n; j++) sum += p[i * n + j] = Math.exp(p[i * n + j] - mx);
        for (let j = 0; j < n; j++) p[i * n + j] /= sum;
        for (let d = 0; d < hd; d++) {
          let o = 0;
          for (let j = 0; j < n; j++) o += p[i * n + j] * qkv[at(bi, j, 2, h, d)];
          out[ot(bi, i, h, d)] = o;
        }
      }
      for (let i = 0; i < n; i++) {
        let delta = 0;
        for (let d = 0; d < hd; d++) delta += dout[ot(bi, i, h, d)] * out[ot(bi, i, h, d)];
        for (let j = 0; j < n; j++) {
          let dp = 0;
          for (let d = 0; d < hd; d++) dp += dout[ot(bi, i, h, d)] * qkv[at(bi, j, 2, h, d)];
          const pij = p[i * n + j];
          const ds = pij * (dp - delta) * scale;
          for (let d = 0; d < hd; d++) {
            dqkv[at(bi, i, 0, h, d)] += ds * qkv[at(bi, j, 1, h, d)];
            dqkv[at(bi, j, 1, h, d)] += ds * qkv[at(bi, i, 0, h, d)];
            dqkv[at(bi, j, 2, h, d)] += pij * dout[ot(bi, i, h, d)];
          }
        }
      }
    }
  }
  return { out, dqkv };
}

/** Runs the forward and backward kernels in qkv's dtype; returns out, lse and dqkv as read back. */
function runKernels(s: Shape, qkv: Tensor, dout: Tensor, scale: number) {
  const k = native();
  const { b, n, heads, hd } = s;
  const out = allocPersistent([b * n * heads * hd], qkv.dtype);
  const lse = allocPersistent([b * heads * n], "f32");
  const dqkv = allocPersistent([qkv.numel], qkv.dtype);
  try {
    k.call("vs_attention_fwd", qkv.code, b, n, heads, hd, scale, qkv.ptr, out.ptr, lse.ptr, null);
    k.call(
      "vs_attention_bwd",
      qkv.code,
      b,
      n,
      heads,
      hd,
      scale,
      qkv.ptr,
      out.ptr,
      dout.ptr,
      lse.ptr,
      dqkv.ptr,
      null,
      0,
      null,
    );
    return { out: readFloats(out), lse: readFloats(lse), dqkv: readFloats(dqkv) };
  } finally {
    for (const t of [out, lse, dqkv]) freePersistent(t);
  }
}

/** Random qkv (logits of a few units, so the softmax is far from uniform) and dout for a shape. */
function inputs(s: Shape): { qkv: Tensor; dout: Tensor } {
  return {
    qkv: randn(rng, [s.b * s.n * 3 * s.heads * s.hd], 1.5),
    dout: randn(rng, [s.b * s.n * s.heads * s.hd]),
  };
}

/** Runs `fn` on the tensors, freeing them afterwards. */
function using<T>(ts: Tensor[], fn: () => T): T {
  try {
    return fn();
  } finally {
    for (const t of ts) freePersistent(t);
  }
}

const SHAPES: Shape[] = [
  { b: 1, n: 1, heads: 1, hd: 4 },
  { b: 2, n: 7, heads: 3, hd: 5 },
  { b: 1, n: 63, heads: 2, hd: 8 },
  { b: 1, n: 64, heads: 1, hd: 16 },
  { b: 2, n: 65, heads: 2, hd: 8 },
  { b: 1, n: 130, heads: 2, hd: 12 },
];

for (const s of SHAPES) {
  Deno.test(`attention matches float64 at b ${s.b}, n ${s.n}, heads ${s.heads}, head_dim ${s.hd}`, () => {
    const scale = 1 / Math.sqrt(s.hd);
    const { qkv, dout } = inputs(s);
    using([qkv, dout], () => {
      const got = runKernels(s, qkv, dout, scale);
      const want = reference(s, readFloats(qkv), readFloats(dout), scale);
      const eOut = maxRelDiff(got.out, want.out);
      const eGrad = maxRelDiff(got.dqkv, want.dqkv);
      assert.ok(eOut < 2e-6, `out is off by ${eOut} of its scale`);
      assert.ok(eGrad < 1e-5, `dqkv is off by ${eGrad} of its scale`);
    });
  });
}

Deno.test("attention gives the same bits for 1 and 2 threads", () => {
  const k = native();
  // Large enough for a team of 2 (the kernels go single-threaded below ~32k multiply-adds).
  const s = { b: 1, n: 150, heads: 3, hd: 16 };
  const { qkv, dout } = inputs(s);
  using([qkv, dout], () => {
    try {
      k.call("vs_set_threads", 1);
      const one = runKernels(s, qkv, dout, 0.25);
      k.call("vs_set_threads", 2);
      const two = runKernels(s, qkv, dout, 0.25);
      assert.deepEqual(one.out, two.out);
      assert.deepEqual(one.lse, two.lse);
      assert.deepEqual(one.dqkv, two.dqkv);
    } finally {
      k.call("vs_set_threads", 0);
    }
  });
});

Deno.test("bf16 attention forward and backward agree with float64 within bf16 precision", () => {
  const s = { b: 2, n: 70, heads: 2, hd: 8 };
  const { qkv, dout } = inputs(s);
  const low = [qkv, dout].map((t) => allocPersistent([t.numel], "bf16"));
  using([qkv, dout, ...low], () => {
    for (let i = 0; i < 2; i++) {
      native().call("vs_cast", 0, 1, low[i].numel, [qkv, dout][i].ptr, low[i].ptr, null);
    }
    const got = runKernels(s, low[0], low[1], 0.3);
    // The reference sees the same bf16-rounded inputs, so only the kernels' bf16 rounding separates them.
    const want = reference(s, readFloats(low[0]), readFloats(low[1]), 0.3);
    assert.ok(maxRelDiff(got.out, want.out) < 1e-2, `bf16 out: ${maxRelDiff(got.out, want.out)}`);
    assert.ok(maxRelDiff(got.dqkv, want.dqkv) < 2e-2, `bf16 dqkv: ${maxRelDiff(got.dqkv, want.dqkv)}`);
  });
});

Deno.test("attention keeps a row of huge logits finite and a NaN input visible", () => {
  const s = { b: 1, n: 3, heads: 1, hd: 2 };
  const qkv = allocPersistent([s.n * 3 * s.hd], "f32");
  const dout = randn(rng, [s.n * s.hd]);
  try {
    // Logits of about 1e4 overflow a plain exp; the max shift keeps them finite.
    writeTensor(qkv, [100, 100, 100, 100, 1, 2, 99, 100, 100, 99, 3, 4, -50, 0, 0, -50, 5, 6]);
    const ok = runKernels(s, qkv, dout, 1);
    assert.ok(ok.out.every(Number.isFinite) && ok.dqkv.every(Number.isFinite), `${ok.out} / ${ok.dqkv}`);
    writeTensor(qkv, [NaN, 0, 1, 0, 1, 2, 0, 1, 1, 0, 3, 4, 1, 1, 0, 1, 5, 6]);
    const bad = runKernels(s, qkv, dout, 1);
    assert.ok(Number.isNaN(bad.out[0]), `a NaN query gave ${bad.out[0]}`);
  } finally {
    freePersistent(qkv);
    freePersistent(dout);
  }
});
