/**
 * The launches of one pretraining step (zeroed gradients, forward, backward, AdamW) as the binding sees
 * them, recorded as a dry run so that a full-size model can be priced on a machine that could not
 * compute it: allocations are real (and never touched), no kernel runs.
 */
import { Graph } from "../autograd.ts";
import { recordLaunches } from "../ffi/launch_log.ts";
import type { Native } from "../ffi/native.ts";
import { Arena } from "../memory.ts";
import type { ModelConfig } from "../model/config.ts";
import { VideoMAEPretrain } from "../model/pretrain.ts";
import { Rng } from "../rng.ts";
import { AdamW } from "../train/adamw.ts";
import { pretrainStep } from "../train/pretrain/step.ts";
import { type CostedLaunch, costLaunches, extrapolate } from "./roofline.ts";

/** The costed launches of one bf16 pretraining step at batch `b`. */
export async function recordPretrainStep(
  n: Native,
  cfg: ModelConfig,
  b: number,
  maskRatio: number,
): Promise<CostedLaunch[]> {
  const arena = new Arena();
  let model: VideoMAEPretrain | undefined;
  let costs: CostedLaunch[] = [];
  try {
    // Allocation and the optimiser's zeroing are inside the dry run too, so nothing is touched.
    await recordLaunches(n, async () => {
      model = new VideoMAEPretrain(cfg).allocate("bf16");
      const opt = new AdamW(model.store, { lr: 1e-4, betas: [0.9, 0.95] });
      const video = arena.alloc([b, 3, cfg.frames, cfg.imgSize, cfg.imgSize], "bf16");
      const g = new Graph(arena);
      const step = await recordLaunches(n, () => {
        pretrainStep(model!, opt, g, video, { lr: 1e-4, rng: new Rng(0), maskRatio });
      });
      costs = costLaunches(step);
    }, { dry: true });
  } finally {
    arena.dispose();
    model?.free();
  }
  return costs;
}

/** A step's costed launches at batch `b`, from recordings at batches 1, 2 and 3 (see extrapolate). */
export async function pretrainStepAt(
  n: Native,
  cfg: ModelConfig,
  b: number,
  maskRatio: number,
): Promise<CostedLaunch[]> {
  const at = [];
  for (const batch of [1, 2, 3]) at.push(await recordPretrainStep(n, cfg, batch, maskRatio));
  return extrapolate([at[0], at[1], at[2]], b);
}
