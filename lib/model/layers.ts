/**
 * The transformer layers of V-SWIFT's models, with PyTorch state-dict names. Each layer declares its
 * parameters in a ParamStore, runs forward through the ops (which record the backward), and counts
 * its forward multiply-adds the way fvcore does (Linear and matmul MACs, LayerNorm 5 per element).
 */
import type { Graph } from "../autograd.ts";
import { attention } from "../ops/attention.ts";
import { scaleRows } from "../ops/elementwise.ts";
import { addLayerNorm, layerNorm } from "../ops/layernorm.ts";
import { linear } from "../ops/linear.ts";
import { qkvBias } from "../ops/tokens.ts";
import type { Tensor } from "../tensor.ts";
import type { Init, Param, ParamStore } from "./params.ts";

export type LinearInit = "xavier" | "truncNormal" | "torchDefault";

function weightInit(kind: LinearInit, fanIn: number, fanOut: number, scale = 1): Init {
  switch (kind) {
    case "xavier":
      return { kind: "xavierUniform", fanIn, fanOut };
    case "truncNormal":
      // timm's trunc_normal_(std=.02) in the fine-tuning model truncates at +-2 absolute: in effect none.
      return { kind: "truncNormal", std: 0.02, lo: -2, hi: 2, scale };
    case "torchDefault":
      return { kind: "torchDefault", fanIn };
  }
}

export class Linear {
  readonly weight: Param;
  readonly bias?: Param;

  constructor(
    store: ParamStore,
    name: string,
    readonly inDim: number,
    readonly outDim: number,
    opts: { bias?: boolean; init: LinearInit; scale?: number; weightShape?: number[] },
  ) {
    this.weight = store.declare(
      `${name}.weight`,
      opts.weightShape ?? [outDim, inDim],
      weightInit(opts.init, inDim, outDim, opts.scale),
    );
    if (opts.bias ?? true) {
      const biasInit: Init = opts.init === "torchDefault"
        ? { kind: "torchDefault", fanIn: inDim }
        : { kind: "zeros" };
      this.bias = store.declare(`${name}.bias`, [outDim], biasInit);
    }
  }

  /** y: (rows, out) from x: (rows, in); `gelu` fuses the activation into the GEMM. */
  forward(g: Graph, x: Tensor, opts: { gelu?: boolean } = {}): Tensor {
    return linear(g, x, this.weight.value.view([this.outDim, this.inDim]), this.bias?.value, opts);
  }

  macs(rows: number): number {
    return rows * this.inDim * this.outDim;
  }
}

export class LayerNorm {
  readonly weight: Param;
  readonly bias: Param;

  constructor(store: ParamStore, name: string, readonly dim: number, readonly eps: number) {
    this.weight = store.declare(`${name}.weight`, [dim], { kind: "ones" });
    this.bias = store.declare(`${name}.bias`, [dim], { kind: "zeros" });
  }

  forward(g: Graph, x: Tensor): Tensor {
    return layerNorm(g, x, this.weight.value, this.bias.value, this.eps);
  }

  /** sum = x + r and LayerNorm(sum) in one pass. */
  forwardAdd(g: Graph, x: Tensor, r: Tensor): { sum: Tensor; y: Tensor } {
    return addLayerNorm(g, x, r, this.weight.value, this.bias.value, this.eps);
  }

  /** fvcore counts 5 flops per element of an affine LayerNorm. */
  macs(rows: number): number {
    return 5 * rows * this.dim;
  }
}

export class Attention {
  readonly qkv: Linear;
  readonly qBias: Param;
  readonly vBias: Param;
  readonly proj: Linear;
  readonly headDim: number;

  constructor(
    store: ParamStore,
    name: string,
    readonly dim: number,
    readonly heads: number,
    init: LinearInit,
  ) {
    this.headDim = dim / heads;
    this.qkv = new Linear(store, `${name}.qkv`, dim, 3 * dim, { bias: false, init });
    this.qBias = store.declare(`${name}.q_bias`, [dim], { kind: "zeros" });
    this.vBias = store.declare(`${name}.v_bias`, [dim], { kind: "zeros" });
    this.proj = new Linear(store, `${name}.proj`, dim, dim, { init });
  }

  /** x: (B * n, D) -> (B * n, D). */
  forward(g: Graph, x: Tensor, b: number, n: number): Tensor {
    const bias = qkvBias(g, this.qBias.value, this.vBias.value);
    const qkv = linear(g, x, this.qkv.weight.value, bias);
    const a = attention(g, qkv, b, n, this.heads, this.headDim);
    return this.proj.forward(g, a);
  }

  /** qkv and proj GEMMs plus q k^T and attn v (n^2 D each). */
  macs(b: number, n: number): number {
    return this.qkv.macs(b * n) + this.proj.macs(b * n) + 2 * b * n * n * this.dim;
  }
}

export class Mlp {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(store: ParamStore, name: string, dim: number, hidden: number, init: LinearInit) {
    this.fc1 = new Linear(store, `${name}.fc1`, dim, hidden, { init });
    this.fc2 = new Linear(store, `${name}.fc2`, hidden, dim, { init });
  }

  forward(g: Graph, x: Tensor): Tensor {
    return this.fc2.forward(g, this.fc1.forward(g, x, { gelu: true }));
  }

  macs(rows: number): number {
    return this.fc1.macs(rows) + this.fc2.macs(rows);
  }
}

/**
 * The residual stream between blocks: its value is x + delta. Keeping the last branch output apart
 * lets the next LayerNorm fuse the residual add (one pass over memory instead of two).
 */
export interface Stream {
  x: Tensor;
  delta?: Tensor;
}

/** Adds the pending branch output and applies `norm`; returns the new stream value and the norm. */
export function normStream(g: Graph, s: Stream, norm: LayerNorm): { x: Tensor; y: Tensor } {
  if (!s.delta) return { x: s.x, y: norm.forward(g, s.x) };
  const { sum, y } = norm.forwardAdd(g, s.x, s.delta);
  return { x: sum, y };
}

/** Pre-norm transformer block: x + DropPath(Attn(LN1(x))), then + DropPath(MLP(LN2(.))). */
export class Block {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;

  constructor(
    store: ParamStore,
    name: string,
    readonly dim: number,
    heads: number,
    hidden: number,
    eps: number,
    init: LinearInit,
  ) {
    this.norm1 = new LayerNorm(store, `${name}.norm1`, dim, eps);
    this.attn = new Attention(store, `${name}.attn`, dim, heads, init);
    this.norm2 = new LayerNorm(store, `${name}.norm2`, dim, eps);
    this.mlp = new Mlp(store, `${name}.mlp`, dim, hidden, init);
  }

  /** dropScale: (B) f32 per-sample stochastic-depth factors, or undefined for none. */
  forward(g: Graph, s: Stream, b: number, n: number, dropScale?: Tensor): Stream {
    const h = normStream(g, s, this.norm1);
    let a = this.attn.forward(g, h.y, b, n);
    if (dropScale) a = scaleRows(g, a, dropScale);
    const { sum, y } = this.norm2.forwardAdd(g, h.x, a);
    let m = this.mlp.forward(g, y);
    if (dropScale) m = scaleRows(g, m, dropScale);
    return { x: sum, delta: m };
  }

  macs(b: number, n: number): number {
    return this.norm1.macs(b * n) + this.attn.macs(b, n) + this.norm2.macs(b * n) + this.mlp.macs(b * n);
  }
}
