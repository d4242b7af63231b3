/** Linear layers as GEMMs, with the bias and GELU epilogues of vs_gemm. */
import type { Graph } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { accumulateF32, expect, expectFloat, k, rowsOf } from "./common.ts";

const EPI_NONE = 0;
const EPI_BIAS = 1;
const EPI_GELU_BIAS = 2;

/**
 * y: (rows, out) = x: (rows, in) w^T + b, with w: (out, in) and b: (out), all in one float dtype.
 * With `gelu`, y = gelu(x w^T + b) in one GEMM; the pre-activation is kept for the backward.
 */
export function linear(g: Graph, x: Tensor, w: Tensor, b?: Tensor, opts: { gelu?: boolean } = {}): Tensor {
  const dt = expectFloat("linear", x, w, ...(b ? [b] : []));
  expect(w.shape.length === 2, () => `linear: weight must be 2-D (out, in), got ${w}`);
  const [nOut, nIn] = w.shape;
  const rows = rowsOf("linear", x, nIn);
  expect(!b || b.numel === nOut, () => `linear: bias ${b} does not match ${nOut} outputs`);
  expect(!opts.gelu || !!b, () => "linear: the GELU epilogue needs a bias");
  const y = g.alloc([rows, nOut], dt);
  const aux = opts.gelu ? g.alloc([rows, nOut], dt) : undefined;
  const code = y.code;
  const epi = opts.gelu ? EPI_GELU_BIAS : b ? EPI_BIAS : EPI_NONE;
  k().call(
    "vs_gemm",
    code,
    code,
    0,
    1,
    rows,
    nOut,
    nIn,
    1,
    x.ptr,
    w.ptr,
    0,
    y.ptr,
    b?.ptr ?? null,
    epi,
    aux?.ptr ?? null,
    k().stream,
  );

  g.record([x, w, b], [y], () => {
    const gy = g.grad(y);
    if (!gy) return;
    let dpre = gy;
    if (aux) {
      dpre = g.alloc(aux.shape, dt);
      k().call("vs_gelu_bwd", code, dpre.numel, aux.ptr, gy.ptr, dpre.ptr, k().stream);
    }
    const dx = g.gradSlot(x);
    if (dx) {
      k().call(
        "vs_gemm",
        code,
        dx.buf.code,
        0,
        0,
        rows,
        nIn,
        nOut,
        1,
        dpre.ptr,
        w.ptr,
        dx.accumulate ? 1 : 0,
        dx.buf.ptr,
        null,
        EPI_NONE,
        null,
        k().stream,
      );
    }
    const dw = g.gradSlot(w);
    if (dw) {
      k().call(
        "vs_gemm",
        code,
        dw.buf.code,
        1,
        0,
        nOut,
        nIn,
        rows,
        1,
        dpre.ptr,
        x.ptr,
        dw.accumulate ? 1 : 0,
        dw.buf.ptr,
        null,
        EPI_NONE,
        null,
        k().stream,
      );
    }
    if (b) {
      accumulateF32(
        g,
        b,
        (dst) => k().call("vs_sum_outer", code, rows, nOut, dpre.ptr, dst.ptr, 1, k().stream),
      );
    }
  });
  return y;
}
