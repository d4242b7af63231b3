/**
 * PNG grids of clips: one row of frames per clip, optionally a second row with the masked patches
 * greyed out (or replaced by another clip, e.g. a reconstruction). Reusable by the data and the
 * reconstruction modes of `deno task visualize`.
 */
import { encode } from "fast-png";

/** An RGB image, (height, width, 3). */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** One clip: (t, h, w, 3) RGB frames. */
export interface ClipFrames {
  t: number;
  h: number;
  w: number;
  data: Uint8Array;
}

/**
 * Clip b of a normalised (B, 3, T, H, W) batch read back to the host, de-normalised to (T, H, W, 3) u8.
 */
export function clipFromBatch(
  values: Float32Array,
  shape: readonly number[],
  b: number,
  mean: readonly number[],
  std: readonly number[],
): ClipFrames {
  const [, c, t, h, w] = shape;
  if (c !== 3) throw new RangeError(`A batch must have 3 channels, got shape [${shape.join(", ")}]`);
  const out = new Uint8Array(t * h * w * 3);
  const plane = t * h * w;
  const base = b * 3 * plane;
  for (let ch = 0; ch < 3; ch++) {
    for (let i = 0; i < plane; i++) {
      const v = (values[base + ch * plane + i] * std[ch] + mean[ch]) * 255;
      out[i * 3 + ch] = Math.max(0, Math.min(255, Math.round(v)));
    }
  }
  return { t, h, w, data: out };
}

/** A copy of the clip with the masked patches (mask: (T/tubelet * H/patch * W/patch), 1 = masked) greyed. */
export function applyMask(
  clip: ClipFrames,
  mask: ArrayLike<number | boolean>,
  tubelet: number,
  patch: number,
  fill?: ClipFrames,
): ClipFrames {
  const hp = Math.floor(clip.h / patch);
  const wp = Math.floor(clip.w / patch);
  const tokens = Math.floor(clip.t / tubelet) * hp * wp;
  if (mask.length !== tokens) {
    throw new RangeError(
      `A mask for a ${clip.t}x${clip.h}x${clip.w} clip needs ${tokens} entries, got ${mask.length}`,
    );
  }
  const out = clip.data.slice();
  for (let f = 0; f < clip.t; f++) {
    for (let y = 0; y < hp * patch; y++) {
      for (let x = 0; x < wp * patch; x++) {
        const tok = (Math.floor(f / tubelet) * hp + Math.floor(y / patch)) * wp + Math.floor(x / patch);
        if (!mask[tok]) continue;
        const o = ((f * clip.h + y) * clip.w + x) * 3;
        if (fill) out.set(fill.data.subarray(o, o + 3), o);
        else {
          for (let c = 0; c < 3; c++) out[o + c] = (out[o + c] >> 2) + 96;
        }
      }
    }
  }
  return { ...clip, data: out };
}

/**
 * Lays rows of clips out as a grid: row r, column f is frame `frames[f]` of rows[r] (every frame by
 * default), with `gap` white pixels between cells.
 */
export function gridImage(rows: ClipFrames[], opts: { frames?: number[]; gap?: number } = {}): RgbImage {
  if (rows.length === 0) throw new RangeError("A grid needs at least one clip");
  const gap = opts.gap ?? 2;
  const { h, w } = rows[0];
  const frames = opts.frames ?? Array.from({ length: rows[0].t }, (_, i) => i);
  const width = frames.length * (w + gap) + gap;
  const height = rows.length * (h + gap) + gap;
  const data = new Uint8Array(width * height * 3).fill(255);
  rows.forEach((clip, r) => {
    if (clip.h !== h || clip.w !== w) throw new RangeError("Every clip of a grid must have the same size");
    frames.forEach((f, col) => {
      if (f >= clip.t) return;
      for (let y = 0; y < h; y++) {
        const src = ((f * h + y) * w) * 3;
        const dst = ((gap + r * (h + gap) + y) * width + gap + col * (w + gap)) * 3;
        data.set(clip.data.subarray(src, src + w * 3), dst);
      }
    });
  });
  return { width, height, data };
}

export function encodePng(img: RgbImage): Uint8Array {
  return encode({ width: img.width, height: img.height, data: img.data, channels: 3, depth: 8 });
}

export async function writePng(path: string, img: RgbImage): Promise<void> {
  await Deno.writeFile(path, encodePng(img));
}
