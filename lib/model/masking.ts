/**
 * Tube masking: one spatial pattern per sample, repeated over every temporal slice.
 *
 * V-SWIFT keeps floor(L * (1 - ratio)) tokens per slice (19 of 196 at 0.9); VideoMAE v1 masks
 * floor(ratio * L) (176, so 20 kept). Visible tokens are listed in raster order and enter the decoder
 * with their own positions: V-SWIFT's shuffled-order bug (visible tokens paired with the positions of
 * other tokens in their slice) is deliberately not reproduced.
 */
import type { Rng } from "../rng.ts";

export type MaskRule = "vswift" | "v1";

/** Token indices of a batch's mask, each row sorted ascending (raster order). */
export interface TokenMask {
  b: number;
  tokens: number;
  nVisible: number;
  nMasked: number;
  /** (B, nVisible) */
  visible: Int32Array;
  /** (B, nMasked) */
  masked: Int32Array;
}

/** Tokens kept per temporal slice under a rule. */
export function keptPerSlice(perSlice: number, ratio: number, rule: MaskRule): number {
  if (!(ratio >= 0 && ratio < 1)) throw new RangeError(`Mask ratio must be in [0, 1), got ${ratio}`);
  // The float expressions are Python's, evaluated the same way in IEEE doubles.
  const keep = rule === "vswift"
    ? Math.floor(perSlice * (1 - ratio))
    : perSlice - Math.floor(ratio * perSlice);
  if (keep < 1) throw new RangeError(`Mask ratio ${ratio} keeps no token of ${perSlice} per slice`);
  return keep;
}

/** Draws a tube mask for a batch: per sample, `keep` random positions of each slice stay visible. */
export function tubeMask(
  rng: Rng,
  opts: { b: number; slices: number; perSlice: number; ratio: number; rule?: MaskRule },
): TokenMask {
  const { b, slices, perSlice } = opts;
  const keep = keptPerSlice(perSlice, opts.ratio, opts.rule ?? "vswift");
  const bool = new Uint8Array(b * slices * perSlice);
  for (let i = 0; i < b; i++) {
    const perm = rng.permutation(perSlice);
    const masked = new Uint8Array(perSlice).fill(1);
    for (let j = 0; j < keep; j++) masked[perm[j]] = 0;
    for (let s = 0; s < slices; s++) bool.set(masked, (i * slices + s) * perSlice);
  }
  return maskFromBoolean(bool, b, slices * perSlice);
}

/**
 * A TokenMask from an explicit boolean mask (B, N), 1 = masked. Every sample must mask the same
 * number of tokens (the batch is processed as one tensor).
 */
export function maskFromBoolean(mask: ArrayLike<number | boolean>, b: number, tokens: number): TokenMask {
  if (mask.length !== b * tokens) {
    throw new RangeError(
      `A mask for ${b} samples of ${tokens} tokens needs ${b * tokens} entries, got ${mask.length}`,
    );
  }
  let nMasked = -1;
  for (let i = 0; i < b; i++) {
    let m = 0;
    for (let j = 0; j < tokens; j++) if (mask[i * tokens + j]) m++;
    if (nMasked >= 0 && m !== nMasked) {
      throw new RangeError(
        `Every sample must mask the same number of tokens: sample 0 masks ${nMasked}, sample ${i} masks ${m}`,
      );
    }
    nMasked = m;
  }
  const nVisible = tokens - nMasked;
  if (nVisible < 1 || nMasked < 1) {
    throw new RangeError(
      `A mask must leave at least one visible and one masked token, got ${nVisible} visible of ${tokens}`,
    );
  }
  const visible = new Int32Array(b * nVisible);
  const masked = new Int32Array(b * nMasked);
  for (let i = 0; i < b; i++) {
    let v = 0;
    let m = 0;
    for (let j = 0; j < tokens; j++) {
      if (mask[i * tokens + j]) masked[i * nMasked + m++] = j;
      else visible[i * nVisible + v++] = j;
    }
  }
  return { b, tokens, nVisible, nMasked, visible, masked };
}

/** The boolean (B, N) form of a mask, 1 = masked. */
export function maskToBoolean(m: TokenMask): Uint8Array {
  const out = new Uint8Array(m.b * m.tokens);
  for (let i = 0; i < m.b; i++) {
    for (let j = 0; j < m.nMasked; j++) out[i * m.tokens + m.masked[i * m.nMasked + j]] = 1;
  }
  return out;
}

/** One mask for a batch from per-sample masks with equal counts (each of batch size 1 or more). */
export function concatMasks(masks: TokenMask[]): TokenMask {
  if (masks.length === 0) throw new RangeError("concatMasks needs at least one mask");
  const { tokens, nVisible, nMasked } = masks[0];
  for (const m of masks) {
    if (m.tokens !== tokens || m.nVisible !== nVisible) {
      throw new RangeError(
        `Masks of ${m.nVisible} and ${nVisible} visible tokens (of ${m.tokens} and ${tokens}) cannot share a batch`,
      );
    }
  }
  const b = masks.reduce((n, m) => n + m.b, 0);
  const visible = new Int32Array(b * nVisible);
  const masked = new Int32Array(b * nMasked);
  let at = 0;
  for (const m of masks) {
    visible.set(m.visible, at * nVisible);
    masked.set(m.masked, at * nMasked);
    at += m.b;
  }
  return { b, tokens, nVisible, nMasked, visible, masked };
}
