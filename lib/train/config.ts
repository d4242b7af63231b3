/**
 * Pretraining configuration: V-SWIFT's defaults, a YAML file on top, then `--section.key value`
 * overrides from the command line. Unknown keys and bad values are errors naming the key, the value
 * and where it came from.
 */
import { parse as parseYaml } from "yaml";
import { type ModelConfig, modelConfig } from "../model/config.ts";

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
  optim: {
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
  };
  train: {
    epochs: number;
    /** Per-device batch. */
    batch_size: number;
    /** Stop after this many steps (0: epochs x steps per epoch). */
    steps: number;
    seed: number;
    device: "auto" | "host" | "cuda";
    output: string;
    /** Save every this many steps (0: at the end of every save_ckpt_freq-th epoch). */
    save_every: number;
    save_ckpt_freq: number;
    keep_last: number;
    log_every: number;
    /** Reconstruction pictures every this many steps (0: never). */
    vis_every: number;
    tensorboard: boolean;
  };
}

type Leaf =
  | { type: "int"; min: number; max?: number }
  | { type: "number"; min: number; max?: number; exclusiveMin?: boolean; exclusiveMax?: boolean }
  | { type: "bool" }
  | { type: "string"; choices?: string[] }
  | { type: "numbers"; length: number; min?: number; max?: number; exclusiveMax?: boolean };

const int = (min: number, max?: number): Leaf => ({ type: "int", min, max });
const num = (min: number, extra: Partial<Extract<Leaf, { type: "number" }>> = {}): Leaf => ({
  type: "number",
  min,
  ...extra,
});
const bool: Leaf = { type: "bool" };
const str = (choices?: string[]): Leaf => ({ type: "string", choices });

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
    mean: { type: "numbers", length: 3, min: 0, max: 1 },
    std: { type: "numbers", length: 3, min: 0, max: 10 },
    samples_per_epoch: int(0),
  },
  optim: {
    lr: num(0, { exclusiveMin: true }),
    min_lr: num(0),
    betas: { type: "numbers", length: 2, min: 0, max: 1, exclusiveMax: true },
    eps: num(0, { exclusiveMin: true }),
    weight_decay: num(0),
    warmup_epochs: num(0),
    warmup_steps: int(0),
    clip_grad: num(0),
    scale_lr: bool,
  },
  train: {
    epochs: int(1),
    batch_size: int(1),
    steps: int(0),
    seed: int(0),
    device: str(["auto", "host", "cuda"]),
    output: str(),
    save_every: int(0),
    save_ckpt_freq: int(1),
    keep_last: int(1),
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
      log_every: 10,
      vis_every: 500,
      tensorboard: true,
    },
  };
}

function describe(leaf: Leaf): string {
  switch (leaf.type) {
    case "int":
      return `an integer >= ${leaf.min}${leaf.max !== undefined ? ` and <= ${leaf.max}` : ""}`;
    case "number":
      return `a number ${leaf.exclusiveMin ? ">" : ">="} ${leaf.min}${
        leaf.max !== undefined ? ` and ${leaf.exclusiveMax ? "<" : "<="} ${leaf.max}` : ""
      }`;
    case "bool":
      return "true or false";
    case "string":
      return leaf.choices ? `one of ${leaf.choices.join(", ")}` : "a string";
    case "numbers":
      return `a list of ${leaf.length} numbers${
        leaf.min !== undefined ? ` in [${leaf.min}, ${leaf.max})` : ""
      }`;
  }
}

/** Converts a command-line string to the leaf's type (YAML values arrive typed already). */
function fromString(leaf: Leaf, raw: string): unknown {
  switch (leaf.type) {
    case "int":
    case "number":
      return raw.trim() === "" ? NaN : Number(raw);
    case "bool":
      return raw === "true" ? true : raw === "false" ? false : raw;
    case "string":
      return raw;
    case "numbers":
      return raw.split(",").map((v) => (v.trim() === "" ? NaN : Number(v)));
  }
}

function check(leaf: Leaf, v: unknown): boolean {
  switch (leaf.type) {
    case "int":
      return Number.isInteger(v) && (v as number) >= leaf.min &&
        (leaf.max === undefined || (v as number) <= leaf.max);
    case "number": {
      if (typeof v !== "number" || !Number.isFinite(v)) return false;
      if (leaf.exclusiveMin ? v <= leaf.min : v < leaf.min) return false;
      return leaf.max === undefined || (leaf.exclusiveMax ? v < leaf.max : v <= leaf.max);
    }
    case "bool":
      return typeof v === "boolean";
    case "string":
      return typeof v === "string" && (!leaf.choices || leaf.choices.includes(v));
    case "numbers":
      return Array.isArray(v) && v.length === leaf.length &&
        v.every((x) =>
          typeof x === "number" && Number.isFinite(x) && (leaf.min === undefined || x >= leaf.min) &&
          (leaf.max === undefined || (leaf.exclusiveMax ? x < leaf.max : x <= leaf.max))
        );
  }
}

function set(cfg: PretrainConfig, path: string, value: unknown, source: string, fromCli: boolean): void {
  const [section, key, ...rest] = path.split(".");
  const sec = (SCHEMA as Record<string, Record<string, Leaf>>)[section];
  if (!sec || !key || rest.length) {
    throw new Error(
      `Unknown config key "${path}" (${source}); sections are ${Object.keys(SCHEMA).join(", ")}`,
    );
  }
  const leaf = sec[key];
  if (!leaf) {
    throw new Error(
      `Unknown config key "${path}" (${source}); ${section} has ${Object.keys(sec).join(", ")}`,
    );
  }
  const v = fromCli && typeof value === "string" ? fromString(leaf, value) : value;
  if (!check(leaf, v)) {
    throw new Error(`Config ${path} must be ${describe(leaf)}, got ${JSON.stringify(value)} (${source})`);
  }
  (cfg as unknown as Record<string, Record<string, unknown>>)[section][key] = v;
}

/** Merges a parsed YAML document into the config; `source` names the file in errors. */
export function applyYaml(cfg: PretrainConfig, doc: unknown, source: string): void {
  if (doc === null || doc === undefined) return;
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error(`${source} must hold a mapping of sections`);
  }
  for (const [section, body] of Object.entries(doc as Record<string, unknown>)) {
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new Error(`Config section "${section}" in ${source} must be a mapping`);
    }
    for (const [key, value] of Object.entries(body)) set(cfg, `${section}.${key}`, value, source, false);
  }
}

/** Applies `--section.key value` / `--section.key=value` pairs. */
export function applyOverrides(cfg: PretrainConfig, args: string[]): void {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) {
      throw new Error(`Unexpected argument "${a}"; overrides look like --optim.lr 1e-4`);
    }
    const eq = a.indexOf("=");
    const path = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    let value: string;
    if (eq >= 0) value = a.slice(eq + 1);
    else if (i + 1 < args.length && !args[i + 1].startsWith("--")) value = args[++i];
    else value = "true"; // a bare --data.flip
    set(cfg, path, value, "command line", true);
  }
}

/** Defaults, then the YAML file (if any), then the overrides. */
export async function loadConfig(
  path: string | undefined,
  overrides: string[] = [],
): Promise<PretrainConfig> {
  const cfg = defaultConfig();
  if (path) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      throw new Error(`Cannot read config file ${path}: ${(e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new Error(`Config file ${path} is not valid YAML: ${(e as Error).message}`);
    }
    applyYaml(cfg, doc, path);
  }
  applyOverrides(cfg, overrides);
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
