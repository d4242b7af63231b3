/**
 * Mixup / CutMix with label smoothing as timm's Mixup in 'batch' mode (spec §3.6): per batch, with
 * probability `prob`, CutMix (probability `switchProb`, lambda ~ Beta(cutmix, cutmix), a box of side
 * ratio sqrt(1 - lambda) centred uniformly and clipped, lambda recomputed from the clipped area) or mixup
 * (lambda ~ Beta(mixup, mixup)); the partner of sample i is sample B - 1 - i. Targets are smoothed
 * one-hot vectors mixed as lambda y + (1 - lambda) y_partner. The draws happen here, on the host; the
 * pixels are mixed on the device (lib/ops/mix.ts).
 */
import type { Graph } from "../../autograd.ts";
import { cutmixBatch, mixupBatch, type PixelBox } from "../../ops/mix.ts";
import type { Rng } from "../../rng.ts";
import { type Tensor, writeTensor } from "../../tensor.ts";
import type { FinetuneConfig } from "./config.ts";

export interface MixupOptions {
  /** Beta parameter of mixup; 0 disables mixup (0.8). */
  mixup: number;
  /** Beta parameter of CutMix; 0 disables CutMix (1.0). */
  cutmix: number;
  /** Probability of mixing a batch at all (1.0). */
  prob: number;
  /** Probability of CutMix rather than mixup when both are enabled (0.5). */
  switchProb: number;
  /** Label smoothing (0.1). */
  smoothing: number;
  numClasses: number;
}

/** The options of a config's mixup section for a head of `numClasses`. */
export function mixupOptions(m: FinetuneConfig["mixup"], numClasses: number): MixupOptions {
  return {
    mixup: m.mixup,
    cutmix: m.cutmix,
    prob: m.prob,
    switchProb: m.switch_prob,
    smoothing: m.smoothing,
    numClasses,
  };
}

/** What one batch gets. */
export interface MixDraw {
  kind: "none" | "mixup" | "cutmix";
  /** Weight of each sample's own label (1 for none). */
  lam: number;
  /** The CutMix box (rows and columns of the frame). */
  box?: PixelBox;
}

/** A Gamma(shape, 1) draw (Marsaglia and Tsang; shape < 1 through Gamma(shape + 1) u^(1/shape)). */
export function gammaDraw(rng: Rng, shape: number): number {
  if (!(shape > 0)) throw new RangeError(`A gamma shape must be positive, got ${shape}`);
  if (shape < 1) {
    let u = 0;
    while (u === 0) u = rng.float();
    return gammaDraw(rng, shape + 1) * u ** (1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.float();
    if (u < 1 - 0.0331 * x ** 4) return d * v;
    if (u > 0 && Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A Beta(a, b) draw. */
export function betaDraw(rng: Rng, a: number, b: number): number {
  const x = gammaDraw(rng, a);
  const y = gammaDraw(rng, b);
  return x / (x + y);
}

/**
 * timm's rand_bbox: a box of (int(h r), int(w r)) with r = sqrt(1 - lam) around a uniform centre, each
 * side clipped to the frame (halves rounded down, so the box may be one pixel short of the cut).
 */
export function cutmixBox(rng: Rng, h: number, w: number, lam: number): PixelBox {
  const ratio = Math.sqrt(1 - lam);
  const cutH = Math.floor(h * ratio);
  const cutW = Math.floor(w * ratio);
  const cy = rng.int(h);
  const cx = rng.int(w);
  const clip = (v: number, hi: number) => Math.min(Math.max(v, 0), hi);
  return {
    y0: clip(cy - Math.floor(cutH / 2), h),
    y1: clip(cy + Math.floor(cutH / 2), h),
    x0: clip(cx - Math.floor(cutW / 2), w),
    x1: clip(cx + Math.floor(cutW / 2), w),
  };
}

/** Lambda from a box: 1 - box area / frame area (timm's correct_lam). */
export function boxLam(box: PixelBox, h: number, w: number): number {
  return 1 - ((box.y1 - box.y0) * (box.x1 - box.x0)) / (h * w);
}

/** One batch's draw, in timm's order of random calls. */
export function drawMix(rng: Rng, o: MixupOptions, h: number, w: number): MixDraw {
  const enabled = o.mixup > 0 || o.cutmix > 0;
  if (!enabled || !(rng.float() < o.prob)) return { kind: "none", lam: 1 };
  let cut: boolean;
  let lam: number;
  if (o.mixup > 0 && o.cutmix > 0) {
    cut = rng.float() < o.switchProb;
    lam = cut ? betaDraw(rng, o.cutmix, o.cutmix) : betaDraw(rng, o.mixup, o.mixup);
  } else if (o.mixup > 0) {
    cut = false;
    lam = betaDraw(rng, o.mixup, o.mixup);
  } else {
    cut = true;
    lam = betaDraw(rng, o.cutmix, o.cutmix);
  }
  if (lam === 1) return { kind: "none", lam: 1 };
  if (!cut) return { kind: "mixup", lam };
  const box = cutmixBox(rng, h, w, lam);
  return { kind: "cutmix", lam: boxLam(box, h, w), box };
}

/**
 * Soft targets (B, K): smoothed one-hot (off = s / K, on = 1 - s + s / K) mixed as
 * lam y[i] + (1 - lam) y[B - 1 - i].
 */
export function mixTargets(
  labels: Int32Array | number[],
  numClasses: number,
  lam: number,
  smoothing: number,
): Float32Array {
  const b = labels.length;
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const out = new Float32Array(b * numClasses);
  for (let i = 0; i < b; i++) {
    const own = labels[i];
    const partner = labels[b - 1 - i];
    if (!(Number.isInteger(own) && own >= 0 && own < numClasses)) {
      throw new RangeError(`Label ${own} of sample ${i} is outside [0, ${numClasses})`);
    }
    const row = out.subarray(i * numClasses, (i + 1) * numClasses);
    // Computed as timm does: y1 lam + y2 (1 - lam) elementwise.
    for (let k = 0; k < numClasses; k++) {
      const y1 = k === own ? on : off;
      const y2 = k === partner ? on : off;
      row[k] = y1 * lam + y2 * (1 - lam);
    }
  }
  return out;
}

/**
 * Mixes a batch (B, C, T, H, W) in place on the device and returns its soft targets (B, K) as an f32
 * tensor of the step, with the draw (for logs).
 */
export function mixBatch(
  g: Graph,
  rng: Rng,
  video: Tensor,
  labels: Int32Array,
  o: MixupOptions,
): { targets: Tensor; draw: MixDraw } {
  const [b, , , h, w] = video.shape;
  const draw = drawMix(rng, o, h, w);
  if (draw.kind !== "none" && b % 2 !== 0) {
    throw new RangeError(`Mixup and CutMix need an even batch, got ${b} (timm asserts the same)`);
  }
  if (draw.kind === "mixup") mixupBatch(video, draw.lam);
  else if (draw.kind === "cutmix") cutmixBatch(video, draw.box!);
  const targets = g.alloc([b, o.numClasses], "f32");
  writeTensor(targets, mixTargets(labels, o.numClasses, draw.lam, o.smoothing));
  return { targets, draw };
}
