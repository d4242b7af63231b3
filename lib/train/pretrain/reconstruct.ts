/**
 * Reconstruction pictures: original, masked and reconstructed frames of one clip. The model predicts
 * each masked patch normalised by its own mean and std (per channel); the picture puts them back with
 * the original patch's statistics, as VideoMAE's visualisation does, then undoes the input
 * normalisation. Visible patches show the original pixels.
 */
import { applyMask, type ClipFrames, clipFromBatch, gridImage, type RgbImage } from "../../data/png_grid.ts";
import type { TokenMask } from "../../model/masking.ts";

export interface ReconstructionInput {
  /** The normalised input batch (B, 3, T, H, W) on the host. */
  video: Float32Array;
  shape: readonly number[];
  /** (B, nMasked, tubelet * patch^2 * 3) predictions in (dt, dy, dx, c) order. */
  pred: Float32Array;
  mask: TokenMask;
  tubelet: number;
  patch: number;
  mean: readonly number[];
  std: readonly number[];
  /** Which clip of the batch (0). */
  sample?: number;
}

/** The reconstructed clip: predicted pixels in the masked patches (visible ones are left at 0). */
export function reconstructClip(r: ReconstructionInput): ClipFrames {
  const [, , t, h, w] = r.shape;
  const b = r.sample ?? 0;
  const { tubelet: tub, patch: p } = r;
  const hp = h / p;
  const wp = w / p;
  const plane = t * h * w;
  const feat = tub * p * p * 3;
  const out = new Uint8Array(plane * 3);
  const base = b * 3 * plane;
  for (let j = 0; j < r.mask.nMasked; j++) {
    const tok = r.mask.masked[b * r.mask.nMasked + j];
    const tau = Math.floor(tok / (hp * wp));
    const hy = Math.floor(tok / wp) % hp;
    const wx = tok % wp;
    const pix = (dt: number, dy: number, dx: number) =>
      ((tau * tub + dt) * h + hy * p + dy) * w + wx * p + dx;
    for (let c = 0; c < 3; c++) {
      // The original patch's mean and unbiased std, exactly as the target was made.
      let s = 0;
      let ss = 0;
      const n = tub * p * p;
      for (let dt = 0; dt < tub; dt++) {
        for (let dy = 0; dy < p; dy++) {
          for (let dx = 0; dx < p; dx++) {
            const v = r.video[base + c * plane + pix(dt, dy, dx)];
            s += v;
            ss += v * v;
          }
        }
      }
      const mean = s / n;
      const std = Math.sqrt(Math.max(0, (ss - n * mean * mean) / (n - 1)));
      for (let dt = 0; dt < tub; dt++) {
        for (let dy = 0; dy < p; dy++) {
          for (let dx = 0; dx < p; dx++) {
            const f = ((dt * p + dy) * p + dx) * 3 + c;
            const v = r.pred[(b * r.mask.nMasked + j) * feat + f] * (std + 1e-6) + mean;
            const px = (v * r.std[c] + r.mean[c]) * 255;
            out[pix(dt, dy, dx) * 3 + c] = Math.max(0, Math.min(255, Math.round(px)));
          }
        }
      }
    }
  }
  return { t, h, w, data: out };
}

/** A grid of three rows: the original clip, its masked version, and the reconstruction. */
export function reconstructionGrid(r: ReconstructionInput, frames?: number[]): RgbImage {
  const b = r.sample ?? 0;
  const original = clipFromBatch(r.video, r.shape, b, r.mean, r.std);
  const bool = new Uint8Array(r.mask.tokens);
  for (let j = 0; j < r.mask.nMasked; j++) bool[r.mask.masked[b * r.mask.nMasked + j]] = 1;
  const masked = applyMask(original, bool, r.tubelet, r.patch);
  const recon = applyMask(original, bool, r.tubelet, r.patch, reconstructClip(r));
  return gridImage([original, masked, recon], { frames });
}
