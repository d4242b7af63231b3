/**
 * vswift: VideoMAE pretraining and fine-tuning (the V-SWIFT recipe) in TypeScript on Deno, with the
 * math in a native kernel library (host: C + OpenMP + OpenBLAS; GPU: CUDA, cuBLASLt, NCCL).
 *
 * ```ts
 * import { createPretrainModel, Graph, loadConfig, pretrain, readScalar, Rng, uploadVideo } from "./mod.ts";
 *
 * const model = await createPretrainModel("tiny", { dtype: "f32", seed: 0 });
 * const g = new Graph();
 * const video = uploadVideo(g, new Float32Array(2 * 3 * 4 * 32 * 32), [2, 3, 4, 32, 32]);
 * const { loss, pred } = model.forward(g, video, { rng: new Rng(0), maskRatio: 0.75 });
 * g.backward(loss); // gradients land in model.store.grad
 * console.log(readScalar(loss), pred.shape);
 * g.reset();
 *
 * // The pretraining loop, one StepMetrics per step:
 * const cfg = await loadConfig("configs/default.yaml", ["--train.steps", "20"]);
 * for await (const m of pretrain(cfg)) console.log(m.step, m.loss);
 * ```
 * @module
 */
import { Graph } from "./lib/autograd.ts";
import { type DeviceChoice, openNative } from "./lib/ffi/native.ts";
import { loadSafetensors, saveSafetensors } from "./lib/io/safetensors.ts";
import { type ClassifierOptions, VideoClassifier } from "./lib/model/classifier.ts";
import { type ModelConfig, modelConfig } from "./lib/model/config.ts";
import { VideoMAEPretrain } from "./lib/model/pretrain.ts";
import type { VideoModel } from "./lib/model/base.ts";
import { type LoadReport, loadStateDict, stateDict } from "./lib/model/state.ts";
import { type DType, type Tensor, writeTensor } from "./lib/tensor.ts";

export { Graph } from "./lib/autograd.ts";
export { type Backend, type DeviceChoice, KernelError, native, openNative } from "./lib/ffi/native.ts";
export { allocPersistent, Arena, freePersistent, memoryInUse, persistentMemory } from "./lib/memory.ts";
export { type DType, readFloats, readScalar, readTensor, Tensor, writeTensor } from "./lib/tensor.ts";
export { Rng } from "./lib/rng.ts";
export { type ModelConfig, modelConfig, SIZE_NAMES } from "./lib/model/config.ts";
export { type PretrainForwardOptions, type PretrainOutput, VideoMAEPretrain } from "./lib/model/pretrain.ts";
export { type ClassifierOptions, type PoolKind, VideoClassifier } from "./lib/model/classifier.ts";
export {
  keptPerSlice,
  maskFromBoolean,
  type MaskRule,
  maskToBoolean,
  type TokenMask,
  tubeMask,
} from "./lib/model/masking.ts";
export { type LoadReport, loadStateDict, stateDict } from "./lib/model/state.ts";
export {
  decodeSafetensors,
  encodeSafetensors,
  fromFloats,
  loadSafetensors,
  type SafeTensor,
  saveSafetensors,
  toFloats,
} from "./lib/io/safetensors.ts";
export { AdamW, type AdamWOptions, vswiftDecays } from "./lib/train/adamw.ts";
export { exitStatusOf, RefusedToStart, StoppedBeforeStart } from "./lib/train/exit_codes.ts";
export { NonFiniteStepError } from "./lib/train/nonfinite.ts";
export { ConfigChangedError } from "./lib/train/resume_check.ts";
export { countFlops, flopsTable, fvcoreFormat } from "./lib/model/flops.ts";
export {
  applyOverrides,
  defaultConfig,
  loadConfig,
  type PretrainConfig,
} from "./lib/train/pretrain/config.ts";
export {
  formatLine,
  type LoopOptions,
  pretrain,
  type RunSummary,
  type StepMetrics,
} from "./lib/train/pretrain/loop.ts";
export {
  finetune,
  type FinetuneLoopOptions,
  type FinetuneStepMetrics,
  type FinetuneSummary,
} from "./lib/train/finetune/loop.ts";
export {
  defaultFinetuneConfig,
  type FinetuneConfig,
  loadFinetuneConfig,
} from "./lib/train/finetune/config.ts";
export { evaluateCheckpoint } from "./lib/train/finetune/eval.ts";
export { extractFeatures, type VideoFeatures } from "./lib/train/finetune/features.ts";
export {
  fitLinearProbe,
  type LinearProbe,
  predictLinearProbe,
  probeAccuracy,
} from "./lib/train/linear_probe.ts";
export { layerScales } from "./lib/train/finetune/layer_decay.ts";
export { mergeViews } from "./lib/train/finetune/tta.ts";
export { openPth, stateDictOf, toSafeTensors } from "./lib/io/pth.ts";
export { type Batch, type LoaderOptions, VideoLoader } from "./lib/data/loader.ts";
export { ensureSyntheticDataset, MOTION_CLASSES, type SyntheticStyle } from "./lib/data/synthetic.ts";
export { encodePng, gridImage, type RgbImage } from "./lib/data/png_grid.ts";
export { writeReconstructions } from "./lib/train/pretrain/visualize.ts";
// Notebook pieces: plots as SVG text, test results, clips as PNG strips, interruptible training cells.
export { type LinePlotOptions, linePlotSvg, type Series } from "./lib/notebook/line_plot.ts";
export { confusionMatrix, confusionMatrixSvg } from "./lib/notebook/confusion.ts";
export { readTestResults, type TestRow } from "./lib/notebook/test_results.ts";
export { videoStripPng } from "./lib/notebook/clip_strip.ts";
export { stopOnInterrupt } from "./lib/notebook/interrupt.ts";

/** Options for building a model on the device. */
export interface CreateOptions {
  /** Compute dtype of activations and of the weight copy the kernels read (f32 masters either way). */
  dtype?: "f32" | "bf16";
  /** Seed of the initialisation. */
  seed?: number;
  /** "host", "cuda" or "auto" (cuda when a GPU is usable). */
  device?: DeviceChoice;
}

function resolveConfig(config: string | ModelConfig, overrides?: Partial<ModelConfig>): ModelConfig {
  return typeof config === "string" ? modelConfig(config, overrides) : { ...config, ...overrides };
}

/**
 * Builds a VideoMAE pretraining model from a size name ("small", "base", "B/16", "tiny", ...) or a
 * config, opens the kernel library if needed, allocates it and draws V-SWIFT's initialisation.
 */
export async function createPretrainModel(
  config: string | ModelConfig,
  opts: CreateOptions & { overrides?: Partial<ModelConfig> } = {},
): Promise<VideoMAEPretrain> {
  await openNative({ device: opts.device ?? "auto" });
  return new VideoMAEPretrain(resolveConfig(config, opts.overrides)).allocate(opts.dtype ?? "f32").initialize(
    opts.seed ?? 0,
  );
}

/** Builds the fine-tuning classifier (mean pooling, fc_norm, head) the same way. */
export async function createClassifier(
  config: string | ModelConfig,
  classifier: ClassifierOptions,
  opts: CreateOptions & { overrides?: Partial<ModelConfig> } = {},
): Promise<VideoClassifier> {
  await openNative({ device: opts.device ?? "auto" });
  return new VideoClassifier(resolveConfig(config, opts.overrides), classifier).allocate(opts.dtype ?? "f32")
    .initialize(opts.seed ?? 0);
}

/**
 * Copies a host video batch (B, 3, T, H, W) into a tensor of this step: f32 or bf16 values already
 * normalised, or uint8 pixels (then pass `norm` to forward).
 */
export function uploadVideo(
  g: Graph,
  data: Float32Array | Uint8Array,
  shape: [number, number, number, number, number],
  dtype: DType = data instanceof Uint8Array ? "u8" : "f32",
): Tensor {
  const t = g.alloc(shape, dtype);
  writeTensor(t, data);
  return t;
}

/** Name, shape and size of every parameter, in state-dict order. */
export function parameters(model: VideoModel): { name: string; shape: readonly number[]; numel: number }[] {
  return model.store.params.map((p) => ({ name: p.name, shape: p.shape, numel: p.numel }));
}

/** Saves the model's weights (PyTorch names, f32 or bf16) to a safetensors file, atomically. */
export async function saveModel(
  path: string,
  model: VideoModel,
  opts: { dtype?: "F32" | "BF16" } = {},
): Promise<void> {
  await saveSafetensors(path, stateDict(model, opts), { format: "pt", model: model.config.name });
}

/** Loads weights from a safetensors file into the model (strict by default). */
export async function loadModel(
  path: string,
  model: VideoModel,
  opts: { strict?: boolean } = {},
): Promise<LoadReport> {
  const file = await loadSafetensors(path);
  return loadStateDict(model, file.tensors, { strict: opts.strict, source: path });
}
