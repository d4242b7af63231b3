/** Multi-head self-attention over packed qkv (flash attention on the GPU). */
import type { Graph } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { expect, expectFloat, k } from "./common.ts";

/**
 * out: (B*N, H*hd) = softmax(q k^T * scale) v for qkv: (B*N, 3*H*hd) laid out (B, N, 3, H, hd) as the
 * qkv Linear writes it. Non-causal, no mask; scale defaults to hd^-0.5.
 */
export function attention(
  g: Graph,
  qkv: Tensor,
  b: number,
  n: number,
  heads: number,
  headDim: number,
  scale = 1 / Math.sqrt(headDim),
): Tensor {
  const dt = expectFloat("attention", qkv);
  expect(
    qkv.numel === b * n * 3 * heads * headDim,
    () => `attention: ${qkv} is not (B ${b}, N ${n}, 3, heads ${heads}, head_dim ${headDim})`,
  );
  const out = g.alloc([b * n, heads * headDim], dt);
  const lse = g.alloc([b, heads, n], "f32");
  k().call("vs_attention_fwd", out.code, b, n, heads, headDim, scale, qkv.ptr, out.ptr, lse.ptr, k().stream);
  g.record([qkv], [out], () => {
    const dout = g.grad(out);
    if (!dout) return;
    const wsBytes = k().attentionWorkspaceBytes(out.code, b, n, heads, headDim);
    const ws = wsBytes > 0 ? g.alloc([wsBytes], "u8") : undefined;
    g.writeGrad(qkv, (dst) =>
      k().call(
        "vs_attention_bwd",
        out.code,
        b,
        n,
        heads,
        headDim,
        scale,
        qkv.ptr,
        out.ptr,
        dout.ptr,
        lse.ptr,
        dst.ptr,
        ws?.ptr ?? null,
        wsBytes,
        k().stream,
      ));
  });
  return out;
}
