/** A video file as a PNG strip of evenly spaced frames, to show clips inline in a notebook. */
import { decodeClip } from "../data/decode.ts";
import { probeClip } from "../data/probe.ts";
import { encodePng, gridImage } from "../data/png_grid.ts";

/** Frame indices: `n` evenly spaced over `total` frames (all of them when there are fewer). */
export function spacedFrames(total: number, n: number): number[] {
  if (total <= n) return Array.from({ length: total }, (_, i) => i);
  return Array.from({ length: n }, (_, i) => Math.floor(((i + 0.5) * total) / n));
}

/** PNG bytes of `frames` frames of the video (8 by default) in one row, the short side at `shortSide`. */
export async function videoStripPng(
  path: string,
  opts: { frames?: number; shortSide?: number } = {},
): Promise<Uint8Array> {
  const info = await probeClip(path);
  const indices = spacedFrames(info.frames, opts.frames ?? 8);
  // Probed and decoded by the decoder VSWIFT_DECODER chooses, as the loaders do.
  const f = await decodeClip({ path, info, indices, shortSide: opts.shortSide ?? 64 });
  return encodePng(gridImage([{ t: f.n, h: f.h, w: f.w, data: f.data }]));
}
