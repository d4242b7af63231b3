/**
 * Gradient checks of every op against central finite differences, f32 on the host build.
 * Tolerance: relative L2 error over the sampled coordinates below 2e-3 (f32 central differences with
 * eps 1e-2; the kernels accumulate in double, so correct gradients land near 1e-4).
 */
import assert from "node:assert/strict";
import { Graph } from "../lib/autograd.ts";
import { attention } from "../lib/ops/attention.ts";
import { add, addBcast, gelu, scaleRows } from "../lib/ops/elementwise.ts";
import { addLayerNorm, layerNorm } from "../lib/ops/layernorm.ts";
import { linear } from "../lib/ops/linear.ts";
import { mse, softmaxCrossEntropy } from "../lib/ops/loss.ts";
import {
  concatTokens,
  gatherRows,
  indexTensor,
  maxTokens,
  meanTokens,
  qkvBias,
  sliceTokens,
} from "../lib/ops/tokens.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats, writeTensor } from "../lib/tensor.ts";
import { arena, assertGradOk, gradCheck, leaf, randn } from "./helpers.ts";

const TOL = 2e-3;
const rng = new Rng(7);

Deno.test("linear with bias: d/dx, d/dw, d/db", () => {
  const x = leaf(randn(rng, [6, 5]));
  const w = leaf(randn(rng, [4, 5], 0.5));
  const b = leaf(randn(rng, [4]));
  const t = randn(rng, [6, 4]);
  assertGradOk(gradCheck({ x, w, b }, (g) => mse(g, linear(g, x, w, b), t)), TOL);
});

Deno.test("linear without bias", () => {
  const x = leaf(randn(rng, [3, 7]));
  const w = leaf(randn(rng, [5, 7], 0.5));
  const t = randn(rng, [3, 5]);
  assertGradOk(gradCheck({ x, w }, (g) => mse(g, linear(g, x, w), t)), TOL);
});

Deno.test("linear with the GELU epilogue", () => {
  const x = leaf(randn(rng, [6, 5]));
  const w = leaf(randn(rng, [8, 5], 0.5));
  const b = leaf(randn(rng, [8]));
  const t = randn(rng, [6, 8]);
  assertGradOk(gradCheck({ x, w, b }, (g) => mse(g, linear(g, x, w, b, { gelu: true }), t)), TOL);
});

Deno.test("gelu", () => {
  const x = leaf(randn(rng, [5, 6], 2));
  const t = randn(rng, [5, 6]);
  assertGradOk(gradCheck({ x }, (g) => mse(g, gelu(g, x), t)), TOL);
});

Deno.test("layerNorm: d/dx, d/dgamma, d/dbeta", () => {
  const x = leaf(randn(rng, [4, 8], 2));
  const gamma = leaf(randn(rng, [8]));
  const beta = leaf(randn(rng, [8]));
  const t = randn(rng, [4, 8]);
  assertGradOk(gradCheck({ x, gamma, beta }, (g) => mse(g, layerNorm(g, x, gamma, beta, 1e-6), t)), TOL);
});

Deno.test("addLayerNorm: both outputs feed the loss", () => {
  const x = leaf(randn(rng, [4, 8]));
  const r = leaf(randn(rng, [4, 8]));
  const gamma = leaf(randn(rng, [8]));
  const beta = leaf(randn(rng, [8]));
  const t1 = randn(rng, [4, 8]);
  const t2 = randn(rng, [4, 8]);
  assertGradOk(
    gradCheck({ x, r, gamma, beta }, (g) => {
      const { sum, y } = addLayerNorm(g, x, r, gamma, beta, 1e-6);
      return add(g, mse(g, y, t1), mse(g, sum, t2));
    }),
    TOL,
  );
});

Deno.test("attention over packed qkv, several heads and an odd length", () => {
  const [b, n, h, hd] = [2, 5, 2, 4];
  const qkv = leaf(randn(rng, [b * n, 3 * h * hd]));
  const t = randn(rng, [b * n, h * hd]);
  assertGradOk(gradCheck({ qkv }, (g) => mse(g, attention(g, qkv, b, n, h, hd), t), { samples: 40 }), TOL);
});

Deno.test("add, addBcast and scaleRows", () => {
  const a = leaf(randn(rng, [3, 4]));
  const b = leaf(randn(rng, [3, 4]));
  const c = leaf(randn(rng, [4]));
  const scale = randn(rng, [3]);
  const t = randn(rng, [3, 4]);
  assertGradOk(
    gradCheck({ a, b, c }, (g) => mse(g, scaleRows(g, addBcast(g, add(g, a, b), c), scale), t)),
    TOL,
  );
});

Deno.test("a tensor used twice accumulates both gradients", () => {
  const a = leaf(randn(rng, [3, 4]));
  const t = randn(rng, [3, 4]);
  assertGradOk(gradCheck({ a }, (g) => mse(g, add(g, gelu(g, a), a), t)), TOL);
});

Deno.test("gatherRows, concatTokens, sliceTokens and meanTokens", () => {
  const [b, n, c] = [2, 6, 3];
  const src = leaf(randn(rng, [b, n, c]));
  const other = leaf(randn(rng, [b, 2, c]));
  const t = randn(rng, [b, c]);
  const idxHost = Int32Array.from([5, 0, 3, 1, 4, 2]);
  assertGradOk(
    gradCheck({ src, other }, (g) => {
      const picked = gatherRows(g, src, indexTensor(g, idxHost, b), { b, nSrc: n, c });
      const joined = concatTokens(g, picked, other, { b, c });
      const part = sliceTokens(g, joined, 1, 3, { b, n: 5, c });
      return mse(g, meanTokens(g, part, { b, n: 3, c }), t);
    }),
    TOL,
  );
});

Deno.test("maxTokens: the gradient reaches the maximal token only, first of equals on ties", () => {
  const [b, n, c] = [2, 5, 3];
  // Values 0.1 apart so that a finite-difference step (1e-2) never changes which token is the maximum.
  const x = leaf(randn(rng, [b, n, c]));
  writeTensor(x, Float32Array.from(rng.permutation(b * n * c), (v) => (v - 15) * 0.1));
  const t = randn(rng, [b, c]);
  assertGradOk(gradCheck({ x }, (g) => mse(g, maxTokens(g, x, { b, n, c }), t), { samples: 30 }), TOL);
  // Ties: channel 0 is (1, 2, 2) over the tokens, channel 1 is (3, 3, 0); mse against 0 over 2 outputs
  // sends each maximum's own value back to the first token that reached it.
  const y = leaf(randn(rng, [1, 3, 2]));
  writeTensor(y, [1, 3, 2, 3, 2, 0]);
  const g = new Graph(arena);
  const pooled = maxTokens(g, y, { b: 1, n: 3, c: 2 });
  assert.deepEqual(Array.from(readFloats(pooled)), [2, 3]);
  g.backward(mse(g, pooled, randn(rng, [1, 2], 0)));
  g.reset();
  assert.deepEqual(Array.from(readFloats(y.gradBuffer!)), [0, 3, 2, 0, 0, 0]);
  // A NaN wins over any number, as torch.max.
  writeTensor(y, [1, NaN, 2, 5, 2, 4]);
  const ge = new Graph(arena, { grad: false });
  const withNan = readFloats(maxTokens(ge, y, { b: 1, n: 3, c: 2 }));
  ge.reset();
  assert.equal(withNan[0], 2);
  assert.ok(Number.isNaN(withNan[1]), `a NaN must win the max, got ${withNan[1]}`);
});

Deno.test("qkvBias feeds q_bias and v_bias but not the key", () => {
  const q = leaf(randn(rng, [4]));
  const v = leaf(randn(rng, [4]));
  const x = randn(rng, [3, 4]);
  const w = randn(rng, [12, 4]);
  const t = randn(rng, [3, 12]);
  assertGradOk(gradCheck({ q, v }, (g) => mse(g, linear(g, x, w, qkvBias(g, q, v)), t)), TOL);
});

Deno.test("mse and soft-target cross-entropy", () => {
  const p = leaf(randn(rng, [4, 5]));
  const t = randn(rng, [4, 5]);
  assertGradOk(gradCheck({ p }, (g) => mse(g, p, t)), TOL);
  const logits = leaf(randn(rng, [3, 6], 2));
  const soft = randn(rng, [3, 6]);
  // Rows of soft targets that do not sum to one exercise the general form of the gradient.
  writeTensor(soft, Float32Array.from({ length: 18 }, (_, i) => ((i * 7) % 5) / 10));
  assertGradOk(gradCheck({ logits }, (g) => softmaxCrossEntropy(g, logits, soft)), TOL);
});
