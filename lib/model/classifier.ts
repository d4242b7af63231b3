/**
 * The fine-tuning model as V-SWIFT's VisionTransformer: all tokens, stochastic depth, pooling over tokens
 * (there is no cls token), fc_norm and a linear head. V-SWIFT pools with the mean; `max` takes each
 * channel's largest value over the tokens instead. Neither pooling has parameters, so the state dict is
 * the same for both: patch_embed.proj.*, blocks.N.*, fc_norm.{weight,bias}, head.{weight,bias}.
 */
import type { Graph } from "../autograd.ts";
import { add, addBcast } from "../ops/elementwise.ts";
import { softmaxCrossEntropy } from "../ops/loss.ts";
import { maxTokens, meanTokens } from "../ops/tokens.ts";
import { patchify, videoDims } from "../ops/video.ts";
import type { Rng } from "../rng.ts";
import { type Tensor, writeTensor } from "../tensor.ts";
import { type PositionTable, VideoModel } from "./base.ts";
import { geometry, mlpHidden, type ModelConfig } from "./config.ts";
import { Block, LayerNorm, Linear, type Stream } from "./layers.ts";

export interface ClassifierOptions {
  numClasses: number;
  /** Stochastic depth rate of the last block; block i gets i * rate / (depth - 1). Default 0.1. */
  dropPath?: number;
  /** The head's initial weights are scaled by this (V-SWIFT's init_scale, default 0.001). */
  initScale?: number;
  /** Pooling over the tokens before fc_norm: `mean` (V-SWIFT, the default) or `max`. */
  pool?: PoolKind;
}

/** How the classifier pools its tokens into one feature vector; see the file comment. */
export type PoolKind = "mean" | "max";
export const POOL_KINDS: readonly PoolKind[] = ["mean", "max"];

export interface ClassifierForwardOptions {
  /** Draws the stochastic-depth masks; without it (evaluation) no block is dropped. */
  rng?: Rng;
  /** Soft targets (B, classes) f32 on the device; with them the output has a loss. */
  targets?: Tensor;
  norm?: { mean: number[]; std: number[] };
}

export class VideoClassifier extends VideoModel {
  readonly patchEmbed: Linear;
  readonly blocks: Block[] = [];
  readonly fcNorm: LayerNorm;
  readonly head: Linear;
  readonly numClasses: number;
  readonly dropPath: number;
  readonly pool: PoolKind;
  private readonly pos: PositionTable;

  constructor(config: ModelConfig, opts: ClassifierOptions) {
    super(config);
    const c = config;
    if (!Number.isInteger(opts.numClasses) || opts.numClasses < 1) {
      throw new RangeError(`numClasses must be a positive integer, got ${opts.numClasses}`);
    }
    this.numClasses = opts.numClasses;
    this.dropPath = opts.dropPath ?? 0.1;
    this.pool = opts.pool ?? "mean";
    if (!POOL_KINDS.includes(this.pool)) {
      throw new RangeError(`pool must be one of ${POOL_KINDS.join(", ")}, got ${this.pool}`);
    }
    if (!(this.dropPath >= 0 && this.dropPath < 1)) {
      throw new RangeError(`dropPath must be in [0, 1), got ${this.dropPath}`);
    }
    const { tokens, patchDim } = geometry(c);
    const s = this.store;
    const p = c.patchSize;
    this.patchEmbed = new Linear(s, "patch_embed.proj", patchDim, c.embedDim, {
      init: "torchDefault",
      weightShape: [c.embedDim, 3, c.tubelet, p, p],
    });
    for (let i = 0; i < c.depth; i++) {
      this.blocks.push(
        new Block(
          s,
          `blocks.${i}`,
          c.embedDim,
          c.heads,
          mlpHidden(c.embedDim, c.mlpRatio),
          c.lnEps,
          "truncNormal",
        ),
      );
    }
    this.fcNorm = new LayerNorm(s, "fc_norm", c.embedDim, c.lnEps);
    this.head = new Linear(s, "head", c.embedDim, this.numClasses, {
      init: "truncNormal",
      scale: opts.initScale ?? 0.001,
    });
    this.pos = this.table("pos_embed", tokens, c.embedDim);
  }

  /** Stochastic-depth rate of block i (torch.linspace(0, rate, depth)[i]). */
  blockDropRate(i: number): number {
    const d = this.blocks.length;
    return d > 1 ? (i * this.dropPath) / (d - 1) : 0;
  }

  /**
   * Logits (B, classes), the features the head reads (B, C: fc_norm of the pooled tokens; what a linear
   * probe trains on) and, with targets, the soft-target cross-entropy.
   */
  forward(
    g: Graph,
    video: Tensor,
    opts: ClassifierForwardOptions = {},
  ): { logits: Tensor; features: Tensor; loss?: Tensor } {
    const c = this.config;
    const dt = this.dtype;
    if (!dt) throw new Error("The model is not allocated yet: call allocate() before forward()");
    const dims = videoDims(video, c.tubelet, c.patchSize);
    const { tokens } = geometry(c);
    const b = dims.b;
    let x = this.patchEmbed.forward(g, patchify(g, video, dims, dt, undefined, opts.norm));
    x = addBcast(g, x, this.requireTable(this.pos));
    let s: Stream = { x };
    this.blocks.forEach((blk, i) => {
      s = blk.forward(
        g,
        s,
        b,
        tokens,
        opts.rng ? this.dropScale(g, opts.rng, b, this.blockDropRate(i)) : undefined,
      );
    });
    const last = s.delta ? add(g, s.x, s.delta) : s.x;
    const pooled = (this.pool === "max" ? maxTokens : meanTokens)(g, last, { b, n: tokens, c: c.embedDim });
    const features = this.fcNorm.forward(g, pooled);
    const logits = this.head.forward(g, features);
    const loss = opts.targets ? softmaxCrossEntropy(g, logits, opts.targets) : undefined;
    return { logits, features, loss };
  }

  /** Per-sample factors 0 or 1 / keep for one block, or undefined when the block is never dropped. */
  private dropScale(g: Graph, rng: Rng, b: number, rate: number): Tensor | undefined {
    if (rate <= 0) return undefined;
    const keep = 1 - rate;
    const scale = new Float32Array(b);
    for (let i = 0; i < b; i++) scale[i] = rng.float() < keep ? 1 / keep : 0;
    const t = g.alloc([b], "f32");
    writeTensor(t, scale);
    return t;
  }

  /** Forward multiply-adds per video as fvcore counts them. */
  macs(): number {
    const n = geometry(this.config).tokens;
    let m = this.patchEmbed.macs(n);
    for (const blk of this.blocks) m += blk.macs(1, n);
    return m + this.fcNorm.macs(1) + this.head.macs(1);
  }
}
