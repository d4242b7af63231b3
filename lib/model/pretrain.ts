/**
 * VideoMAE pretraining model as V-SWIFT's PixelPretrainVisionTransformer: patch embedding and fixed
 * sinusoid positions, an encoder over the visible tokens of a tube mask, encoder_to_decoder, a decoder
 * over all tokens (visible tokens then mask tokens), a head on the masked tokens, and the MSE to the
 * per-patch normalised pixels of the input.
 */
import type { Graph } from "../autograd.ts";
import { add, addBcast } from "../ops/elementwise.ts";
import { mse } from "../ops/loss.ts";
import { concatTokens, gatherRows, indexTensor, sliceTokens } from "../ops/tokens.ts";
import { patchify, patchTarget, videoDims } from "../ops/video.ts";
import type { Rng } from "../rng.ts";
import type { Tensor } from "../tensor.ts";
import { type PositionTable, VideoModel } from "./base.ts";
import { geometry, mlpHidden, type ModelConfig } from "./config.ts";
import { Block, LayerNorm, Linear, normStream, type Stream } from "./layers.ts";
import { type MaskRule, type TokenMask, tubeMask } from "./masking.ts";
import type { Param } from "./params.ts";

export interface PretrainForwardOptions {
  /** An explicit mask; otherwise one is drawn from `rng` with maskRatio and maskRule. */
  mask?: TokenMask;
  rng?: Rng;
  /** Default 0.9. */
  maskRatio?: number;
  /** Default "vswift". */
  maskRule?: MaskRule;
  /** Mean and std per channel to normalise a uint8 video with. */
  norm?: { mean: number[]; std: number[] };
}

export interface PretrainOutput {
  /** Scalar f32 MSE over the masked tokens. */
  loss: Tensor;
  /** (B, nMasked, 3 * tubelet * patch^2) predictions of the normalised pixels, (dt, dy, dx, c) order. */
  pred: Tensor;
  /** (B, nMasked, same) f32 targets. */
  target: Tensor;
  mask: TokenMask;
}

export class VideoMAEPretrain extends VideoModel {
  readonly patchEmbed: Linear;
  readonly encoderBlocks: Block[] = [];
  readonly encoderNorm: LayerNorm;
  readonly encoderToDecoder: Linear;
  readonly maskToken: Param;
  readonly decoderBlocks: Block[] = [];
  readonly decoderNorm: LayerNorm;
  readonly decoderHead: Linear;
  private readonly encPos: PositionTable;
  private readonly decPos: PositionTable;

  constructor(config: ModelConfig) {
    super(config);
    const c = config;
    const { tokens, patchDim } = geometry(c);
    const s = this.store;
    const p = c.patchSize;
    this.patchEmbed = new Linear(s, "encoder.patch_embed.proj", patchDim, c.embedDim, {
      init: "torchDefault",
      weightShape: [c.embedDim, 3, c.tubelet, p, p],
    });
    for (let i = 0; i < c.depth; i++) {
      this.encoderBlocks.push(
        new Block(
          s,
          `encoder.blocks.${i}`,
          c.embedDim,
          c.heads,
          mlpHidden(c.embedDim, c.mlpRatio),
          c.lnEps,
          "xavier",
        ),
      );
    }
    this.encoderNorm = new LayerNorm(s, "encoder.norm", c.embedDim, c.lnEps);
    this.encoderToDecoder = new Linear(s, "encoder_to_decoder", c.embedDim, c.decoderDim, {
      bias: false,
      init: "torchDefault",
    });
    // The pretraining file's trunc_normal_ truncates at +-std, not +-2 std.
    this.maskToken = s.declare("decoder.mask_token", [1, 1, c.decoderDim], {
      kind: "truncNormal",
      std: 0.02,
      lo: -0.02,
      hi: 0.02,
    });
    for (let i = 0; i < c.decoderDepth; i++) {
      this.decoderBlocks.push(
        new Block(
          s,
          `decoder.blocks.${i}`,
          c.decoderDim,
          c.decoderHeads,
          mlpHidden(c.decoderDim, c.mlpRatio),
          c.lnEps,
          "xavier",
        ),
      );
    }
    this.decoderNorm = new LayerNorm(s, "decoder.norm", c.decoderDim, c.lnEps);
    this.decoderHead = new Linear(s, "decoder.head", c.decoderDim, patchDim, { init: "xavier" });
    this.encPos = this.table("encoder.pos_embed", tokens, c.embedDim);
    this.decPos = this.table("pos_embed", tokens, c.decoderDim);
  }

  /** Draws a tube mask for a batch of b videos. */
  drawMask(rng: Rng, b: number, ratio = 0.9, rule: MaskRule = "vswift"): TokenMask {
    const { slices, perSlice } = geometry(this.config);
    return tubeMask(rng, { b, slices, perSlice, ratio, rule });
  }

  /** Loss and predictions for video: (B, 3, T, H, W) (f32, bf16, or u8 with `norm`). */
  forward(g: Graph, video: Tensor, opts: PretrainForwardOptions = {}): PretrainOutput {
    const c = this.config;
    const dt = this.dtype;
    if (!dt) throw new Error("The model is not allocated yet: call allocate() before forward()");
    const dims = videoDims(video, c.tubelet, c.patchSize);
    const { tokens } = geometry(c);
    const expectedShape = [3, c.frames, c.imgSize, c.imgSize];
    if (video.shape.slice(1).join() !== expectedShape.join()) {
      throw new RangeError(
        `Video ${video} does not match the model's input (B, ${expectedShape.join(", ")})`,
      );
    }
    const b = dims.b;
    let mask = opts.mask;
    if (!mask) {
      if (!opts.rng) throw new Error("forward needs either an explicit mask or an rng to draw one");
      mask = this.drawMask(opts.rng, b, opts.maskRatio ?? 0.9, opts.maskRule ?? "vswift");
    }
    if (mask.b !== b || mask.tokens !== tokens) {
      throw new RangeError(
        `Mask for ${mask.b} x ${mask.tokens} tokens does not fit a batch of ${b} x ${tokens}`,
      );
    }
    const { nVisible: nv, nMasked: nm } = mask;
    const visIdx = indexTensor(g, mask.visible, b);
    const maskIdx = indexTensor(g, mask.masked, b);

    // Encoder on the visible tokens only: patch rows are cut for those tokens alone.
    const patches = patchify(g, video, dims, dt, visIdx, opts.norm);
    let x = this.patchEmbed.forward(g, patches);
    x = add(
      g,
      x,
      gatherRows(g, this.requireTable(this.encPos), visIdx, { b, nSrc: tokens, c: c.embedDim, shared: true }),
    );
    let s: Stream = { x };
    for (const blk of this.encoderBlocks) s = blk.forward(g, s, b, nv);
    const enc = normStream(g, s, this.encoderNorm).y;

    // Decoder input: [visible tokens + their positions, mask token + masked positions].
    const decTable = this.requireTable(this.decPos);
    const dd = c.decoderDim;
    let xv = this.encoderToDecoder.forward(g, enc);
    xv = add(g, xv, gatherRows(g, decTable, visIdx, { b, nSrc: tokens, c: dd, shared: true }));
    const xm = addBcast(
      g,
      gatherRows(g, decTable, maskIdx, { b, nSrc: tokens, c: dd, shared: true }),
      this.maskToken.value,
    );
    s = { x: concatTokens(g, xv, xm, { b, c: dd }) };
    for (const blk of this.decoderBlocks) s = blk.forward(g, s, b, tokens);

    // Only the mask tokens (the last nm) are normalised and predicted.
    const dims3 = { b, n: tokens, c: dd };
    const tail: Stream = {
      x: sliceTokens(g, s.x, nv, nm, dims3),
      delta: s.delta && sliceTokens(g, s.delta, nv, nm, dims3),
    };
    const y = normStream(g, tail, this.decoderNorm).y;
    const pred = this.decoderHead.forward(g, y).view([b, nm, this.decoderHead.outDim]);
    const target = patchTarget(g, video, dims, maskIdx, 1e-6, opts.norm);
    const loss = mse(g, pred, target);
    return { loss, pred, target, mask };
  }

  /** Forward multiply-adds per video counted as fvcore counts them, for nVisible / nMasked tokens. */
  macs(nVisible: number, nMasked: number): number {
    const n = nVisible + nMasked;
    let m = this.patchEmbed.macs(n); // the Conv3d runs over every token before masking
    for (const blk of this.encoderBlocks) m += blk.macs(1, nVisible);
    m += this.encoderNorm.macs(nVisible) + this.encoderToDecoder.macs(nVisible);
    for (const blk of this.decoderBlocks) m += blk.macs(1, n);
    m += this.decoderNorm.macs(nMasked) + this.decoderHead.macs(nMasked);
    return m;
  }
}
