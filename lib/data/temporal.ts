/**
 * Temporal sampling: which frames of a video of F frames make a clip of n frames (spec §3.3, §3.4).
 * All functions return frame indices in [0, F), in clip order.
 */
import type { Rng } from "../rng.ts";

export type PretrainRule = "vswift" | "v1";

/**
 * Pretraining: n frames with stride s from a random start.
 * V-SWIFT: span = n s, A = F - span + 1. A > 1: start ~ U{0 .. A-1}, frame i = start + i s. Else F > n:
 * n indices uniform with replacement from [0, F), sorted. Else (F <= n): frame 0 repeated n - F times,
 * then 0 .. F-1. (F == span takes the random branch, as V-SWIFT does.)
 * v1: A >= 1: random start in [0, A-1] and stride; else start 0 and stride, clamped to the last frame.
 */
export function pretrainIndices(
  f: number,
  n: number,
  s: number,
  rng: Rng,
  rule: PretrainRule = "vswift",
): number[] {
  checkArgs(f, n);
  if (!(Number.isInteger(s) && s >= 1)) throw new RangeError(`The sampling rate must be >= 1, got ${s}`);
  const a = f - n * s + 1;
  if (rule === "v1") {
    const start = a >= 1 ? rng.int(a) : 0;
    return Array.from({ length: n }, (_, i) => Math.min(start + i * s, f - 1));
  }
  if (a > 1) {
    const start = rng.int(a);
    return Array.from({ length: n }, (_, i) => start + i * s);
  }
  if (f > n) {
    const idx = Array.from({ length: n }, () => rng.int(f));
    return idx.sort((x, y) => x - y);
  }
  return padFront(f, n);
}

/** [0] * (n - F) followed by 0 .. F-1. */
function padFront(f: number, n: number): number[] {
  const out = new Array<number>(n - f).fill(0);
  for (let i = 0; i < f; i++) out.push(i);
  return out;
}

function checkArgs(f: number, n: number): void {
  if (!(Number.isInteger(f) && f >= 1)) throw new RangeError(`A video needs at least one frame, got ${f}`);
  if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`A clip needs at least one frame, got ${n}`);
}

/**
 * Fine-tuning training (TSN segments): seg = floor(F / n); seg > 0: frame i = i seg + U{0 .. seg-1};
 * otherwise the front-padded 0 .. F-1.
 */
export function segmentTrainIndices(f: number, n: number, rng: Rng): number[] {
  checkArgs(f, n);
  const seg = Math.floor(f / n);
  if (seg === 0) return padFront(f, n);
  return Array.from({ length: n }, (_, i) => i * seg + rng.int(seg));
}

/** Fine-tuning validation: segment centres i seg + floor(seg / 2); front-padded when seg is 0. */
export function segmentValIndices(f: number, n: number): number[] {
  checkArgs(f, n);
  const seg = Math.floor(f / n);
  if (seg === 0) return padFront(f, n);
  return Array.from({ length: n }, (_, i) => i * seg + Math.floor(seg / 2));
}

/**
 * Test chunk c of S (TTA): tick = F / n; frame x = floor(c tick / S + x tick) (V-SWIFT and v1's SSV2
 * test sampling).
 */
export function segmentTestIndices(f: number, n: number, chunk: number, chunks: number): number[] {
  checkArgs(f, n);
  if (!(Number.isInteger(chunks) && chunks >= 1 && Number.isInteger(chunk) && chunk >= 0 && chunk < chunks)) {
    throw new RangeError(`Test chunk ${chunk} of ${chunks} is out of range`);
  }
  const tick = f / n;
  return Array.from({ length: n }, (_, x) => Math.min(f - 1, Math.floor((chunk * tick) / chunks + x * tick)));
}

/** Sorted distinct frames of several clips, and each clip's positions in that list. */
export function unionFrames(clips: number[][]): { frames: number[]; positions: Int32Array[] } {
  const frames = [...new Set(clips.flat())].sort((a, b) => a - b);
  const at = new Map(frames.map((v, i) => [v, i]));
  return { frames, positions: clips.map((c) => Int32Array.from(c, (v) => at.get(v)!)) };
}
