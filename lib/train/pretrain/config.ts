/**
 * Pretraining configuration: V-SWIFT's defaults, a YAML file on top, then `--section.key value`
 * overrides from the command line. Unknown keys and bad values are errors naming the key, the value
 * and where it came from.
 */
import type { DeviceChoice } from "../../ffi/native.ts";
import { type ModelConfig, modelConfig } from "../../model/config.ts";
import { OPTIM_LEAVES, type OptimSection } from "../optim_config.ts";
import {
  applyCliOverrides,
  applyYamlDoc,
  bool,
  device,
  int,
  type Leaf,
  num,
  numbers,
  overrides as overridesKey,
  readYamlFile,
  str,
} from "../config_schema.ts";

export interface PretrainConfig {
  model: {
    /** A size name: small, base, large, huge, giant, mini, tiny. */
    size: string;
    decoder_depth: number;
    input_size: number;
    frames: number;
    tubelet: number;
    /** 0 keeps the size's patch size. */
    patch_size: number;
    /** Compute dtype: bf16 (fp32 master weights), f32, or auto (bf16 on a GPU, f32 on the host). */
    dtype: "auto" | "bf16" | "f32";
  };
  mask: { ratio: number; rule: "vswift" | "v1" };
  data: {
    /**
     * list: the videos of data.list; shapes: a generated dataset of moving shapes (made under the output
     * folder on first use); memory: one fixed random batch on the device, for throughput (V-SWIFT's
     * --use_synthetic).
     */
    source: "list" | "shapes" | "memory";
    /** A list file (V-SWIFT's or VideoMAE's formats), for source list. */
    list: string;
    root: string;
    /** Videos in the generated dataset. */
    shapes_videos: number;
    sampling_rate: number;
    /** Clips drawn from each decoded video (repeated sampling). */
    repeats: number;
    flip: boolean;
    /** Short side the decoder scales to before cropping (0: keep the file's). */
    short_side: number;
    /** Decoding processes (0: one per core). */
    workers: number;
    prefetch: number;
    mean: number[];
    std: number[];
    /** V-SWIFT's limited-storage mode: steps per epoch from this many samples (0: the list's length). */
    samples_per_epoch: number;
  };
  optim: OptimSection;
  train: {
    epochs: number;
    /** Per-device batch. */
    batch_size: number;
    /** Stop after this many steps (0: epochs x steps per epoch). */
    steps: number;
    seed: number;
    device: DeviceChoice;
    output: string;
    /** Save every this many steps (0: at the end of every save_ckpt_freq-th epoch). */
    save_every: number;
    save_ckpt_freq: number;
    keep_last: number;
    /**
     * auto: resume from the newest checkpoint of the output folder if there is one; always: insist on one
     * (--resume); never: set the folder's previous run aside and start afresh (--no-resume).
     */
    resume: "auto" | "always" | "never";
    log_every: number;
    /** Reconstruction pictures every this many steps (0: never). */
    vis_every: number;
    tensorboard: boolean;
  };
}

const SCHEMA: { [S in keyof PretrainConfig]: { [K in keyof PretrainConfig[S]]: Leaf } } = {
  model: {
    size: str(["small", "base", "large", "huge", "giant", "mini", "tiny"]),
    decoder_depth: int(0, 64),
    input_size: int(1),
    frames: int(1),
    tubelet: int(1),
    patch_size: int(0),
    dtype: str(["auto", "bf16", "f32"]),
  },
  mask: { ratio: num(0, { max: 1, exclusiveMax: true }), rule: str(["vswift", "v1"]) },
  data: {
    source: str(["list", "shapes", "memory"]),
    list: str(),
    root: str(),
    shapes_videos: int(1),
    sampling_rate: int(1),
    repeats: int(1),
    flip: bool,
    short_side: int(0),
    workers: int(0),
    prefetch: int(1),
    mean: numbers(3, { min: 0, max: 1 }),
    std: numbers(3, { min: 0, max: 10 }),
    samples_per_epoch: int(0),
  },
  optim: OPTIM_LEAVES,
  train: {
    epochs: int(1),
    batch_size: int(1),
    steps: int(0),
    seed: int(0),
    device,
    output: str(),
    save_every: int(0),
    save_ckpt_freq: int(1),
    keep_last: int(1),
    resume: str(["auto", "always", "never"]),
    log_every: int(1),
    vis_every: int(0),
    tensorboard: bool,
  },
};

/** V-SWIFT's pretraining defaults (scripts/pretrain/pretrain_ssv2_vit-b16.sh and argparse defaults). */
export function defaultConfig(): PretrainConfig {
  return {
    model: {
      size: "base",
      decoder_depth: 4,
      input_size: 224,
      frames: 16,
      tubelet: 2,
      patch_size: 0,
      dtype: "auto",
    },
    mask: { ratio: 0.9, rule: "vswift" },
    data: {
      source: "list",
      list: "",
      root: "",
      shapes_videos: 64,
      sampling_rate: 2,
      repeats: 1,
      flip: false,
      short_side: 0,
      workers: 0,
      prefetch: 4,
      mean: [0.485, 0.456, 0.406],
      std: [0.229, 0.224, 0.225],
      samples_per_epoch: 0,
    },
    optim: {
      lr: 1e-3,
      min_lr: 1e-5,
      betas: [0.9, 0.95],
      eps: 1e-8,
      weight_decay: 0.05,
      warmup_epochs: 40,
      warmup_steps: 0,
      clip_grad: 0,
      scale_lr: false,
      skip_nonfinite: 0,
    },
    train: {
      epochs: 1200,
      batch_size: 256,
      steps: 0,
      seed: 0,
      device: "auto",
      output: "runs/pretrain",
      save_every: 0,
      save_ckpt_freq: 10,
      keep_last: 3,
      resume: "auto",
      log_every: 10,
      vis_every: 500,
      tensorboard: true,
    },
  };
}

/** Merges a parsed YAML document into the config; `source` names the file in errors. */
export function applyYaml(cfg: PretrainConfig, doc: unknown, source: string): void {
  applyYamlDoc(cfg, SCHEMA, doc, source);
}

/** Applies `--section.key value` / `--section.key=value` pairs. */
export function applyOverrides(cfg: PretrainConfig, args: string[]): void {
  applyCliOverrides(cfg, SCHEMA, args);
}

/** Defaults, then the YAML file (if any), then the overrides. */
export async function loadConfig(
  path: string | undefined,
  overrides: string[] = [],
): Promise<PretrainConfig> {
  const cfg = defaultConfig();
  if (path) applyYaml(cfg, await readYamlFile(path), path);
  applyOverrides(cfg, overrides);
  // A list given on the command line is the data to train on, whatever source the config file names.
  if (overridesKey(overrides, "data.list") && !overridesKey(overrides, "data.source") && cfg.data.list) {
    cfg.data.source = "list";
  }
  if (cfg.data.source === "list" && !cfg.data.list) {
    throw new Error("No data: set data.list to a list file, or data.source to shapes (generated) or memory");
  }
  if (cfg.optim.min_lr > cfg.optim.lr) {
    throw new Error(`optim.min_lr ${cfg.optim.min_lr} exceeds optim.lr ${cfg.optim.lr}`);
  }
  return cfg;
}

/** The model configuration a pretraining config describes. */
export function modelConfigOf(cfg: PretrainConfig): ModelConfig {
  return modelConfig(cfg.model.size, {
    decoderDepth: cfg.model.decoder_depth,
    imgSize: cfg.model.input_size,
    frames: cfg.model.frames,
    tubelet: cfg.model.tubelet,
    ...(cfg.model.patch_size > 0 ? { patchSize: cfg.model.patch_size } : {}),
  });
}
