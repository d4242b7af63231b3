/**
 * The host build's vectorised GELU (polynomial erfc and exp in double lanes) against a float64
 * reference written out here, through vs_gelu_fwd / vs_gelu_bwd and the GEMM's GELU epilogues: every
 * result within 1 ulp of f32 of the exact value, over x in [-14, 14] (below -13.4 the value is
 * subnormal, beyond 5.3 it is x).
 */
import assert from "node:assert/strict";
import { native } from "../lib/ffi/native.ts";
import { allocPersistent, freePersistent } from "../lib/memory.ts";
import { readFloats, type Tensor, writeTensor } from "../lib/tensor.ts";
import "./helpers.ts";

/** erfc(z) in double to ~1e-14 relative: the Taylor series of erf below 2, a continued fraction above. */
function erfc(z: number): number {
  if (z < 0) return 2 - erfc(-z);
  if (z < 2) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 80; n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc z = e^(-z^2) / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / (z + ...)))), evaluated backwards.
  let k = 0;
  for (let n = 400; n >= 1; n--) k = n / 2 / (z + k);
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + k);
}

const phiCdf = (x: number) => 0.5 * erfc(-x / Math.SQRT2);
const gauss = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
const geluRef = (x: number) => x * phiCdf(x);
const geluGradRef = (x: number) => phiCdf(x) + x * gauss(x);

/** One ulp of f32 at the magnitude of v (the subnormal spacing below 2^-126). */
function ulp(v: number): number {
  const a = Math.abs(v);
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

/** f32 inputs across [-14, 14], denser near 0, plus the edges. */
function inputs(): Float32Array {
  const xs: number[] = [0, -0.5, 0.5, -14, 14, 2 ** -30, -(2 ** -30)];
  for (let i = 0; i < 60000; i++) xs.push(-14 + (28 * i) / 60000);
  for (let i = 0; i < 20000; i++) xs.push(-2 + (4 * i) / 20000 + 1e-7);
  return Float32Array.from(xs);
}

function withTensors<T>(xs: Float32Array, count: number, fn: (ts: Tensor[]) => T): T {
  const ts = Array.from({ length: count }, () => allocPersistent([xs.length], "f32"));
  try {
    writeTensor(ts[0], xs);
    return fn(ts);
  } finally {
    for (const t of ts) freePersistent(t);
  }
}

/** The worst error in ulps of the exact value, and where. */
function worstUlp(xs: Float32Array, got: Float32Array, ref: (x: number) => number, slack = 0) {
  let worst = 0;
  let at = 0;
  for (let i = 0; i < xs.length; i++) {
    const want = ref(xs[i]);
    // slack: an absolute allowance where the exact value is a difference of larger terms.
    const e = Math.max(0, Math.abs(got[i] - want) - slack * (phiCdf(xs[i]) + Math.abs(xs[i]) * gauss(xs[i])));
    const u = e / ulp(want);
    if (u > worst) [worst, at] = [u, xs[i]];
  }
  return { worst, at };
}

Deno.test("GELU forward is within 1 ulp of the exact value", () => {
  const xs = inputs();
  const got = withTensors(xs, 2, ([x, y]) => {
    native().call("vs_gelu_fwd", 0, xs.length, x.ptr, y.ptr, null);
    return readFloats(y);
  });
  const { worst, at } = worstUlp(xs, got, geluRef);
  assert.ok(worst <= 1, `gelu is ${worst.toFixed(2)} ulp off at x = ${at}`);
  assert.equal(got[0], 0);
  assert.equal(got[4], 14);
});

Deno.test("GELU backward is within 1 ulp of the exact value", () => {
  const xs = inputs();
  const got = withTensors(xs, 3, ([x, dy, dx]) => {
    writeTensor(dy, new Float32Array(xs.length).fill(1));
    native().call("vs_gelu_bwd", 0, xs.length, x.ptr, dy.ptr, dx.ptr, null);
    return readFloats(dx);
  });
  // Near x = -0.75 the derivative is Phi + x phi with the terms cancelling: allow 1e-15 of their size.
  const { worst, at } = worstUlp(xs, got, geluGradRef, 1e-15);
  assert.ok(worst <= 1, `gelu' is ${worst.toFixed(2)} ulp off at x = ${at}`);
});

Deno.test("GEMM GELU epilogues match the exact GELU and its derivative", () => {
  const xs = inputs().subarray(0, 20000);
  const m = xs.length;
  const k = native();
  const one = allocPersistent([1], "f32");
  const zero = allocPersistent([1], "f32");
  writeTensor(one, [1]);
  writeTensor(zero, [0]);
  try {
    withTensors(xs, 4, ([a, c, aux, dc]) => {
      // c (m, 1) = gelu(a (m, 1) x [1] + 0), aux the pre-activation.
      k.call("vs_gemm", 0, 0, 0, 0, m, 1, 1, 1, a.ptr, one.ptr, 0, c.ptr, zero.ptr, 2, aux.ptr, null);
      assert.deepEqual(readFloats(aux), xs);
      const fwd = worstUlp(xs, readFloats(c), geluRef);
      assert.ok(fwd.worst <= 1, `GELU_BIAS is ${fwd.worst.toFixed(2)} ulp off at x = ${fwd.at}`);
      // dc = (ones (m, 1) x [1]) * gelu'(aux).
      writeTensor(a, new Float32Array(m).fill(1));
      k.call("vs_gemm", 0, 0, 0, 0, m, 1, 1, 1, a.ptr, one.ptr, 0, dc.ptr, null, 3, aux.ptr, null);
      const bwd = worstUlp(xs, readFloats(dc), geluGradRef, 1e-15);
      assert.ok(bwd.worst <= 1, `DGELU is ${bwd.worst.toFixed(2)} ulp off at x = ${bwd.at}`);
    });
  } finally {
    freePersistent(one);
    freePersistent(zero);
  }
});

Deno.test("GELU keeps NaN and infinities as the formula gives them", () => {
  const xs = Float32Array.from([NaN, Infinity, -Infinity]);
  const got = withTensors(xs, 2, ([x, y]) => {
    native().call("vs_gelu_fwd", 0, xs.length, x.ptr, y.ptr, null);
    return readFloats(y);
  });
  assert.ok(Number.isNaN(got[0]), `gelu(NaN) = ${got[0]}`);
  assert.equal(got[1], Infinity);
  // -inf * Phi(-inf) = -inf * 0: NaN, as in the double formula.
  assert.ok(Number.isNaN(got[2]), `gelu(-inf) = ${got[2]}`);
});
