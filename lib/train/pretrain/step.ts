/** One pretraining step: zero gradients, forward, backward, AdamW. The loss stays on the device. */
import type { Graph } from "../../autograd.ts";
import type { MaskRule, TokenMask } from "../../model/masking.ts";
import type { VideoMAEPretrain } from "../../model/pretrain.ts";
import type { Rng } from "../../rng.ts";
import type { Tensor } from "../../tensor.ts";
import type { AdamW } from "../adamw.ts";

export interface StepOptions {
  lr: number;
  rng: Rng;
  maskRatio: number;
  maskRule?: MaskRule;
  mask?: TokenMask;
  norm?: { mean: number[]; std: number[] };
}

/** Runs one step on `video` (B, 3, T, H, W); returns the loss tensor (a device scalar). */
export function pretrainStep(
  model: VideoMAEPretrain,
  opt: AdamW,
  g: Graph,
  video: Tensor,
  o: StepOptions,
): Tensor {
  model.store.zeroGrad();
  const { loss } = model.forward(g, video, {
    rng: o.rng,
    mask: o.mask,
    maskRatio: o.maskRatio,
    maskRule: o.maskRule,
    norm: o.norm,
  });
  g.backward(loss);
  opt.update(o.lr);
  return loss;
}
