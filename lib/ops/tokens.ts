/** Token selection and assembly: gather/scatter of rows by index, concatenation, mean and max pooling. */
import type { Graph } from "../autograd.ts";
import { memset } from "../ffi/pointers.ts";
import { type Tensor, writeTensor } from "../tensor.ts";
import { expect, expectFloat, k, landF32 } from "./common.ts";

/** Uploads token indices (B, n) as an i32 tensor of this step. */
export function indexTensor(g: Graph, idx: Int32Array, b: number): Tensor {
  expect(idx.length % b === 0, () => `indexTensor: ${idx.length} indices are not ${b} equal rows`);
  const t = g.alloc([b, idx.length / b], "i32");
  writeTensor(t, idx);
  return t;
}

/** Indices start, start + 1, ..., start + count - 1 for each of b batch entries. */
export function rangeIndex(b: number, start: number, count: number): Int32Array {
  const idx = new Int32Array(b * count);
  for (let i = 0; i < b; i++) for (let j = 0; j < count; j++) idx[i * count + j] = start + j;
  return idx;
}

/**
 * out: (B, n_idx, C) with out[i, j] = src[i, idx[i, j]]; src: (B, n_src, C), or (n_src, C) shared by
 * the whole batch with `shared` (position tables, which take no gradient).
 */
export function gatherRows(
  g: Graph,
  src: Tensor,
  idx: Tensor,
  dims: { b: number; nSrc: number; c: number; shared?: boolean },
): Tensor {
  expectFloat("gatherRows", src);
  const { b, nSrc, c } = dims;
  const shared = dims.shared ?? false;
  expect(idx.dtype === "i32" && idx.numel % b === 0, () => `gatherRows: idx ${idx} must be i32 (B ${b}, n)`);
  const nIdx = idx.numel / b;
  expect(
    src.numel === (shared ? 1 : b) * nSrc * c,
    () => `gatherRows: ${src} is not (${shared ? "" : `B ${b}, `}n ${nSrc}, C ${c})`,
  );
  expect(!(shared && src.requiresGrad), () => "gatherRows: a shared source cannot take a gradient");
  const out = g.alloc([b, nIdx, c], src.dtype);
  k().call(
    "vs_gather_rows",
    out.code,
    b,
    nSrc,
    nIdx,
    c,
    src.ptr,
    shared ? 1 : 0,
    idx.ptr,
    out.ptr,
    k().stream,
  );
  g.record([src], [out], () => {
    const gy = g.grad(out);
    if (!gy) return;
    const slot = g.gradSlot(src)!;
    // Rows that were not gathered get no gradient, so a fresh buffer starts from zero.
    if (!slot.accumulate) memset(slot.buf.ptr, 0, slot.buf.bytes);
    k().call("vs_scatter_rows", gy.code, b, nSrc, nIdx, c, gy.ptr, idx.ptr, slot.buf.ptr, 1, k().stream);
  });
  return out;
}

/** out: (B, na + nb, C) = the tokens of a: (B, na, C) followed by those of b: (B, nb, C). */
export function concatTokens(g: Graph, a: Tensor, bT: Tensor, dims: { b: number; c: number }): Tensor {
  expectFloat("concatTokens", a, bT);
  const { b, c } = dims;
  const na = a.numel / (b * c);
  const nb = bT.numel / (b * c);
  expect(
    Number.isInteger(na) && Number.isInteger(nb),
    () => `concatTokens: ${a} or ${bT} is not (B ${b}, n, C ${c})`,
  );
  const n = na + nb;
  const out = g.alloc([b, n, c], a.dtype);
  const ia = indexTensor(g, rangeIndex(b, 0, na), b);
  const ib = indexTensor(g, rangeIndex(b, na, nb), b);
  k().call("vs_scatter_rows", out.code, b, n, na, c, a.ptr, ia.ptr, out.ptr, 0, k().stream);
  k().call("vs_scatter_rows", out.code, b, n, nb, c, bT.ptr, ib.ptr, out.ptr, 0, k().stream);
  g.record([a, bT], [out], () => {
    const gy = g.grad(out);
    if (!gy) return;
    g.writeGrad(
      a,
      (dst) => k().call("vs_gather_rows", dst.code, b, n, na, c, gy.ptr, 0, ia.ptr, dst.ptr, k().stream),
    );
    g.writeGrad(
      bT,
      (dst) => k().call("vs_gather_rows", dst.code, b, n, nb, c, gy.ptr, 0, ib.ptr, dst.ptr, k().stream),
    );
  });
  return out;
}

/** out: (B, count, C) = tokens start .. start + count - 1 of x: (B, n, C). */
export function sliceTokens(
  g: Graph,
  x: Tensor,
  start: number,
  count: number,
  dims: { b: number; n: number; c: number },
): Tensor {
  expect(
    start >= 0 && start + count <= dims.n,
    () => `sliceTokens: [${start}, ${start + count}) is outside ${dims.n} tokens`,
  );
  return gatherRows(g, x, indexTensor(g, rangeIndex(dims.b, start, count), dims.b), {
    b: dims.b,
    nSrc: dims.n,
    c: dims.c,
  });
}

/** out: (B, C) = mean over the tokens of x: (B, n, C). */
export function meanTokens(g: Graph, x: Tensor, dims: { b: number; n: number; c: number }): Tensor {
  expectFloat("meanTokens", x);
  const { b, n, c } = dims;
  expect(x.numel === b * n * c, () => `meanTokens: ${x} is not (B ${b}, n ${n}, C ${c})`);
  const out = g.alloc([b, c], x.dtype);
  k().call("vs_mean_tokens_fwd", out.code, b, n, c, x.ptr, out.ptr, k().stream);
  g.record([x], [out], () => {
    const gy = g.grad(out);
    if (!gy) return;
    const slot = g.gradSlot(x)!;
    k().call(
      "vs_mean_tokens_bwd",
      gy.code,
      b,
      n,
      c,
      gy.ptr,
      slot.buf.ptr,
      slot.accumulate ? 1 : 0,
      k().stream,
    );
  });
  return out;
}

/**
 * out: (B, C) = max over the tokens of x: (B, n, C). The gradient goes to the token that gave each
 * maximum (the first one on ties), as torch.max(dim=1).
 */
export function maxTokens(g: Graph, x: Tensor, dims: { b: number; n: number; c: number }): Tensor {
  expectFloat("maxTokens", x);
  const { b, n, c } = dims;
  expect(x.numel === b * n * c, () => `maxTokens: ${x} is not (B ${b}, n ${n}, C ${c})`);
  const out = g.alloc([b, c], x.dtype);
  const argmax = g.alloc([b, c], "i32");
  k().call("vs_max_tokens_fwd", out.code, b, n, c, x.ptr, out.ptr, argmax.ptr, k().stream);
  g.record([x], [out], () => {
    const gy = g.grad(out);
    if (!gy) return;
    const slot = g.gradSlot(x)!;
    k().call(
      "vs_max_tokens_bwd",
      gy.code,
      b,
      n,
      c,
      gy.ptr,
      argmax.ptr,
      slot.buf.ptr,
      slot.accumulate ? 1 : 0,
      k().stream,
    );
  });
  return out;
}

/**
 * The qkv bias (3 D) = [q_bias, 0, v_bias]: V-SWIFT's attention has biases on queries and values only.
 * Its gradient is f32 so that the bias sums reach the parameters without a bf16 rounding.
 */
export function qkvBias(g: Graph, qBias: Tensor, vBias: Tensor): Tensor {
  expectFloat("qkvBias", qBias, vBias);
  const d = qBias.numel;
  expect(vBias.numel === d, () => `qkvBias: ${qBias} and ${vBias} differ`);
  const out = g.alloc([3 * d], qBias.dtype);
  out.gradDtype = "f32";
  const w = qBias.bytes;
  memset(out.ptr, 0, out.bytes);
  k().call("vs_memcpy", out.ptr, qBias.ptr, w, 3, k().stream);
  k().call("vs_memcpy", out.sub(2 * d, [d]).ptr, vBias.ptr, w, 3, k().stream);
  g.record([qBias, vBias], [out], () => {
    const gy = g.grad(out);
    if (!gy) return;
    for (const [p, off] of [[qBias, 0], [vBias, 2 * d]] as const) {
      if (!p.requiresGrad) continue;
      const part = g.alloc([d], "f32");
      k().call("vs_memcpy", part.ptr, gy.sub(off, [d]).ptr, d * 4, 3, k().stream);
      landF32(g, p, part);
    }
  });
  return out;
}
