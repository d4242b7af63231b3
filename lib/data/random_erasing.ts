/**
 * Random erasing as V-SWIFT's fine-tuning uses it (spec §3.5: reprob 0.25, pixel mode, one box per clip,
 * "cube"): with probability `prob`, a box of area U(0.02, 1/3) of the frame and aspect exp(U(ln 0.3,
 * ln 1/0.3)), up to 100 tries to fit strictly inside, at a uniform position, the same in every frame.
 * The box is drawn here; the device fills it with fresh N(0, 1) noise per channel and frame
 * (lib/ops/mix.ts randomErase), after normalisation.
 */
import type { PixelBox } from "../ops/mix.ts";
import type { Rng } from "../rng.ts";
import { roundHalfEven } from "./spatial.ts";

export interface RandomErasingOptions {
  /** Probability of erasing a clip (0.25). */
  prob: number;
  minArea?: number;
  maxArea?: number;
  /** The aspect ratio range is [minAspect, 1 / minAspect] (0.3). */
  minAspect?: number;
  attempts?: number;
}

/** The box to erase in an h x w clip, or undefined when this clip keeps its pixels. */
export function randomErasingBox(
  rng: Rng,
  h: number,
  w: number,
  o: RandomErasingOptions,
): PixelBox | undefined {
  if (!(o.prob > 0) || rng.float() > o.prob) return undefined;
  const [lo, hi] = [o.minArea ?? 0.02, o.maxArea ?? 1 / 3];
  const minAspect = o.minAspect ?? 0.3;
  const [la, lb] = [Math.log(minAspect), Math.log(1 / minAspect)];
  const area = h * w;
  for (let i = 0; i < (o.attempts ?? 100); i++) {
    const target = rng.uniform(lo, hi) * area;
    const aspect = Math.exp(rng.uniform(la, lb));
    const eh = roundHalfEven(Math.sqrt(target * aspect));
    const ew = roundHalfEven(Math.sqrt(target / aspect));
    if (ew < w && eh < h && ew > 0 && eh > 0) {
      const y0 = rng.int(h - eh + 1);
      const x0 = rng.int(w - ew + 1);
      return { y0, y1: y0 + eh, x0, x1: x0 + ew };
    }
  }
  return undefined;
}
