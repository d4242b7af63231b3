/**
 * Fine-tuning augmentation on the device: mixup and CutMix of a video batch with its reversed self
 * (timm's partner rule), and random erasing of one clip with noise that both builds draw alike. They run
 * on the input before the forward, so they record no backward.
 */
import type { Tensor } from "../tensor.ts";
import { expect, expectFloat, k } from "./common.ts";

/** Rows [y0, y1) and columns [x0, x1) of a frame. */
export interface PixelBox {
  y0: number;
  y1: number;
  x0: number;
  x1: number;
}

function videoShape(op: string, video: Tensor): [number, number, number, number, number] {
  expectFloat(op, video);
  expect(video.shape.length === 5, () => `${op}: video must be (B, C, T, H, W), got ${video}`);
  return video.shape as unknown as [number, number, number, number, number];
}

/** In place: video[i] = lam video[i] + (1 - lam) video[B - 1 - i] for a video batch (B, C, T, H, W). */
export function mixupBatch(video: Tensor, lam: number): void {
  const [b] = videoShape("mixupBatch", video);
  expect(lam >= 0 && lam <= 1, () => `mixupBatch: lam must be in [0, 1], got ${lam}`);
  k().call("vs_mix_batch", video.code, b, video.numel / b, lam, video.ptr, k().stream);
}

/**
 * In place: sample i takes sample B - 1 - i's pixels inside the box, in every channel and frame (the
 * video seen as (B, C T, H, W), so one box for the whole clip).
 */
export function cutmixBatch(video: Tensor, box: PixelBox): void {
  const [b, c, t, h, w] = videoShape("cutmixBatch", video);
  expect(
    0 <= box.y0 && box.y0 <= box.y1 && box.y1 <= h && 0 <= box.x0 && box.x0 <= box.x1 && box.x1 <= w,
    () => `cutmixBatch: box ${JSON.stringify(box)} does not lie inside a ${w} x ${h} frame`,
  );
  k().call(
    "vs_cutmix_batch",
    video.code,
    b,
    c * t,
    h,
    w,
    box.y0,
    box.y1,
    box.x0,
    box.x1,
    video.ptr,
    k().stream,
  );
}

/**
 * In place: one clip (C, T, H, W) gets standard normal noise inside the box in every channel and frame
 * (the same box in every frame, fresh noise per frame). The noise depends only on `seed` and the
 * position inside the box (see vs_random_erase).
 */
export function randomErase(clip: Tensor, box: PixelBox, seed: number): void {
  expectFloat("randomErase", clip);
  expect(clip.shape.length === 4, () => `randomErase: clip must be (C, T, H, W), got ${clip}`);
  const [c, t, h, w] = clip.shape;
  expect(
    0 <= box.y0 && box.y0 < box.y1 && box.y1 <= h && 0 <= box.x0 && box.x0 < box.x1 && box.x1 <= w,
    () => `randomErase: box ${JSON.stringify(box)} is empty or does not lie inside a ${w} x ${h} frame`,
  );
  k().call(
    "vs_random_erase",
    clip.code,
    c,
    t,
    h,
    w,
    box.y0,
    box.x0,
    box.y1 - box.y0,
    box.x1 - box.x0,
    seed >>> 0,
    clip.ptr,
    k().stream,
  );
}

const fmix32 = (v: number): number => {
  v ^= v >>> 16;
  v = Math.imul(v, 0x85ebca6b);
  v ^= v >>> 13;
  v = Math.imul(v, 0xc2b2ae35);
  v ^= v >>> 16;
  return v >>> 0;
};

/**
 * The noise value vs_random_erase writes at element `e` of the box for `seed` (a host reference, for
 * tests and for checking a device against the definition).
 */
export function eraseNoise(seed: number, e: number): number {
  const key = (kk: number) => fmix32((seed >>> 0) ^ fmix32((kk + 0x9e3779b9) >>> 0));
  const u1 = (key((2 * e) >>> 0) + 0.5) / 4294967296;
  const u2 = key((2 * e + 1) >>> 0) / 4294967296;
  return Math.fround(Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2));
}
