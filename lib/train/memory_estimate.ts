/**
 * What a training run needs in device (or host) memory, estimated from the declared model before
 * anything is allocated, so that a model or batch too large for the machine is refused at once with the
 * figures instead of being killed by the kernel minutes later. The estimate is a lower bound: f32 master
 * weights, gradients and the two AdamW moments (16 bytes a parameter, 18 with a bf16 copy) and, per
 * transformer block and token, the activations every block keeps for its backward (the inputs of its
 * two LayerNorms, q/k/v, the attention output, the projection, the MLP's hidden layer before and after
 * GELU, its output).
 */
import type { VideoClassifier } from "../model/classifier.ts";
import { geometry, mlpHidden, type ModelConfig } from "../model/config.ts";
import { keptPerSlice } from "../model/masking.ts";
import type { VideoMAEPretrain } from "../model/pretrain.ts";
import type { PretrainConfig } from "./pretrain/config.ts";
import { RefusedToStart } from "./exit_codes.ts";
import type { TrainingProcess } from "./process.ts";

/** Transformer blocks that see `tokens` tokens of width `dim` for each clip of the batch. */
export interface BlockRun {
  depth: number;
  tokens: number;
  dim: number;
  mlpRatio: number;
}

export interface MemoryEstimate {
  /** Parameters, gradients, optimiser state (bytes). */
  state: number;
  /** Activations of one step (bytes). */
  activations: number;
}

const GIB = 1024 ** 3;

/** The lower-bound estimate for `params` parameters and `runs` of blocks at batch `batch`. */
export function estimateTraining(
  params: number,
  runs: BlockRun[],
  batch: number,
  dtype: "f32" | "bf16",
): MemoryEstimate {
  const bytes = dtype === "bf16" ? 2 : 4;
  const state = params * (16 + (dtype === "bf16" ? 2 : 0));
  let perClip = 0;
  for (const r of runs) {
    const hidden = mlpHidden(r.dim, r.mlpRatio);
    perClip += r.depth * r.tokens * (8 * r.dim + 2 * hidden) * bytes;
  }
  return { state, activations: perClip * batch };
}

/** Blocks of a VideoMAE pretraining step: the encoder on `visible` tokens, the decoder on all. */
export function pretrainRuns(c: ModelConfig, visible: number, tokens: number): BlockRun[] {
  return [
    { depth: c.depth, tokens: visible, dim: c.embedDim, mlpRatio: c.mlpRatio },
    { depth: c.decoderDepth, tokens, dim: c.decoderDim, mlpRatio: c.mlpRatio },
  ];
}

/** Blocks of a classifier step: the encoder on every token. */
export function classifierRuns(c: ModelConfig, tokens: number): BlockRun[] {
  return [{ depth: c.depth, tokens, dim: c.embedDim, mlpRatio: c.mlpRatio }];
}

/**
 * Throws when `need` exceeds `available` bytes, with the figures and what to change. `what` names the
 * model ("giant, 1012.3M parameters") and `where` the memory ("host memory", "GPU 0").
 */
export function requireMemory(
  need: MemoryEstimate,
  available: number,
  opts: { what: string; where: string; batch: number },
): void {
  const total = need.state + need.activations;
  if (total <= available) return;
  const g = (b: number) => `${(b / GIB).toFixed(1)} GiB`;
  throw new RefusedToStart(
    `The run needs at least ${g(total)} (${opts.what}: weights, gradients and AdamW state ${
      g(need.state)
    }; activations for a batch of ${opts.batch} ${g(need.activations)}) but ${opts.where} has ${
      g(available)
    } available; lower train.batch_size, choose a smaller model.size, or spread the batch over more GPUs`,
  );
}

/**
 * Memory this rank may use and its name: the GPU's free memory, or the host's available memory shared
 * by the ranks of this machine.
 */
export function availableMemory(
  n: { backend: string; memInfo(): { free: number }; deviceName(): string },
  localRanks: number,
): { bytes: number; where: string } {
  const free = n.memInfo().free;
  if (n.backend === "cuda") return { bytes: free, where: `the GPU (${n.deviceName()})` };
  const share = localRanks > 1 ? ` (${localRanks} ranks share it)` : "";
  return { bytes: free / Math.max(1, localRanks), where: `host memory${share}` };
}

function describe(c: ModelConfig, params: number): string {
  return `${c.name}, ${(params / 1e6).toFixed(1)}M parameters`;
}

/** Refuses a pretraining run (declared, not yet allocated) that cannot fit this rank's memory. */
export function checkPretrainMemory(
  model: VideoMAEPretrain,
  cfg: PretrainConfig,
  dtype: "f32" | "bf16",
  proc: TrainingProcess,
): void {
  const c = model.config;
  const { slices, perSlice, tokens } = geometry(c);
  const visible = slices * keptPerSlice(perSlice, cfg.mask.ratio, cfg.mask.rule);
  const batch = cfg.train.batch_size;
  const need = estimateTraining(model.parameterCount, pretrainRuns(c, visible, tokens), batch, dtype);
  const { bytes, where } = availableMemory(proc.native, proc.env.localWorldSize);
  requireMemory(need, bytes, { what: describe(c, model.parameterCount), where, batch });
}

/** Refuses a fine-tuning run whose classifier (declared, not yet allocated) cannot fit. */
export function checkClassifierMemory(
  model: VideoClassifier,
  batch: number,
  dtype: "f32" | "bf16",
  proc: TrainingProcess,
): void {
  const c = model.config;
  const need = estimateTraining(model.parameterCount, classifierRuns(c, geometry(c).tokens), batch, dtype);
  const { bytes, where } = availableMemory(proc.native, proc.env.localWorldSize);
  requireMemory(need, bytes, { what: describe(c, model.parameterCount), where, batch });
}
