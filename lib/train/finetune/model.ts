/** The classifier of a fine-tuning configuration: its geometry, and the model allocated and initialised. */
import { VideoClassifier } from "../../model/classifier.ts";
import { type ModelConfig, modelConfig } from "../../model/config.ts";
import { type FinetuneConfig, headClasses } from "./config.ts";
import { checkClassifierMemory } from "../memory_estimate.ts";
import type { TrainingProcess } from "../process.ts";

/** The model geometry of a configuration. */
export function finetuneModelConfig(cfg: FinetuneConfig): ModelConfig {
  return modelConfig(cfg.model.size, {
    imgSize: cfg.model.input_size,
    frames: cfg.model.frames,
    tubelet: cfg.model.tubelet,
    ...(cfg.model.patch_size > 0 ? { patchSize: cfg.model.patch_size } : {}),
  });
}

/**
 * The classifier of a configuration, allocated in `dtype` and initialised from train.seed. With
 * `training`, a model and batch that cannot fit the rank's memory are refused before allocating.
 */
export function buildClassifier(
  cfg: FinetuneConfig,
  dtype: "f32" | "bf16",
  training?: TrainingProcess,
): VideoClassifier {
  const model = new VideoClassifier(finetuneModelConfig(cfg), {
    numClasses: headClasses(cfg),
    dropPath: cfg.model.drop_path,
    initScale: cfg.model.init_scale,
    pool: cfg.model.pool,
  });
  if (training) checkClassifierMemory(model, cfg.train.batch_size, dtype, training);
  return model.allocate(dtype).initialize(cfg.train.seed);
}
