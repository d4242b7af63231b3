/**
 * Crop boxes (x, y, w, h in pixels of the decoded frame). The resize to the input size, the flip and
 * the normalisation run in the crop/resize/normalise kernel (lib/ops/augment.ts).
 */
import type { Box } from "../ops/augment.ts";
import type { Rng } from "../rng.ts";

export type { Box };

export const MULTISCALE_SCALES = [1, 0.875, 0.75, 0.66] as const;

/** The 13 fixed offsets of the multi-scale crop, as (x, y), for steps ws = (W - w) // 4, hs = (H - h) // 4. */
export function fixedOffsets(width: number, height: number, cw: number, ch: number): [number, number][] {
  const ws = Math.floor((width - cw) / 4);
  const hs = Math.floor((height - ch) / 4);
  return [
    [0, 0],
    [4 * ws, 0],
    [0, 4 * hs],
    [4 * ws, 4 * hs],
    [2 * ws, 2 * hs],
    [0, 2 * hs],
    [4 * ws, 2 * hs],
    [2 * ws, 4 * hs],
    [2 * ws, 0],
    [ws, hs],
    [3 * ws, hs],
    [ws, 3 * hs],
    [3 * ws, 3 * hs],
  ];
}

/** The (w, h) pairs the multi-scale crop chooses from (spec §3.3), in V-SWIFT's order. */
export function multiScalePairs(
  width: number,
  height: number,
  inputSize: number,
  scales: readonly number[] = MULTISCALE_SCALES,
  maxDistort = 1,
): [number, number][] {
  const base = Math.min(width, height);
  const sizes = scales.map((s) => Math.floor(base * s));
  // A size within 3 px of the input size (|size - input| < 3) snaps to it.
  const snap = (x: number) => (Math.abs(x - inputSize) < 3 ? inputSize : x);
  const pairs: [number, number][] = [];
  for (let i = 0; i < sizes.length; i++) {
    for (let j = 0; j < sizes.length; j++) {
      if (Math.abs(i - j) <= maxDistort) pairs.push([snap(sizes[j]), snap(sizes[i])]);
    }
  }
  return pairs;
}

/**
 * V-SWIFT's (and v1's GroupMultiScaleCrop) multi-scale crop: a (w, h) pair from multiScalePairs, then
 * one of the 13 fixed offsets, both uniform. The box is clamped to the frame (only a frame whose short
 * side is under the input size + 3 px can make a snapped size exceed it).
 */
export function multiScaleCrop(width: number, height: number, inputSize: number, rng: Rng): Box {
  const pairs = multiScalePairs(width, height, inputSize);
  const [cw0, ch0] = pairs[rng.int(pairs.length)];
  const cw = Math.min(cw0, width);
  const ch = Math.min(ch0, height);
  const offsets = fixedOffsets(width, height, cw, ch);
  const [x, y] = offsets[rng.int(offsets.length)];
  return { x, y, w: cw, h: ch };
}

/** Python's round(): halves to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision's RandomResizedCrop box (spec §3.5): area fraction ~ U(scale), aspect = exp(U(ln ratio)),
 * w = round(sqrt(area aspect)), h = round(sqrt(area / aspect)), up to 10 tries with w <= W, h <= H and a
 * uniform position; otherwise a centre crop clamped to the ratio range.
 */
export function randomResizedCrop(
  width: number,
  height: number,
  rng: Rng,
  scale: [number, number] = [0.08, 1],
  ratio: [number, number] = [3 / 4, 4 / 3],
): Box {
  const area = width * height;
  const [lr0, lr1] = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let i = 0; i < 10; i++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(lr0, lr1));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const y = rng.int(height - h + 1);
      const x = rng.int(width - w + 1);
      return { x, y, w, h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = roundHalfEven(h * Math.max(...ratio));
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h };
}

/** A size x size centre crop (torchvision CenterCrop's rounding). */
export function centerCrop(width: number, height: number, size: number): Box {
  if (size > width || size > height) {
    throw new RangeError(
      `A centre crop of ${size} px does not fit a ${width} x ${height} frame; decode with a short side >= ${size}`,
    );
  }
  return { x: roundHalfEven((width - size) / 2), y: roundHalfEven((height - size) / 2), w: size, h: size };
}

/**
 * Test crop k of K (TTA): a square with the short side, at int(k (long - short) / (K - 1)) along the
 * long side (the centre when K is 1, where V-SWIFT divides by zero).
 */
export function testCrop(width: number, height: number, k: number, crops: number): Box {
  if (!(Number.isInteger(crops) && crops >= 1 && Number.isInteger(k) && k >= 0 && k < crops)) {
    throw new RangeError(`Test crop ${k} of ${crops} is out of range`);
  }
  const side = Math.min(width, height);
  const room = Math.max(width, height) - side;
  const off = crops === 1 ? Math.floor(room / 2) : Math.floor((k * room) / (crops - 1));
  return width >= height ? { x: off, y: 0, w: side, h: side } : { x: 0, y: off, w: side, h: side };
}
