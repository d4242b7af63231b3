/**
 * RandAugment as timm defines it (`rand-m7-n4-mstd0.5-inc1`, spec §3.5), on uint8 RGB frames at their
 * native resolution: n operations drawn with replacement from the 15 "increasing" ones, each applied
 * with probability 0.5 at a magnitude ~ N(m, mstd) clipped to [0, 10]. One draw per clip: every frame
 * gets the same operations, magnitudes and signs. The pixel arithmetic follows PIL's (ImageOps,
 * ImageEnhance, affine transforms with bicubic resampling and a grey fill), which timm calls.
 */
import type { Rng } from "../rng.ts";

/** The operations of timm's increasing RandAugment set, in timm's order. */
export const RAND_INCREASING_OPS = [
  "AutoContrast",
  "Equalize",
  "Invert",
  "Rotate",
  "PosterizeIncreasing",
  "SolarizeIncreasing",
  "SolarizeAdd",
  "ColorIncreasing",
  "ContrastIncreasing",
  "BrightnessIncreasing",
  "SharpnessIncreasing",
  "ShearX",
  "ShearY",
  "TranslateXRel",
  "TranslateYRel",
] as const;

/** timm's original (non-increasing) set, selected by inc0. */
export const RAND_OPS = [
  "AutoContrast",
  "Equalize",
  "Invert",
  "Rotate",
  "Posterize",
  "Solarize",
  "SolarizeAdd",
  "Color",
  "Contrast",
  "Brightness",
  "Sharpness",
  "ShearX",
  "ShearY",
  "TranslateXRel",
  "TranslateYRel",
] as const;

export type RandOp = typeof RAND_INCREASING_OPS[number] | typeof RAND_OPS[number];

const MAX_LEVEL = 10;

export interface RandAugmentConfig {
  /** Operations per clip. */
  n: number;
  /** Magnitude, 0 .. 10. */
  m: number;
  /** Standard deviation of the magnitude (0: fixed). */
  mstd: number;
  /** Upper bound of a drawn magnitude. */
  mmax: number;
  /** Probability of applying each drawn operation. */
  prob: number;
  /** The increasing variants (inc1). */
  increasing: boolean;
  /** Translations as a fraction of the side. */
  translatePct: number;
  /** RGB of pixels a geometric operation uncovers. */
  fill: [number, number, number];
}

/**
 * Parses timm's config string: "rand" then "-"-separated m<magnitude>, n<ops>, mstd<std>, mmax<max>,
 * inc<0|1>, p<prob>. Defaults: n 2, m 10, mstd 0, inc 0, p 0.5, translate 45%, fill 128.
 */
export function parseRandAugment(spec: string): RandAugmentConfig {
  const parts = spec.split("-");
  if (parts[0] !== "rand") {
    throw new RangeError(
      `A RandAugment config starts with "rand", got "${spec}" (e.g. rand-m7-n4-mstd0.5-inc1)`,
    );
  }
  const cfg: RandAugmentConfig = {
    n: 2,
    m: MAX_LEVEL,
    mstd: 0,
    mmax: MAX_LEVEL,
    prob: 0.5,
    increasing: false,
    translatePct: 0.45,
    fill: [128, 128, 128],
  };
  for (const part of parts.slice(1)) {
    const m = part.match(/^(mstd|mmax|inc|m|n|p)(-?[0-9.]+)$/);
    if (!m) {
      throw new RangeError(`Unknown RandAugment option "${part}" in "${spec}" (m, n, mstd, mmax, inc, p)`);
    }
    const v = Number(m[2]);
    if (!Number.isFinite(v)) {
      throw new RangeError(`RandAugment option ${m[1]} has value "${m[2]}" in "${spec}"`);
    }
    if (m[1] === "m") cfg.m = v;
    else if (m[1] === "n") cfg.n = v;
    else if (m[1] === "mstd") cfg.mstd = v;
    else if (m[1] === "mmax") cfg.mmax = v;
    else if (m[1] === "inc") cfg.increasing = v !== 0;
    else cfg.prob = v;
  }
  if (!(Number.isInteger(cfg.n) && cfg.n >= 0)) {
    throw new RangeError(`RandAugment n must be an integer >= 0, got ${cfg.n}`);
  }
  if (!(cfg.prob >= 0 && cfg.prob <= 1)) {
    throw new RangeError(`RandAugment p must be in [0, 1], got ${cfg.prob}`);
  }
  return cfg;
}

/** One operation of a clip's draw, with its arguments after timm's level functions. */
export interface AugmentStep {
  op: RandOp;
  magnitude: number;
  /** Degrees, shear factor, translate fraction, bits, threshold, addend or enhance factor. */
  arg?: number;
}

const sign = (rng: Rng, v: number) => (rng.float() < 0.5 ? -v : v);

/** timm's level function of an operation: the argument at magnitude `mag` (random signs drawn here). */
function levelArg(op: RandOp, mag: number, cfg: RandAugmentConfig, rng: Rng): number | undefined {
  const f = mag / MAX_LEVEL;
  switch (op) {
    case "AutoContrast":
    case "Equalize":
    case "Invert":
      return undefined;
    case "Rotate":
      return sign(rng, f * 30);
    case "ShearX":
    case "ShearY":
      return sign(rng, f * 0.3);
    case "TranslateXRel":
    case "TranslateYRel":
      return sign(rng, f * cfg.translatePct);
    case "Posterize":
      return Math.trunc(f * 4);
    case "PosterizeIncreasing":
      return 4 - Math.trunc(f * 4);
    case "Solarize":
      return Math.trunc(f * 256);
    case "SolarizeIncreasing":
      return 256 - Math.trunc(f * 256);
    case "SolarizeAdd":
      return Math.trunc(f * 110);
    case "Color":
    case "Contrast":
    case "Brightness":
    case "Sharpness":
      return f * 1.8 + 0.1;
    case "ColorIncreasing":
    case "ContrastIncreasing":
    case "BrightnessIncreasing":
    case "SharpnessIncreasing":
      return 1 + sign(rng, f * 0.9);
  }
}

/**
 * A clip's draw: `n` operations chosen uniformly with replacement; each kept with probability `prob`,
 * with a magnitude ~ N(m, mstd) clipped to [0, mmax] and its level argument.
 */
export function drawRandAugment(rng: Rng, cfg: RandAugmentConfig): AugmentStep[] {
  const ops = cfg.increasing ? RAND_INCREASING_OPS : RAND_OPS;
  const chosen = Array.from({ length: cfg.n }, () => ops[rng.int(ops.length)]);
  const steps: AugmentStep[] = [];
  for (const op of chosen) {
    if (cfg.prob < 1 && rng.float() > cfg.prob) continue;
    let mag = cfg.m;
    if (cfg.mstd > 0) mag = cfg.mstd >= 100 ? rng.uniform(0, mag) : mag + cfg.mstd * rng.normal();
    mag = Math.min(Math.max(mag, 0), Math.min(cfg.mmax, MAX_LEVEL));
    steps.push({ op, magnitude: mag, arg: levelArg(op, mag, cfg, rng) });
  }
  return steps;
}

/**
 * Applies a draw to every frame of `frames`: (n, h, w, 3) uint8 RGB, in place. `fill` colours pixels
 * that geometric operations uncover.
 */
export function applyRandAugment(
  frames: Uint8Array,
  n: number,
  h: number,
  w: number,
  steps: AugmentStep[],
  fill: readonly number[] = [128, 128, 128],
): void {
  if (frames.length < n * h * w * 3) {
    throw new RangeError(
      `applyRandAugment: ${frames.length} bytes do not hold ${n} frames of ${w} x ${h} RGB`,
    );
  }
  if (steps.length === 0) return;
  const scratch = new Uint8Array(h * w * 3);
  for (let f = 0; f < n; f++) {
    const img = frames.subarray(f * h * w * 3, (f + 1) * h * w * 3);
    for (const s of steps) applyOp(img, h, w, s.op, s.arg, fill, scratch);
  }
}

/** One operation on one frame (h, w, 3), in place; `scratch` holds h w 3 bytes. */
export function applyOp(
  img: Uint8Array,
  h: number,
  w: number,
  op: RandOp,
  arg: number | undefined,
  fill: readonly number[] = [128, 128, 128],
  scratch = new Uint8Array(h * w * 3),
): void {
  const a = arg ?? 0;
  switch (op) {
    case "AutoContrast":
      return applyLuts(img, autocontrastLuts(img));
    case "Equalize":
      return applyLuts(img, equalizeLuts(img));
    case "Invert":
      return applyLuts(img, sameLut((i) => 255 - i));
    case "Posterize":
    case "PosterizeIncreasing": {
      if (a >= 8) return;
      const mask = ~(2 ** (8 - a) - 1) & 0xff;
      return applyLuts(img, sameLut((i) => i & mask));
    }
    case "Solarize":
    case "SolarizeIncreasing":
      return applyLuts(img, sameLut((i) => (i < a ? i : 255 - i)));
    case "SolarizeAdd":
      return applyLuts(img, sameLut((i) => (i < 128 ? Math.min(255, i + a) : i)));
    case "Color":
    case "ColorIncreasing":
      return blend(img, grayOf(img, h, w), a);
    case "Contrast":
    case "ContrastIncreasing": {
      const deg = new Uint8Array(img.length).fill(meanGray(img));
      return blend(img, deg, a);
    }
    case "Brightness":
    case "BrightnessIncreasing":
      return blend(img, new Uint8Array(img.length), a);
    case "Sharpness":
    case "SharpnessIncreasing":
      return blend(img, smooth(img, h, w), a);
    case "Rotate":
      return affine(img, h, w, rotateMatrix(w, h, a), fill, scratch);
    case "ShearX":
      return affine(img, h, w, [1, a, 0, 0, 1, 0], fill, scratch);
    case "ShearY":
      return affine(img, h, w, [1, 0, 0, a, 1, 0], fill, scratch);
    case "TranslateXRel":
      return affine(img, h, w, [1, 0, a * w, 0, 1, 0], fill, scratch);
    case "TranslateYRel":
      return affine(img, h, w, [1, 0, 0, 0, 1, a * h], fill, scratch);
  }
}

function sameLut(f: (i: number) => number): Uint8Array[] {
  const lut = Uint8Array.from({ length: 256 }, (_, i) => f(i));
  return [lut, lut, lut];
}

function applyLuts(img: Uint8Array, luts: Uint8Array[]): void {
  for (let i = 0; i < img.length; i += 3) {
    img[i] = luts[0][img[i]];
    img[i + 1] = luts[1][img[i + 1]];
    img[i + 2] = luts[2][img[i + 2]];
  }
}

function histograms(img: Uint8Array): Float64Array[] {
  const hs = [new Float64Array(256), new Float64Array(256), new Float64Array(256)];
  for (let i = 0; i < img.length; i += 3) {
    hs[0][img[i]]++;
    hs[1][img[i + 1]]++;
    hs[2][img[i + 2]]++;
  }
  return hs;
}

/** ImageOps.autocontrast (no cutoff): each channel's range stretched to 0 .. 255. */
function autocontrastLuts(img: Uint8Array): Uint8Array[] {
  return histograms(img).map((hist) => {
    let lo = 0;
    while (lo < 255 && hist[lo] === 0) lo++;
    let hi = 255;
    while (hi > 0 && hist[hi] === 0) hi--;
    if (hi <= lo) return Uint8Array.from({ length: 256 }, (_, i) => i);
    const scale = 255 / (hi - lo);
    const offset = -lo * scale;
    return Uint8Array.from(
      { length: 256 },
      (_, i) => Math.min(255, Math.max(0, Math.trunc(i * scale + offset))),
    );
  });
}

/** ImageOps.equalize: each channel's cumulative histogram as the map. */
function equalizeLuts(img: Uint8Array): Uint8Array[] {
  return histograms(img).map((hist) => {
    const used = [...hist].filter((c) => c > 0);
    const identity = Uint8Array.from({ length: 256 }, (_, i) => i);
    if (used.length <= 1) return identity;
    const step = Math.floor((used.reduce((a, b) => a + b, 0) - used[used.length - 1]) / 256);
    if (step === 0) return identity;
    const lut = new Uint8Array(256);
    let n = Math.floor(step / 2);
    for (let i = 0; i < 256; i++) {
      lut[i] = Math.min(255, Math.floor(n / step));
      n += hist[i];
    }
    return lut;
  });
}

/** PIL's RGB -> L: (299 R + 587 G + 114 B) / 1000 in 16-bit fixed point, rounded. */
function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
}

/** The frame in grey, as RGB (ImageEnhance.Color's degenerate image). */
function grayOf(img: Uint8Array, h: number, w: number): Uint8Array {
  const out = new Uint8Array(h * w * 3);
  for (let i = 0; i < out.length; i += 3) {
    out[i] = out[i + 1] = out[i + 2] = luma(img[i], img[i + 1], img[i + 2]);
  }
  return out;
}

/** ImageEnhance.Contrast's grey level: the rounded mean of the L image. */
function meanGray(img: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < img.length; i += 3) s += luma(img[i], img[i + 1], img[i + 2]);
  return Math.trunc(s / (img.length / 3) + 0.5);
}

const f32 = Math.fround;

/**
 * Image.blend(degenerate, img, factor) in place: in float32, truncated, clipped when extrapolating
 * (PIL's ImagingBlend).
 */
function blend(img: Uint8Array, deg: Uint8Array, factor: number): void {
  const alpha = f32(factor);
  for (let i = 0; i < img.length; i++) {
    const v = f32(deg[i] + f32(alpha * (img[i] - deg[i])));
    img[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
  }
}

/** ImageFilter.SMOOTH (3 x 3, centre 5, others 1, over 13) in float32; the border is copied. */
function smooth(img: Uint8Array, h: number, w: number): Uint8Array {
  const out = img.slice();
  const k1 = f32(1 / 13);
  const k5 = f32(5 / 13);
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      for (let c = 0; c < 3; c++) {
        const at = (yy: number, xx: number) => img[(yy * w + xx) * 3 + c];
        // Rows y + 1, y, y - 1, each (left k + centre k) + right k, as PIL accumulates.
        const row = (yy: number, kc: number) =>
          f32(f32(f32(at(yy, x - 1) * k1) + f32(at(yy, x) * kc)) + f32(at(yy, x + 1) * k1));
        let ss = f32(0 + row(y + 1, k1));
        ss = f32(ss + row(y, k5));
        ss = f32(ss + row(y - 1, k1));
        out[(y * w + x) * 3 + c] = ss <= 0 ? 0 : ss >= 255 ? 255 : Math.trunc(ss + 0.5);
      }
    }
  }
  return out;
}

/** PIL's Image.rotate matrix (output -> input) for `deg` degrees counter-clockwise about the centre. */
export function rotateMatrix(w: number, h: number, deg: number): number[] {
  const angle = -((((deg % 360) + 360) % 360) * Math.PI) / 180;
  const r15 = (x: number) => Number(x.toFixed(15));
  const m = [r15(Math.cos(angle)), r15(Math.sin(angle)), 0, r15(-Math.sin(angle)), r15(Math.cos(angle)), 0];
  const [cx, cy] = [w / 2, h / 2];
  m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
  m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
  return m;
}

/** One step of PIL's bicubic (a = -1) interpolation between four samples. */
function cubic(v1: number, v2: number, v3: number, v4: number, d: number): number {
  const p2 = -v1 + v3;
  const p3 = 2 * (v1 - v2) + v3 - v4;
  const p4 = -v1 + v2 - v3 + v4;
  return v2 + d * (p2 + d * (p3 + d * p4));
}

/**
 * An affine transform with PIL's conventions: output pixel (x, y) samples the input at
 * (a (x + 0.5) + b (y + 0.5) + c, d (x + 0.5) + e (y + 0.5) + f); samples outside the frame take `fill`;
 * inside, bicubic interpolation with edge pixels repeated, truncated to 0 .. 255.
 */
function affine(
  img: Uint8Array,
  h: number,
  w: number,
  m: number[],
  fill: readonly number[],
  out: Uint8Array,
): void {
  const [a, b, c, d, e, f] = m;
  const cx = (v: number) => (v < 0 ? 0 : v >= w ? w - 1 : v);
  const cy = (v: number) => (v < 0 ? 0 : v >= h ? h - 1 : v);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      let xin = a * (x + 0.5) + b * (y + 0.5) + c;
      let yin = d * (x + 0.5) + e * (y + 0.5) + f;
      if (!(xin >= 0 && xin < w && yin >= 0 && yin < h)) {
        out[o] = fill[0];
        out[o + 1] = fill[1];
        out[o + 2] = fill[2];
        continue;
      }
      xin -= 0.5;
      yin -= 0.5;
      const x0 = Math.floor(xin);
      const y0 = Math.floor(yin);
      const dx = xin - x0;
      const dy = yin - y0;
      const xs = [cx(x0 - 1), cx(x0), cx(x0 + 1), cx(x0 + 2)];
      const ys = [cy(y0 - 1), cy(y0), cy(y0 + 1), cy(y0 + 2)];
      for (let ch = 0; ch < 3; ch++) {
        const rowv = (yy: number) => {
          const base = yy * w * 3 + ch;
          return cubic(
            img[base + xs[0] * 3],
            img[base + xs[1] * 3],
            img[base + xs[2] * 3],
            img[base + xs[3] * 3],
            dx,
          );
        };
        const v = cubic(rowv(ys[0]), rowv(ys[1]), rowv(ys[2]), rowv(ys[3]), dy);
        out[o + ch] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
      }
    }
  }
  img.set(out.subarray(0, h * w * 3));
}
