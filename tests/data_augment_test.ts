/** The crop / resize / normalise kernel against a TypeScript reference and hand-computed values. */
import assert from "node:assert/strict";
import { KernelError } from "../lib/ffi/native.ts";
import { hostPointer } from "../lib/ffi/pointers.ts";
import { allocPersistent, freePersistent } from "../lib/memory.ts";
import { type Box, cropResizeNormalize, cropResizeNormalizeAsync } from "../lib/ops/augment.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats, Tensor } from "../lib/tensor.ts";
import { roundBf16 } from "../lib/bf16.ts";
import "./helpers.ts";

/** Weights of one axis: taps over source pixel centres, triangle of radius `support`, normalised. */
function axisWeights(center: number, support: number, lo: number, hi: number): Map<number, number> {
  const m = new Map<number, number>();
  let sum = 0;
  for (let j = lo; j < hi; j++) {
    const d = Math.abs(j + 0.5 - center) / support;
    if (d < 1) {
      m.set(j, 1 - d);
      sum += 1 - d;
    }
  }
  for (const [j, v] of m) m.set(j, v / sum);
  return m;
}

/** The reference: every output pixel as a 2-D weighted sum, in double precision. */
function reference(
  frames: Uint8Array,
  [h, w]: [number, number],
  idx: number[],
  box: Box,
  [oh, ow]: [number, number],
  antialias: boolean,
  flip: boolean,
  mean: number[],
  std: number[],
): Float64Array {
  const t = idx.length;
  const out = new Float64Array(3 * t * oh * ow);
  const sx = box.w / ow;
  const sy = box.h / oh;
  const supX = antialias && sx > 1 ? sx : 1;
  const supY = antialias && sy > 1 ? sy : 1;
  const lox = Math.max(0, Math.floor(box.x));
  const hix = Math.min(w, Math.ceil(box.x + box.w));
  const loy = Math.max(0, Math.floor(box.y));
  const hiy = Math.min(h, Math.ceil(box.y + box.h));
  for (let f = 0; f < t; f++) {
    for (let oy = 0; oy < oh; oy++) {
      const wy = axisWeights(box.y + (oy + 0.5) * sy, supY, loy, hiy);
      for (let ox = 0; ox < ow; ox++) {
        const wx = axisWeights(box.x + (ox + 0.5) * sx, supX, lox, hix);
        for (let c = 0; c < 3; c++) {
          let acc = 0;
          for (const [y, a] of wy) {
            for (const [x, b] of wx) acc += a * b * frames[((idx[f] * h + y) * w + x) * 3 + c];
          }
          const col = flip ? ow - 1 - ox : ox;
          out[((c * t + f) * oh + oy) * ow + col] = (acc / 255 - mean[c]) / std[c];
        }
      }
    }
  }
  return out;
}

function hostFrames(data: Uint8Array, n: number, h: number, w: number): Tensor {
  return new Tensor([n, h, w, 3], "u8", hostPointer(data));
}

Deno.test("crop-resize-normalize reproduces hand-computed bilinear and antialiased values", () => {
  // A 2 x 4 frame: R = 10 x + 100 y, G = 50, B = 255 - R.
  const [h, w] = [2, 4];
  const data = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const r = 10 * x + 100 * y;
      data.set([r, 50, 255 - r], (y * w + x) * 3);
    }
  }
  const out = allocPersistent([3, 1, 1, 2], "f32");
  const norm = { mean: [0, 0, 0], std: [1, 1, 1] };
  const box = { x: 0, y: 0, w: 4, h: 2 };
  cropResizeNormalize(out, hostFrames(data, 1, h, w), { box, ...norm });
  // Output x centres fall between source pixels 0|1 and 2|3, the y centre between rows 0|1: plain averages.
  let v = readFloats(out);
  assert.ok(Math.abs(v[0] * 255 - 55) < 1e-4 && Math.abs(v[1] * 255 - 75) < 1e-4, `${[...v]}`);
  assert.ok(Math.abs(v[2] * 255 - 50) < 1e-4 && Math.abs(v[4] * 255 - 200) < 1e-4);
  // Antialias, scale 2: x taps 0, 1, 2 with weights .75, .75, .25 (/ 1.75); rows 0 and 1 equally.
  cropResizeNormalize(out, hostFrames(data, 1, h, w), { box, antialias: true, ...norm });
  v = readFloats(out);
  const expected = (0 * 0.75 + 10 * 0.75 + 20 * 0.25) / 1.75 + 50;
  assert.ok(Math.abs(v[0] * 255 - expected) < 1e-4, `${v[0] * 255} vs ${expected}`);
  // Flip swaps the two outputs; the ImageNet-style affine map is applied per channel.
  cropResizeNormalize(out, hostFrames(data, 1, h, w), { box, flip: true, mean: [0.5, 0, 0], std: [2, 1, 1] });
  v = readFloats(out);
  assert.ok(Math.abs(v[0] - (75 / 255 - 0.5) / 2) < 1e-6 && Math.abs(v[1] - (55 / 255 - 0.5) / 2) < 1e-6);
  freePersistent(out);
});

Deno.test("crop-resize-normalize matches the reference on random frames, shrinking and growing", () => {
  const rng = new Rng(5);
  const [n, h, w] = [5, 23, 31];
  const data = new Uint8Array(n * h * w * 3);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
  const frames = hostFrames(data, n, h, w);
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const cases: { box: Box; out: [number, number]; aa: boolean; flip: boolean; idx: number[] }[] = [
    { box: { x: 0, y: 0, w: 31, h: 23 }, out: [8, 9], aa: true, flip: false, idx: [0, 2, 4] },
    { box: { x: 0, y: 0, w: 31, h: 23 }, out: [8, 9], aa: false, flip: false, idx: [1, 1, 3] },
    { box: { x: 3.5, y: 2.25, w: 17.5, h: 13 }, out: [7, 11], aa: true, flip: true, idx: [4, 0] },
    { box: { x: 5, y: 4, w: 6, h: 5 }, out: [12, 14], aa: true, flip: false, idx: [2] },
    { box: { x: 10, y: 1, w: 21, h: 22 }, out: [16, 6], aa: true, flip: true, idx: [3, 2, 1, 0] },
    // Rows of whole 8-float blocks take the vector path with streaming stores, flipped or not.
    { box: { x: 2, y: 1, w: 27, h: 20 }, out: [16, 16], aa: true, flip: true, idx: [0, 1] },
    { box: { x: 0.5, y: 3, w: 30, h: 19 }, out: [8, 24], aa: false, flip: false, idx: [4] },
  ];
  for (const c of cases) {
    const ref = reference(data, [h, w], c.idx, c.box, c.out, c.aa, c.flip, mean, std);
    for (const dtype of ["f32", "bf16"] as const) {
      const out = allocPersistent([3, c.idx.length, ...c.out], dtype);
      cropResizeNormalize(out, frames, {
        box: c.box,
        frameIdx: Int32Array.from(c.idx),
        antialias: c.aa,
        flip: c.flip,
        mean,
        std,
      });
      const got = readFloats(out);
      let err = 0;
      for (let i = 0; i < ref.length; i++) {
        const want = dtype === "bf16" ? roundBf16(ref[i]) : ref[i];
        err = Math.max(err, Math.abs(got[i] - want) / (dtype === "bf16" ? 1 + Math.abs(want) : 1));
      }
      assert.ok(err < (dtype === "bf16" ? 8e-3 : 2e-5), `${JSON.stringify(c)} ${dtype}: max error ${err}`);
      freePersistent(out);
    }
  }
});

Deno.test("crop-resize-normalize rejects a box outside the frame and bad frame indices", () => {
  const data = new Uint8Array(2 * 4 * 4 * 3);
  const out = allocPersistent([3, 1, 2, 2], "f32");
  const norm = { mean: [0, 0, 0], std: [1, 1, 1] };
  assert.throws(
    () => cropResizeNormalize(out, hostFrames(data, 2, 4, 4), { box: { x: 1, y: 0, w: 4, h: 4 }, ...norm }),
    (e: Error) => e instanceof KernelError && /crop box/.test(e.message),
  );
  assert.throws(
    () =>
      cropResizeNormalize(out, hostFrames(data, 2, 4, 4), {
        box: { x: 0, y: 0, w: 4, h: 4 },
        frameIdx: Int32Array.from([2]),
        ...norm,
      }),
    KernelError,
  );
  freePersistent(out);
});

Deno.test("the off-thread variant gives the same values and the same errors", async () => {
  const rng = new Rng(9);
  const data = new Uint8Array(3 * 20 * 24 * 3).map(() => rng.int(256));
  const frames = hostFrames(data, 3, 20, 24);
  const opts = {
    box: { x: 1, y: 2, w: 20, h: 15 },
    frameIdx: Int32Array.from([2, 0]),
    antialias: true,
    mean: [0.5, 0.4, 0.3],
    std: [0.2, 0.3, 0.4],
  };
  const a = allocPersistent([3, 2, 8, 16], "f32");
  const b = allocPersistent([3, 2, 8, 16], "f32");
  cropResizeNormalize(a, frames, opts);
  await cropResizeNormalizeAsync(b, frames, opts);
  assert.deepEqual(readFloats(b), readFloats(a));
  await assert.rejects(
    cropResizeNormalizeAsync(b, frames, { ...opts, box: { x: 10, y: 0, w: 20, h: 15 } }),
    (e: Error) => e instanceof KernelError && /crop box x0 10/.test(e.message),
  );
  freePersistent(a);
  freePersistent(b);
});

/** One plane resampled like the kernel: triangle taps per axis, normalised inside the crop window. */
function resamplePlane(
  plane: (y: number, x: number) => number,
  [ph, pw]: [number, number],
  box: Box,
  [oh, ow]: [number, number],
  antialias: boolean,
): Float64Array {
  const out = new Float64Array(oh * ow);
  const sx = box.w / ow;
  const sy = box.h / oh;
  const [lox, hix] = [Math.max(0, Math.floor(box.x)), Math.min(pw, Math.ceil(box.x + box.w))];
  const [loy, hiy] = [Math.max(0, Math.floor(box.y)), Math.min(ph, Math.ceil(box.y + box.h))];
  for (let oy = 0; oy < oh; oy++) {
    const wy = axisWeights(box.y + (oy + 0.5) * sy, antialias && sy > 1 ? sy : 1, loy, hiy);
    for (let ox = 0; ox < ow; ox++) {
      const wx = axisWeights(box.x + (ox + 0.5) * sx, antialias && sx > 1 ? sx : 1, lox, hix);
      let acc = 0;
      for (const [y, a] of wy) for (const [x, b] of wx) acc += a * b * plane(y, x);
      out[oy * ow + ox] = acc;
    }
  }
  return out;
}

Deno.test("YUV420P frames: each plane resampled (chroma on the halved box), then BT.601 to RGB", () => {
  const rng = new Rng(12);
  const [n, h, w] = [2, 16, 20];
  const fb = (h * w * 3) / 2;
  const data = new Uint8Array(n * fb).map(() => 16 + rng.int(224));
  const frames = new Tensor([n, (h * 3) / 2, w], "u8", hostPointer(data));
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  for (
    const c of [
      { box: { x: 1.5, y: 2, w: 15, h: 11 }, out: [8, 8] as [number, number], aa: true, flip: true },
      { box: { x: 0, y: 0, w: 20, h: 16 }, out: [6, 10] as [number, number], aa: false, flip: false },
    ]
  ) {
    const out = allocPersistent([3, 2, ...c.out], "f32");
    cropResizeNormalize(out, frames, {
      box: c.box,
      frameIdx: Int32Array.from([1, 0]),
      antialias: c.aa,
      flip: c.flip,
      mean,
      std,
      pixFormat: "yuv420p",
    });
    const got = readFloats(out);
    const half = { x: c.box.x / 2, y: c.box.y / 2, w: c.box.w / 2, h: c.box.h / 2 };
    let err = 0;
    [1, 0].forEach((fi, f) => {
      const base = fi * fb;
      const Y = resamplePlane((y, x) => data[base + y * w + x], [h, w], c.box, c.out, c.aa);
      const U = resamplePlane(
        (y, x) => data[base + h * w + y * (w / 2) + x],
        [h / 2, w / 2],
        half,
        c.out,
        c.aa,
      );
      const V = resamplePlane(
        (y, x) => data[base + h * w + (h / 2) * (w / 2) + y * (w / 2) + x],
        [h / 2, w / 2],
        half,
        c.out,
        c.aa,
      );
      const [oh, ow] = c.out;
      for (let i = 0; i < oh * ow; i++) {
        const yy = 1.164383 * (Y[i] - 16);
        const rgb = [
          yy + 1.596027 * (V[i] - 128),
          yy - 0.391762 * (U[i] - 128) - 0.812968 * (V[i] - 128),
          yy + 2.017232 * (U[i] - 128),
        ].map((v) => Math.min(255, Math.max(0, v)));
        const oy = Math.floor(i / ow);
        const col = c.flip ? ow - 1 - (i % ow) : i % ow;
        for (let ch = 0; ch < 3; ch++) {
          const want = (rgb[ch] / 255 - mean[ch]) / std[ch];
          err = Math.max(err, Math.abs(got[((ch * 2 + f) * oh + oy) * ow + col] - want));
        }
      }
    });
    assert.ok(err < 1e-4, `${JSON.stringify(c)}: max error ${err}`);
    freePersistent(out);
  }
});
