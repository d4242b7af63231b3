/** The classifier of a fine-tuning configuration: its geometry, and the model allocated and initialised. */
import { VideoClassifier } from "../../model/classifier.ts";
import { type ModelConfig, modelConfig } from "../../model/config.ts";
import { type FinetuneConfig, headClasses } from "./config.ts";

/** The model geometry of a configuration. */
export function finetuneModelConfig(cfg: FinetuneConfig): ModelConfig {
  return modelConfig(cfg.model.size, {
    imgSize: cfg.model.input_size,
    frames: cfg.model.frames,
    tubelet: cfg.model.tubelet,
    ...(cfg.model.patch_size > 0 ? { patchSize: cfg.model.patch_size } : {}),
  });
}

/** The classifier of a configuration, allocated in `dtype` and initialised from train.seed. */
export function buildClassifier(cfg: FinetuneConfig, dtype: "f32" | "bf16"): VideoClassifier {
  return new VideoClassifier(finetuneModelConfig(cfg), {
    numClasses: headClasses(cfg),
    dropPath: cfg.model.drop_path,
    initScale: cfg.model.init_scale,
    pool: cfg.model.pool,
  }).allocate(dtype).initialize(cfg.train.seed);
}
