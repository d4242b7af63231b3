/** Losses: MSE for the masked-token reconstruction, soft-target cross-entropy for classification. */
import type { Graph } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { expect, expectFloat, k } from "./common.ts";

/** Scalar f32 loss = mean over all elements of (pred - target)^2; target: f32, same size. */
export function mse(g: Graph, pred: Tensor, target: Tensor): Tensor {
  expectFloat("mse", pred);
  expect(
    target.dtype === "f32" && target.numel === pred.numel,
    () => `mse: target ${target} must be f32 like ${pred}`,
  );
  const loss = g.alloc([1], "f32");
  k().call("vs_mse_fwd", pred.code, pred.numel, pred.ptr, target.ptr, loss.ptr, k().stream);
  g.record([pred], [loss], () => {
    const dl = g.grad(loss);
    if (!dl) return;
    g.writeGrad(
      pred,
      (dst) => k().call("vs_mse_bwd", dst.code, dst.numel, pred.ptr, target.ptr, dl.ptr, dst.ptr, k().stream),
    );
  });
  return loss;
}

/**
 * Scalar f32 loss = mean over rows of -sum_k targets * log_softmax(logits), for logits: (rows, K) and
 * soft targets: (rows, K) f32 (one-hot, smoothed, or mixed).
 */
export function softmaxCrossEntropy(g: Graph, logits: Tensor, targets: Tensor): Tensor {
  expectFloat("softmaxCrossEntropy", logits);
  expect(logits.shape.length === 2, () => `softmaxCrossEntropy: logits ${logits} must be (rows, classes)`);
  const [rows, classes] = logits.shape;
  expect(
    targets.dtype === "f32" && targets.numel === logits.numel,
    () => `softmaxCrossEntropy: targets ${targets} must be f32 like ${logits}`,
  );
  const loss = g.alloc([1], "f32");
  const lse = g.alloc([rows], "f32");
  k().call(
    "vs_softmax_xent_fwd",
    logits.code,
    rows,
    classes,
    logits.ptr,
    targets.ptr,
    loss.ptr,
    lse.ptr,
    k().stream,
  );
  g.record([logits], [loss], () => {
    const dl = g.grad(loss);
    if (!dl) return;
    g.writeGrad(
      logits,
      (dst) =>
        k().call(
          "vs_softmax_xent_bwd",
          dst.code,
          rows,
          classes,
          logits.ptr,
          targets.ptr,
          lse.ptr,
          dl.ptr,
          dst.ptr,
          k().stream,
        ),
    );
  });
  return loss;
}
