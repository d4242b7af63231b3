/** LayerNorm over the last dimension, plain and fused with the residual add before it. */
import type { Graph } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { expect, expectFloat, k, landF32, rowsOf, scratchF32 } from "./common.ts";

function backward(
  g: Graph,
  xn: Tensor,
  y: Tensor,
  gamma: Tensor,
  beta: Tensor,
  mean: Tensor,
  rstd: Tensor,
  rows: number,
  cols: number,
): void {
  const gy = g.grad(y);
  if (!gy) return;
  const dx = g.gradSlot(xn);
  const dgamma = scratchF32(g, [cols]);
  const dbeta = scratchF32(g, [cols]);
  k().call(
    "vs_layernorm_bwd",
    y.code,
    rows,
    cols,
    xn.ptr,
    gamma.ptr,
    mean.ptr,
    rstd.ptr,
    gy.ptr,
    dx?.buf.ptr ?? g.alloc(xn.shape, xn.dtype).ptr,
    dx?.accumulate ? 1 : 0,
    dgamma.ptr,
    dbeta.ptr,
    k().stream,
  );
  landF32(g, gamma, dgamma);
  landF32(g, beta, dbeta);
}

/** y: (rows, C) = LayerNorm(x: (rows, C)) * gamma + beta, statistics in f32. */
export function layerNorm(g: Graph, x: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor {
  const dt = expectFloat("layerNorm", x, gamma, beta);
  const cols = gamma.numel;
  expect(beta.numel === cols, () => `layerNorm: gamma ${gamma} and beta ${beta} differ`);
  const rows = rowsOf("layerNorm", x, cols);
  const y = g.alloc([rows, cols], dt);
  const mean = g.alloc([rows], "f32");
  const rstd = g.alloc([rows], "f32");
  k().call(
    "vs_layernorm_fwd",
    y.code,
    rows,
    cols,
    eps,
    x.ptr,
    null,
    null,
    gamma.ptr,
    beta.ptr,
    y.ptr,
    mean.ptr,
    rstd.ptr,
    k().stream,
  );
  g.record([x, gamma, beta], [y], () => backward(g, x, y, gamma, beta, mean, rstd, rows, cols));
  return y;
}

/**
 * The pre-norm residual step in one pass: sum = x + r and y = LayerNorm(sum). Returns both; the
 * gradient of sum (from later residual adds) and of y meet in one buffer.
 */
export function addLayerNorm(
  g: Graph,
  x: Tensor,
  r: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
): { sum: Tensor; y: Tensor } {
  const dt = expectFloat("addLayerNorm", x, r, gamma, beta);
  const cols = gamma.numel;
  const rows = rowsOf("addLayerNorm", x, cols);
  expect(r.numel === x.numel, () => `addLayerNorm: residual ${r} does not match ${x}`);
  const sum = g.alloc([rows, cols], dt);
  const y = g.alloc([rows, cols], dt);
  const mean = g.alloc([rows], "f32");
  const rstd = g.alloc([rows], "f32");
  k().call(
    "vs_layernorm_fwd",
    y.code,
    rows,
    cols,
    eps,
    x.ptr,
    r.ptr,
    sum.ptr,
    gamma.ptr,
    beta.ptr,
    y.ptr,
    mean.ptr,
    rstd.ptr,
    k().stream,
  );
  g.record([x, r, gamma, beta], [sum, y], () => {
    backward(g, sum, y, gamma, beta, mean, rstd, rows, cols);
    const gs = g.grad(sum);
    if (!gs) return;
    g.passGrad(x, gs);
    g.passGrad(r, gs, true);
  });
  return { sum, y };
}
