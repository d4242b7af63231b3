/**
 * Seeds derived from several integers (seed, epoch, sample position, ...), so that every random draw of
 * the pipeline depends only on what it is for: not on timing, worker count or the order jobs finish.
 */
import { Rng } from "../rng.ts";

/** A 32-bit hash of a list of integers (each folded in with a murmur3-style mix). */
export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    // Split values above 32 bits so that large sample positions do not collide.
    const lo = p >>> 0;
    const hi = Math.floor(p / 4294967296) >>> 0;
    for (const v of [lo, hi]) {
      let k = Math.imul(v, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h ^= k;
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Purposes, so that two draws for the same sample never share a stream. */
export const STREAM = { permutation: 1, sample: 2, replace: 3, mask: 4, synthetic: 5 } as const;

/** A generator for one purpose and key. */
export function rngFor(stream: number, ...parts: number[]): Rng {
  return new Rng(mixSeed(stream, ...parts));
}
