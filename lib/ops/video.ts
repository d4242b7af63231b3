/** Video to tokens: patch rows for the patch embedding, normalised pixel targets, position tables. */
import type { Graph } from "../autograd.ts";
import { hostPointer } from "../ffi/pointers.ts";
import type { DType, Tensor } from "../tensor.ts";
import { expect, k } from "./common.ts";

/** The geometry of a video batch (B, C, T, H, W) cut into tubelets of (tubelet, patch, patch). */
export interface VideoDims {
  b: number;
  c: number;
  t: number;
  h: number;
  w: number;
  tubelet: number;
  patch: number;
}

export function videoDims(video: Tensor, tubelet: number, patch: number): VideoDims {
  expect(video.shape.length === 5, () => `Video must be (B, C, T, H, W), got ${video}`);
  const [b, c, t, h, w] = video.shape;
  expect(
    t % tubelet === 0 && h % patch === 0 && w % patch === 0,
    () => `Video ${video} does not divide into tubelets of ${tubelet} frames and patches of ${patch} pixels`,
  );
  return { b, c, t, h, w, tubelet, patch };
}

/** Tokens per sample: (T / tubelet) * (H / patch) * (W / patch). */
export function tokenCount(d: VideoDims): number {
  return (d.t / d.tubelet) * (d.h / d.patch) * (d.w / d.patch);
}

function meanStd(video: Tensor, norm?: { mean: number[]; std: number[] }): Float32Array | undefined {
  if (video.dtype !== "u8") return undefined;
  expect(!!norm, () => "A uint8 video needs a mean and std to normalise with");
  return Float32Array.from([...norm!.mean, ...norm!.std]);
}

/**
 * Patch rows (B, n, C * tubelet * patch * patch) in (c, dt, dy, dx) order for the tokens in idx
 * (B, n) i32, or all tokens when idx is omitted. No gradient flows to the video.
 */
export function patchify(
  g: Graph,
  video: Tensor,
  dims: VideoDims,
  outDtype: DType,
  idx?: Tensor,
  norm?: { mean: number[]; std: number[] },
): Tensor {
  const n = idx ? idx.numel / dims.b : tokenCount(dims);
  const features = dims.c * dims.tubelet * dims.patch * dims.patch;
  const out = g.alloc([dims.b, n, features], outDtype);
  const ms = meanStd(video, norm);
  k().call(
    "vs_patchify",
    video.code,
    out.code,
    dims.b,
    dims.c,
    dims.t,
    dims.h,
    dims.w,
    dims.tubelet,
    dims.patch,
    ms ? hostPointer(ms) : null,
    video.ptr,
    idx?.ptr ?? null,
    n,
    out.ptr,
    k().stream,
  );
  return out;
}

/**
 * The reconstruction target (B, n, tubelet * patch * patch * C) f32 in (dt, dy, dx, c) order: each
 * token's pixels normalised per channel by their mean and unbiased std (+ eps), as V-SWIFT.
 */
export function patchTarget(
  g: Graph,
  video: Tensor,
  dims: VideoDims,
  idx: Tensor | undefined,
  eps = 1e-6,
  norm?: { mean: number[]; std: number[] },
): Tensor {
  const n = idx ? idx.numel / dims.b : tokenCount(dims);
  const features = dims.c * dims.tubelet * dims.patch * dims.patch;
  const out = g.alloc([dims.b, n, features], "f32");
  const ms = meanStd(video, norm);
  k().call(
    "vs_patch_target",
    video.code,
    dims.b,
    dims.c,
    dims.t,
    dims.h,
    dims.w,
    dims.tubelet,
    dims.patch,
    eps,
    ms ? hostPointer(ms) : null,
    video.ptr,
    idx?.ptr ?? null,
    n,
    out.ptr,
    k().stream,
  );
  return out;
}

/** Writes the fixed sinusoid position table (nPos, d) into `out`. */
export function sinusoidTable(out: Tensor, nPos: number, d: number): void {
  expect(out.numel === nPos * d, () => `sinusoidTable: ${out} is not (${nPos}, ${d})`);
  k().call("vs_sinusoid_table", out.code, nPos, d, out.ptr, k().stream);
}
