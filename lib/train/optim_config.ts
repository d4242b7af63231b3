/**
 * The `optim` section that pretraining and fine-tuning configs share (fine-tuning adds layer_decay), its
 * schema leaves, and what both loops build from it: AdamW's options and the per-step schedule.
 */
import type { AdamWOptions } from "./adamw.ts";
import { bool, int, type Leaf, num, numbers } from "./config_schema.ts";
import { CosineSchedule } from "./schedule.ts";

export interface OptimSection {
  lr: number;
  min_lr: number;
  betas: number[];
  eps: number;
  weight_decay: number;
  warmup_epochs: number;
  /** Overrides warmup_epochs when > 0. */
  warmup_steps: number;
  /** Clip the global gradient norm to this; 0 disables clipping. */
  clip_grad: number;
  /** Scale lr and min_lr by global batch / 256 (VideoMAE v1); off as in V-SWIFT. */
  scale_lr: boolean;
  /** Non-finite steps in a row to skip (never applied) before the run stops; 0 stops at the first. */
  skip_nonfinite: number;
}

/** Schema leaves of the shared keys. */
export const OPTIM_LEAVES: Record<keyof OptimSection, Leaf> = {
  lr: num(0, { exclusiveMin: true }),
  min_lr: num(0),
  betas: numbers(2, { min: 0, max: 1, exclusiveMax: true }),
  eps: num(0, { exclusiveMin: true }),
  weight_decay: num(0),
  warmup_epochs: num(0),
  warmup_steps: int(0),
  clip_grad: num(0),
  scale_lr: bool,
  skip_nonfinite: int(0),
};

/** The factor on lr and min_lr: global batch / 256 with scale_lr, else 1. */
function lrScale(o: OptimSection, globalBatch: number): number {
  return o.scale_lr ? globalBatch / 256 : 1;
}

/** AdamW's options for a run whose ranks together take `globalBatch` clips per step. */
export function adamWOptions(o: OptimSection, globalBatch: number): AdamWOptions {
  return {
    lr: o.lr * lrScale(o, globalBatch),
    betas: [o.betas[0], o.betas[1]],
    eps: o.eps,
    weightDecay: o.weight_decay,
    clipGrad: o.clip_grad > 0 ? o.clip_grad : undefined,
  };
}

/**
 * The run's schedule: `steps` steps when > 0, else `epochs` epochs of `stepsPerEpoch`; warmup_steps, else
 * warmup_epochs rounded to steps, at most the whole run.
 */
export function runSchedule(
  o: OptimSection,
  run: { globalBatch: number; stepsPerEpoch: number; steps: number; epochs: number },
): CosineSchedule {
  const total = run.steps > 0 ? run.steps : run.epochs * run.stepsPerEpoch;
  const warmup = Math.min(
    total,
    o.warmup_steps > 0 ? o.warmup_steps : Math.round(o.warmup_epochs * run.stepsPerEpoch),
  );
  const scale = lrScale(o, run.globalBatch);
  return new CosineSchedule(o.lr * scale, o.min_lr * scale, warmup, total);
}
