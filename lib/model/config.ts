/** Model sizes (V-SWIFT's S/16, B/16, L/16, H/16, g/14 and tiny test sizes) and derived geometry. */

export interface ModelConfig {
  /** Size name, e.g. "base". */
  name: string;
  patchSize: number;
  embedDim: number;
  depth: number;
  heads: number;
  /** MLP hidden = floor(dim * mlpRatio), for encoder and decoder alike (48/11 for g/14). */
  mlpRatio: number;
  decoderDim: number;
  decoderDepth: number;
  decoderHeads: number;
  imgSize: number;
  frames: number;
  tubelet: number;
  /** LayerNorm epsilon (1e-6 in every V-SWIFT model). */
  lnEps: number;
}

type Size = Omit<ModelConfig, "decoderDepth" | "imgSize" | "frames" | "tubelet" | "lnEps">;

const SIZES: Record<string, Size> = {
  small: {
    name: "small",
    patchSize: 16,
    embedDim: 384,
    depth: 12,
    heads: 6,
    mlpRatio: 4,
    decoderDim: 192,
    decoderHeads: 3,
  },
  base: {
    name: "base",
    patchSize: 16,
    embedDim: 768,
    depth: 12,
    heads: 12,
    mlpRatio: 4,
    decoderDim: 384,
    decoderHeads: 6,
  },
  large: {
    name: "large",
    patchSize: 16,
    embedDim: 1024,
    depth: 24,
    heads: 16,
    mlpRatio: 4,
    decoderDim: 512,
    decoderHeads: 8,
  },
  huge: {
    name: "huge",
    patchSize: 16,
    embedDim: 1280,
    depth: 32,
    heads: 16,
    mlpRatio: 4,
    decoderDim: 512,
    decoderHeads: 8,
  },
  giant: {
    name: "giant",
    patchSize: 14,
    embedDim: 1408,
    depth: 40,
    heads: 16,
    mlpRatio: 48 / 11,
    decoderDim: 512,
    decoderHeads: 8,
  },
  /** Test sizes: a few thousand parameters, for gradient checks and overfitting on 2 CPU cores. */
  tiny: {
    name: "tiny",
    patchSize: 8,
    embedDim: 32,
    depth: 2,
    heads: 2,
    mlpRatio: 4,
    decoderDim: 16,
    decoderHeads: 2,
  },
  mini: {
    name: "mini",
    patchSize: 16,
    embedDim: 192,
    depth: 4,
    heads: 3,
    mlpRatio: 4,
    decoderDim: 96,
    decoderHeads: 3,
  },
};

const ALIASES: Record<string, string> = {
  s: "small",
  "s/16": "small",
  b: "base",
  "b/16": "base",
  l: "large",
  "l/16": "large",
  h: "huge",
  "h/16": "huge",
  g: "giant",
  "g/14": "giant",
};

/** The size names known to modelConfig. */
export const SIZE_NAMES = Object.keys(SIZES);

/**
 * A full configuration from a size name ("base", "B/16", ...) and overrides. Defaults are V-SWIFT's
 * training scripts: 16 frames of 224 x 224, tubelet 2, decoder depth 4 (tiny: 4 frames of 32 x 32).
 */
export function modelConfig(size: string, overrides: Partial<ModelConfig> = {}): ModelConfig {
  const key = ALIASES[size.toLowerCase()] ?? size.toLowerCase();
  const base = SIZES[key];
  if (!base) throw new RangeError(`Unknown model size "${size}"; known sizes: ${SIZE_NAMES.join(", ")}`);
  const small = key === "tiny";
  const cfg: ModelConfig = {
    ...base,
    decoderDepth: small ? 1 : 4,
    imgSize: small ? 32 : 224,
    frames: small ? 4 : 16,
    tubelet: 2,
    lnEps: 1e-6,
    ...overrides,
  };
  validateConfig(cfg);
  return cfg;
}

/** Throws a RangeError naming the first inconsistent field. */
export function validateConfig(c: ModelConfig): void {
  const positive = [
    "patchSize",
    "embedDim",
    "depth",
    "heads",
    "decoderDim",
    "decoderHeads",
    "imgSize",
    "frames",
    "tubelet",
  ] as const;
  for (const f of positive) {
    if (!Number.isInteger(c[f]) || c[f] <= 0) {
      throw new RangeError(`Model config ${f} must be a positive integer, got ${c[f]}`);
    }
  }
  if (!Number.isInteger(c.decoderDepth) || c.decoderDepth < 0) {
    throw new RangeError(`Model config decoderDepth must be a non-negative integer, got ${c.decoderDepth}`);
  }
  if (c.embedDim % c.heads) {
    throw new RangeError(`embedDim ${c.embedDim} is not divisible by heads ${c.heads}`);
  }
  if (c.decoderDim % c.decoderHeads) {
    throw new RangeError(`decoderDim ${c.decoderDim} is not divisible by decoderHeads ${c.decoderHeads}`);
  }
  if (c.imgSize % c.patchSize) {
    throw new RangeError(`imgSize ${c.imgSize} is not divisible by patchSize ${c.patchSize}`);
  }
  if (c.frames % c.tubelet) {
    throw new RangeError(`frames ${c.frames} is not divisible by tubelet ${c.tubelet}`);
  }
  if (!(c.mlpRatio > 0)) throw new RangeError(`mlpRatio must be positive, got ${c.mlpRatio}`);
  if (!(c.lnEps > 0)) throw new RangeError(`lnEps must be positive, got ${c.lnEps}`);
}

/** Token geometry of a configuration. */
export function geometry(c: ModelConfig): {
  slices: number;
  perSlice: number;
  tokens: number;
  patchDim: number;
} {
  const perSlice = (c.imgSize / c.patchSize) ** 2;
  const slices = c.frames / c.tubelet;
  return { slices, perSlice, tokens: slices * perSlice, patchDim: 3 * c.tubelet * c.patchSize * c.patchSize };
}

/** MLP hidden width as Python's int(dim * mlp_ratio). */
export function mlpHidden(dim: number, ratio: number): number {
  return Math.floor(dim * ratio);
}
