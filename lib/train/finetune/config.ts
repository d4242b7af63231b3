/**
 * Fine-tuning configuration: V-SWIFT's fine-tuning defaults (scripts/finetune/finetune_ssv2_vit-b16.sh and
 * its argparse defaults), a YAML file on top, then `--section.key value` overrides.
 */
import type { DeviceChoice } from "../../ffi/native.ts";
import { classCount } from "../../data/labels.ts";
import { POOL_KINDS, type PoolKind } from "../../model/classifier.ts";
import { OPTIM_LEAVES, type OptimSection } from "../optim_config.ts";
import {
  applyCliOverrides,
  applyYamlDoc,
  bool,
  device,
  int,
  num,
  numbers,
  overrides as overridesKey,
  readYamlFile,
  type Schema,
  str,
} from "../config_schema.ts";

export interface FinetuneConfig {
  model: {
    /** A size name: small, base, large, huge, giant, mini, tiny. */
    size: string;
    input_size: number;
    frames: number;
    tubelet: number;
    /** 0 keeps the size's patch size. */
    patch_size: number;
    /** Compute dtype: bf16 (fp32 master weights), f32, or auto (bf16 on a GPU, f32 on the host). */
    dtype: "auto" | "bf16" | "f32";
    /** Classes of the head; 0 takes the dataset's count. */
    num_classes: number;
    /** Stochastic depth of the last block (linear from 0 over the blocks). */
    drop_path: number;
    /** The head's initial weights and bias are scaled by this. */
    init_scale: number;
    /** Pooling over the tokens: mean (V-SWIFT) or max (no parameters either way; see lib/model/classifier.ts). */
    pool: PoolKind;
  };
  data: {
    /** A dataset name (SSV2, Kinetics-400, ..., shapes): its class count and label map. */
    dataset: string;
    /** list: the list files below; shapes: generated motion clips (a labelled train and eval split). */
    source: "list" | "shapes";
    train_list: string;
    val_list: string;
    /** V-SWIFT's SSv2 scripts test on the validation list. */
    test_list: string;
    root: string;
    /** Label names (one per line, or SSv2's JSON), for the per-video test results. */
    label_names: string;
    /** For a 710-class head into Kinetics-400/600/700: label_710to{400,600,700}.json. */
    head_map: string;
    /** Generated dataset: videos of the train split and of the eval split (val = test). */
    shapes_train_videos: number;
    shapes_eval_videos: number;
    shapes_size: number;
    shapes_frames: number;
    /** Where the generated dataset goes ("" = under train.output). */
    shapes_dir: string;
    /** Short side the training videos are decoded at (0: 256, the loader's default). */
    short_side: number;
    /** Short side of validation and test decoding (0: model.input_size, as V-SWIFT's short_side_size). */
    eval_short_side: number;
    /** Clips drawn from each decoded training video (VideoMAE v1's repeated augmentation; V-SWIFT: 1). */
    repeats: number;
    workers: number;
    prefetch: number;
    mean: number[];
    std: number[];
    flip: boolean;
    /** Area fraction range of the random resized crop (V-SWIFT: [0.08, 1]). */
    crop_scale: number[];
    /** timm RandAugment config ("" disables it). */
    rand_augment: string;
    /** Random erasing probability. */
    reprob: number;
    /** Test views: temporal chunks x spatial crops. */
    test_chunks: number;
    test_crops: number;
  };
  mixup: {
    /** Beta parameter of mixup (0 disables). */
    mixup: number;
    /** Beta parameter of CutMix (0 disables). */
    cutmix: number;
    prob: number;
    switch_prob: number;
    smoothing: number;
  };
  optim: OptimSection & {
    /** Layer-wise lr decay: layer i (0 the patch embedding, k + 1 block k) gets decay^(depth + 1 - i). */
    layer_decay: number;
  };
  train: {
    epochs: number;
    /** Per-device batch (even, for mixup). */
    batch_size: number;
    /** Validation and test batch (0: batch_size). */
    eval_batch_size: number;
    /** Stop after this many steps (0: epochs x steps per epoch). */
    steps: number;
    seed: number;
    device: DeviceChoice;
    output: string;
    /** Weights to start from: a pretraining checkpoint of ours, a safetensors or a .pth file ("": none). */
    finetune: string;
    /** Checkpoint keys tried in order, "|"-separated (V-SWIFT's --model_key). */
    model_key: string;
    save_ckpt_freq: number;
    keep_last: number;
    /**
     * auto: resume from the newest checkpoint of the output folder if there is one; always: insist on one
     * (--resume); never: set the folder's previous run aside and start afresh (--no-resume).
     */
    resume: "auto" | "always" | "never";
    log_every: number;
    tensorboard: boolean;
    /** Validate at the end of every epoch. */
    validate: boolean;
    /** Run the multi-view test after the last epoch. */
    test: boolean;
  };
}

const SCHEMA: { [S in keyof FinetuneConfig]: { [K in keyof FinetuneConfig[S]]: Schema[string][string] } } = {
  model: {
    size: str(["small", "base", "large", "huge", "giant", "mini", "tiny"]),
    input_size: int(1),
    frames: int(1),
    tubelet: int(1),
    patch_size: int(0),
    dtype: str(["auto", "bf16", "f32"]),
    num_classes: int(0),
    drop_path: num(0, { max: 1, exclusiveMax: true }),
    init_scale: num(0),
    pool: str([...POOL_KINDS]),
  },
  data: {
    dataset: str(),
    source: str(["list", "shapes"]),
    train_list: str(),
    val_list: str(),
    test_list: str(),
    root: str(),
    label_names: str(),
    head_map: str(),
    shapes_train_videos: int(1),
    shapes_eval_videos: int(1),
    shapes_size: int(16),
    shapes_frames: int(1),
    shapes_dir: str(),
    short_side: int(0),
    eval_short_side: int(0),
    repeats: int(1),
    workers: int(0),
    prefetch: int(0),
    mean: numbers(3, { min: 0, max: 1 }),
    std: numbers(3, { min: 0, max: 10 }),
    flip: bool,
    crop_scale: numbers(2, { min: 0, max: 1, exclusiveMin: true }),
    rand_augment: str(),
    reprob: num(0, { max: 1 }),
    test_chunks: int(1),
    test_crops: int(1),
  },
  mixup: {
    mixup: num(0),
    cutmix: num(0),
    prob: num(0, { max: 1 }),
    switch_prob: num(0, { max: 1 }),
    smoothing: num(0, { max: 1, exclusiveMax: true }),
  },
  optim: { ...OPTIM_LEAVES, layer_decay: num(0, { exclusiveMin: true, max: 1 }) },
  train: {
    epochs: int(1),
    batch_size: int(1),
    eval_batch_size: int(0),
    steps: int(0),
    seed: int(0),
    device,
    output: str(),
    finetune: str(),
    model_key: str(),
    save_ckpt_freq: int(1),
    keep_last: int(1),
    resume: str(["auto", "always", "never"]),
    log_every: int(1),
    tensorboard: bool,
    validate: bool,
    test: bool,
  },
};

/** V-SWIFT's fine-tuning defaults (ViT-B/16 on SSv2, 8 GPUs x 128). */
export function defaultFinetuneConfig(): FinetuneConfig {
  return {
    model: {
      size: "base",
      input_size: 224,
      frames: 16,
      tubelet: 2,
      patch_size: 0,
      dtype: "auto",
      num_classes: 0,
      drop_path: 0.1,
      init_scale: 0.001,
      pool: "mean",
    },
    data: {
      dataset: "SSV2",
      source: "list",
      train_list: "",
      val_list: "",
      test_list: "",
      root: "",
      label_names: "",
      head_map: "",
      shapes_train_videos: 192,
      shapes_eval_videos: 64,
      shapes_size: 64,
      shapes_frames: 32,
      shapes_dir: "",
      short_side: 0,
      eval_short_side: 0,
      repeats: 1,
      workers: 0,
      prefetch: 2,
      mean: [0.485, 0.456, 0.406],
      std: [0.229, 0.224, 0.225],
      flip: false,
      crop_scale: [0.08, 1],
      rand_augment: "rand-m7-n4-mstd0.5-inc1",
      reprob: 0.25,
      test_chunks: 2,
      test_crops: 3,
    },
    mixup: { mixup: 0.8, cutmix: 1.0, prob: 1.0, switch_prob: 0.5, smoothing: 0.1 },
    optim: {
      lr: 1e-3,
      min_lr: 1e-6,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weight_decay: 0.05,
      layer_decay: 0.75,
      warmup_epochs: 5,
      warmup_steps: 0,
      clip_grad: 0,
      scale_lr: false,
      skip_nonfinite: 0,
    },
    train: {
      epochs: 50,
      batch_size: 128,
      eval_batch_size: 0,
      steps: 0,
      seed: 0,
      device: "auto",
      output: "runs/finetune",
      finetune: "",
      model_key: "model|module",
      save_ckpt_freq: 10,
      keep_last: 2,
      resume: "auto",
      log_every: 10,
      tensorboard: true,
      validate: true,
      test: true,
    },
  };
}

const schema = SCHEMA as unknown as Schema;

/** Applies `--section.key value` overrides to a fine-tuning config. */
export function applyFinetuneOverrides(cfg: FinetuneConfig, args: string[]): void {
  applyCliOverrides(cfg, schema, args);
}

/** The head's class count: model.num_classes, or the dataset's. */
export function headClasses(cfg: FinetuneConfig): number {
  return cfg.model.num_classes > 0 ? cfg.model.num_classes : classCount(cfg.data.dataset);
}

/** The checkpoint keys train.model_key names, in the order they are tried. */
export function modelKeys(cfg: FinetuneConfig): string[] {
  return cfg.train.model_key.split("|").filter(Boolean);
}

/** Cross-field checks, with messages naming the fields. */
export function validateFinetuneConfig(cfg: FinetuneConfig): void {
  const classes = headClasses(cfg); // throws for an unknown dataset
  const known = classCount(cfg.data.dataset);
  if (cfg.data.dataset !== "shapes" && cfg.model.num_classes > 0 && cfg.model.num_classes !== known) {
    // V-SWIFT asserts the same: a head of another size than the dataset's classes is a mistake.
    throw new Error(
      `model.num_classes ${cfg.model.num_classes} does not match data.dataset ${cfg.data.dataset} (${known} classes)`,
    );
  }
  if (cfg.data.source === "list" && !cfg.data.train_list && !cfg.data.test_list) {
    throw new Error("No data: set data.train_list (and val_list / test_list), or data.source to shapes");
  }
  if (cfg.data.source === "shapes" && classes > 8) {
    throw new Error(`The generated dataset has at most 8 motion classes; the head has ${classes}`);
  }
  if (cfg.data.crop_scale[0] > cfg.data.crop_scale[1]) {
    throw new Error(`data.crop_scale [${cfg.data.crop_scale.join(", ")}] must be [min, max] with min <= max`);
  }
  if (cfg.optim.min_lr > cfg.optim.lr) {
    throw new Error(`optim.min_lr ${cfg.optim.min_lr} exceeds optim.lr ${cfg.optim.lr}`);
  }
  if (cfg.train.batch_size % cfg.data.repeats !== 0) {
    throw new Error(
      `train.batch_size ${cfg.train.batch_size} is not a multiple of data.repeats ${cfg.data.repeats}`,
    );
  }
  const mixing = cfg.mixup.prob > 0 && (cfg.mixup.mixup > 0 || cfg.mixup.cutmix > 0);
  if (mixing && cfg.train.batch_size % 2 !== 0) {
    throw new Error(`Mixup and CutMix need an even train.batch_size, got ${cfg.train.batch_size}`);
  }
}

/** Defaults, then the YAML file (if any), then the overrides; checked. */
export async function loadFinetuneConfig(
  path: string | undefined,
  overrides: string[] = [],
): Promise<FinetuneConfig> {
  const cfg = defaultFinetuneConfig();
  if (path) applyYamlDoc(cfg, schema, await readYamlFile(path), path);
  applyCliOverrides(cfg, schema, overrides);
  // Lists given on the command line are the data to train on, whatever source the config file names.
  const lists = ["data.train_list", "data.val_list", "data.test_list"];
  if (lists.some((k) => overridesKey(overrides, k)) && !overridesKey(overrides, "data.source")) {
    cfg.data.source = "list";
  }
  validateFinetuneConfig(cfg);
  return cfg;
}
