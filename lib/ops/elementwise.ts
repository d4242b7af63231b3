/** Residual adds, broadcast adds, per-sample scaling (stochastic depth) and GELU. */
import type { Graph } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { accumulateF32, expect, expectFloat, k } from "./common.ts";

/** out = a + b, same shape. */
export function add(g: Graph, a: Tensor, b: Tensor): Tensor {
  expectFloat("add", a, b);
  expect(a.numel === b.numel, () => `add: ${a} and ${b} differ in size`);
  const out = g.alloc(a.shape, a.dtype);
  k().call("vs_add", out.code, out.numel, a.ptr, b.ptr, out.ptr, k().stream);
  g.record([a, b], [out], () => {
    const gy = g.grad(out);
    if (!gy) return;
    g.passGrad(a, gy);
    g.passGrad(b, gy, true);
  });
  return out;
}

/** out: (outer, inner) = a: (outer, inner) + b: (inner) broadcast over the leading rows. */
export function addBcast(g: Graph, a: Tensor, b: Tensor): Tensor {
  expectFloat("addBcast", a, b);
  const inner = b.numel;
  expect(a.numel % inner === 0, () => `addBcast: ${a} is not a multiple of ${b}`);
  const outer = a.numel / inner;
  const out = g.alloc(a.shape, a.dtype);
  k().call("vs_add_bcast", out.code, outer, inner, a.ptr, b.ptr, out.ptr, k().stream);
  g.record([a, b], [out], () => {
    const gy = g.grad(out);
    if (!gy) return;
    accumulateF32(
      g,
      b,
      (dst) => k().call("vs_sum_outer", gy.code, outer, inner, gy.ptr, dst.ptr, 1, k().stream),
    );
    g.passGrad(a, gy, true);
  });
  return out;
}

/**
 * out[r] = x[r] * scale[r] for x seen as (rows, inner) and scale: (rows) f32 held on the device; used
 * for per-sample stochastic depth (scale 0 or 1 / keep_prob). The scale gets no gradient.
 */
export function scaleRows(g: Graph, x: Tensor, scale: Tensor): Tensor {
  expectFloat("scaleRows", x);
  expect(scale.dtype === "f32", () => `scaleRows: scale ${scale} must be f32`);
  const rows = scale.numel;
  expect(x.numel % rows === 0, () => `scaleRows: ${x} is not ${rows} rows`);
  const inner = x.numel / rows;
  const out = g.alloc(x.shape, x.dtype);
  k().call("vs_scale_rows", out.code, rows, inner, x.ptr, scale.ptr, out.ptr, k().stream);
  g.record([x], [out], () => {
    const gy = g.grad(out);
    if (!gy) return;
    g.writeGrad(
      x,
      (dst) => k().call("vs_scale_rows", dst.code, rows, inner, gy.ptr, scale.ptr, dst.ptr, k().stream),
    );
  });
  return out;
}

/** y = gelu(x), the exact erf form of torch.nn.GELU. */
export function gelu(g: Graph, x: Tensor): Tensor {
  expectFloat("gelu", x);
  const y = g.alloc(x.shape, x.dtype);
  k().call("vs_gelu_fwd", y.code, y.numel, x.ptr, y.ptr, k().stream);
  g.record([x], [y], () => {
    const gy = g.grad(y);
    if (!gy) return;
    g.writeGrad(x, (dst) => k().call("vs_gelu_bwd", dst.code, dst.numel, x.ptr, gy.ptr, dst.ptr, k().stream));
  });
  return y;
}
