/** Data augmentation on the device: uint8 frames to one normalised clip of a batch. */
import { hostPointer } from "../ffi/pointers.ts";
import type { Tensor } from "../tensor.ts";
import { expect, k } from "./common.ts";

/** A crop box in source pixels. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface CropResizeOptions {
  /** The frames of the clip, indices into the first axis of `frames` (default 0 .. T - 1). */
  frameIdx?: Int32Array;
  box: Box;
  /** Triangle filter widened by the scale factor when shrinking (PIL / DALI antialias). */
  antialias?: boolean;
  flip?: boolean;
  mean: readonly number[];
  std: readonly number[];
  /**
   * The layout of `frames`: "rgb24" (n, h, w, 3), or "yuv420p" (n, 3h/2, w): each frame's Y plane, then
   * its U and V planes at half size (BT.601 limited range, converted after resampling).
   */
  pixFormat?: "rgb24" | "yuv420p";
}

/**
 * Crops `box` out of the frames (n, h, w, 3) u8 (or YUV420P, see pixFormat), resizes it to out's (H, W) bilinearly (pixel centres),
 * optionally mirrors it, normalises (v / 255 - mean) / std and writes out: (3, T, H, W) f32 or bf16,
 * typically one sample's slice of a (B, 3, T, H, W) batch.
 */
export function cropResizeNormalize(out: Tensor, frames: Tensor, opts: CropResizeOptions): void {
  k().call("vs_crop_resize_normalize", ...cropResizeArgs(out, frames, opts, meanStd(opts)));
}

/**
 * cropResizeNormalize that, with the host build, runs on one of Deno's worker threads: the event loop
 * keeps serving I/O (the decoders' pipes) while the kernel runs. With the CUDA build it is the plain
 * (asynchronous) launch. `frames`, `out` and the options must stay alive until the promise settles.
 */
export async function cropResizeNormalizeAsync(
  out: Tensor,
  frames: Tensor,
  opts: CropResizeOptions,
): Promise<void> {
  const ms = meanStd(opts);
  const args = cropResizeArgs(out, frames, opts, ms);
  if (k().backend === "host") {
    await k().callNonblocking("vs_crop_resize_normalize", ...args);
    // The kernel read these through raw pointers: keep them alive until it has returned.
    void [ms, opts.frameIdx];
  } else k().call("vs_crop_resize_normalize", ...args);
}

function meanStd(opts: CropResizeOptions): Float32Array {
  expect(
    opts.mean.length === 3 && opts.std.length === 3,
    () => `cropResizeNormalize: mean and std need 3 values each, got ${opts.mean} and ${opts.std}`,
  );
  return Float32Array.from([...opts.mean, ...opts.std]);
}

function cropResizeArgs(out: Tensor, frames: Tensor, opts: CropResizeOptions, ms: Float32Array) {
  const yuv = opts.pixFormat === "yuv420p";
  expect(
    frames.dtype === "u8" &&
      (yuv
        ? frames.shape.length === 3 && frames.shape[1] % 3 === 0
        : frames.shape.length === 4 && frames.shape[3] === 3),
    () => `cropResizeNormalize: frames must be ${yuv ? "(n, 3h/2, w)" : "(n, h, w, 3)"} u8, got ${frames}`,
  );
  expect(
    out.shape.length === 4 && out.shape[0] === 3 && (out.dtype === "f32" || out.dtype === "bf16"),
    () => `cropResizeNormalize: out must be (3, T, H, W) f32 or bf16, got ${out}`,
  );
  const n = frames.shape[0];
  const h = yuv ? (frames.shape[1] / 3) * 2 : frames.shape[1];
  const w = frames.shape[2];
  const [, t, oh, ow] = out.shape;
  const idx = opts.frameIdx;
  expect(!idx || idx.length === t, () => `cropResizeNormalize: ${idx?.length} frame indices for ${t} frames`);
  const b = opts.box;
  return [
    out.code,
    yuv ? 1 : 0,
    n,
    h,
    w,
    frames.ptr,
    t,
    idx ? hostPointer(idx) : null,
    b.x,
    b.y,
    b.w,
    b.h,
    oh,
    ow,
    opts.antialias ? 1 : 0,
    opts.flip ? 1 : 0,
    hostPointer(ms),
    out.ptr,
    k().stream,
  ] as const;
}
