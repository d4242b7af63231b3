/** Forward values of the host kernels against references written out in TypeScript. */
import assert from "node:assert/strict";
import { Graph } from "../lib/autograd.ts";
import { KernelError, native } from "../lib/ffi/native.ts";
import { bf16ToF32, f32ToBf16, roundBf16 } from "../lib/bf16.ts";
import { allocPersistent } from "../lib/memory.ts";
import { attention } from "../lib/ops/attention.ts";
import { gelu } from "../lib/ops/elementwise.ts";
import { linear } from "../lib/ops/linear.ts";
import { indexTensor } from "../lib/ops/tokens.ts";
import { patchify, patchTarget, sinusoidTable, videoDims } from "../lib/ops/video.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats, writeTensor } from "../lib/tensor.ts";
import { arena, maxRelDiff, randn } from "./helpers.ts";

const rng = new Rng(21);

Deno.test("bf16 rounds to nearest even, in TypeScript and in the kernels alike", () => {
  const xs = [1 + 2 ** -8, 1 + 3 * 2 ** -9, 1 + 3 * 2 ** -8, -2.5, 3.14159, 65504.7, 1e-30];
  assert.deepEqual([...f32ToBf16(xs.slice(0, 3))], [0x3f80, 0x3f81, 0x3f82]);
  const src = allocPersistent([xs.length], "f32");
  const dst = allocPersistent([xs.length], "bf16");
  writeTensor(src, xs);
  native().call("vs_cast", 0, 1, xs.length, src.ptr, dst.ptr, null);
  assert.deepEqual([...readFloats(dst)], [...bf16ToF32(f32ToBf16(xs))]);
  assert.equal(roundBf16(1 + 2 ** -8), 1);
});

Deno.test("patchify reads (c, dt, dy, dx); the target is (dt, dy, dx, c) with unbiased std", () => {
  const [b, c, t, h, w, tub, p] = [2, 3, 4, 4, 6, 2, 2];
  const video = randn(rng, [b, c, t, h, w]);
  const v = readFloats(video);
  const dims = videoDims(video, tub, p);
  const g = new Graph(arena, { grad: false });
  const hp = h / p;
  const wp = w / p;
  const idxHost = Int32Array.from([5, 0, 11, 3, 7, 1]); // 3 tokens for each of the 2 samples
  const idx = indexTensor(g, idxHost, b);
  const rows = readFloats(patchify(g, video, dims, "f32", idx));
  const target = readFloats(patchTarget(g, video, dims, idx, 1e-6));
  const at = (bi: number, ch: number, tt: number, y: number, x: number) =>
    v[(((bi * c + ch) * t + tt) * h + y) * w + x];
  const f = c * tub * p * p;
  for (let bi = 0; bi < b; bi++) {
    for (let j = 0; j < 3; j++) {
      const tok = idxHost[bi * 3 + j];
      const tau = Math.floor(tok / (hp * wp));
      const hy = Math.floor(tok / wp) % hp;
      const wx = tok % wp;
      const row = rows.subarray((bi * 3 + j) * f, (bi * 3 + j + 1) * f);
      const trow = target.subarray((bi * 3 + j) * f, (bi * 3 + j + 1) * f);
      for (let ch = 0; ch < c; ch++) {
        const vals: number[] = [];
        for (let dt = 0; dt < tub; dt++) {
          for (let dy = 0; dy < p; dy++) {
            for (let dx = 0; dx < p; dx++) {
              const x = at(bi, ch, tau * tub + dt, hy * p + dy, wx * p + dx);
              assert.equal(row[((ch * tub + dt) * p + dy) * p + dx], x);
              vals.push(x);
            }
          }
        }
        const mean = vals.reduce((s, x) => s + x, 0) / vals.length;
        const std = Math.sqrt(vals.reduce((s, x) => s + (x - mean) ** 2, 0) / (vals.length - 1));
        let k = 0;
        for (let dt = 0; dt < tub; dt++) {
          for (let dy = 0; dy < p; dy++) {
            for (let dx = 0; dx < p; dx++) {
              const got = trow[((dt * p + dy) * p + dx) * c + ch];
              assert.ok(Math.abs(got - (vals[k++] - mean) / (std + 1e-6)) < 1e-5);
            }
          }
        }
      }
    }
  }
  g.reset();
});

Deno.test("uint8 video is normalised on the fly with mean and std", () => {
  const g = new Graph(arena, { grad: false });
  const shape = [1, 3, 2, 2, 2];
  const u8 = g.alloc(shape, "u8");
  const px = Uint8Array.from({ length: 24 }, (_, i) => (i * 37) % 256);
  writeTensor(u8, px);
  const norm = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const rows = readFloats(patchify(g, u8, videoDims(u8, 2, 2), "f32", undefined, norm));
  for (let i = 0; i < 24; i++) {
    const ch = Math.floor(i / 8);
    assert.ok(Math.abs(rows[i] - (px[i] / 255 - norm.mean[ch]) / norm.std[ch]) < 1e-5);
  }
  g.reset();
});

Deno.test("sinusoid table: sin on even channels, cos on odd, 10000^(2 floor(j/2)/d)", () => {
  const [n, d] = [1568, 384];
  const t = allocPersistent([n, d], "f32");
  sinusoidTable(t, n, d);
  const got = readFloats(t);
  for (const pos of [0, 1, 777, 1567]) {
    for (const j of [0, 1, 2, 191, 382, 383]) {
      const angle = pos / Math.pow(10000, (2 * Math.floor(j / 2)) / d);
      const want = Math.fround(j % 2 === 0 ? Math.sin(angle) : Math.cos(angle));
      assert.equal(got[pos * d + j], want);
    }
  }
});

Deno.test("GELU is the exact erf form", () => {
  const g = new Graph(arena, { grad: false });
  const x = g.alloc([5], "f32");
  writeTensor(x, [-3, -1, 0, 0.5, 2]);
  // 0.5 x (1 + erf(x / sqrt 2)), values from the error function's tables.
  const want = [-0.0040496, -0.1586553, 0, 0.3457312, 1.9544997];
  const got = readFloats(gelu(g, x));
  for (let i = 0; i < 5; i++) {
    assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `gelu(${[-3, -1, 0, 0.5, 2][i]}) = ${got[i]}`);
  }
  g.reset();
});

Deno.test("bf16 linear and attention agree with f32 within bf16 precision", () => {
  const g = new Graph(arena, { grad: false });
  const x = randn(rng, [16, 32]);
  const w = randn(rng, [24, 32], 0.2);
  const bias = randn(rng, [24]);
  const cast = (t: typeof x) => {
    const o = g.alloc(t.shape, "bf16");
    native().call("vs_cast", 0, 1, t.numel, t.ptr, o.ptr, null);
    return o;
  };
  const ref = readFloats(linear(g, x, w, bias, { gelu: true }));
  const low = readFloats(linear(g, cast(x), cast(w), cast(bias), { gelu: true }));
  assert.ok(maxRelDiff(low, ref) < 1e-2, `linear bf16 vs f32: ${maxRelDiff(low, ref)}`);
  const qkv = randn(rng, [2 * 9, 3 * 2 * 8]);
  const aRef = readFloats(attention(g, qkv, 2, 9, 2, 8));
  const aLow = readFloats(attention(g, cast(qkv), 2, 9, 2, 8));
  assert.ok(maxRelDiff(aLow, aRef) < 1e-2, `attention bf16 vs f32: ${maxRelDiff(aLow, aRef)}`);
  g.reset();
});

Deno.test("a failing kernel throws a KernelError naming the kernel, the status and the arguments", () => {
  assert.throws(
    () => native().call("vs_gemm", 0, 0, 0, 0, -3, 4, 5, 1, null, null, 0, null, null, 0, null, null),
    (e: unknown) => {
      assert.ok(e instanceof KernelError);
      assert.match(e.message, /^vs_gemm failed with VS_ERR_ARG: .*-3/);
      assert.match(e.message, /arguments: 0, 0, 0, 0, -3, 4, 5/);
      return true;
    },
  );
});

Deno.test("GEMM GELU epilogues follow vswift.h: gelu of aux as stored, DGELU on the rounded product", () => {
  const [m, n, k] = [12, 24, 40];
  const bf = (shape: number[], scale = 1) => randn(rng, shape, scale, "bf16");
  const call = native().call.bind(native());
  const [a, b, bias] = [bf([m, k]), bf([n, k], 0.3), bf([n])];
  const [c, aux, again, plain] = [bf([m, n]), bf([m, n]), bf([m, n]), bf([m, n])];
  // GELU_BIAS: C is exactly gelu of the rounded pre-activation that aux holds.
  call("vs_gemm", 1, 1, 0, 1, m, n, k, 1, a.ptr, b.ptr, 0, c.ptr, bias.ptr, 2, aux.ptr, null);
  call("vs_gelu_fwd", 1, m * n, aux.ptr, again.ptr, null);
  assert.deepEqual([...readFloats(c)], [...readFloats(again)]);
  // A NULL bias is no bias: aux is then the plain product.
  call("vs_gemm", 1, 1, 0, 1, m, n, k, 1, a.ptr, b.ptr, 0, c.ptr, null, 2, aux.ptr, null);
  call("vs_gemm", 1, 1, 0, 1, m, n, k, 1, a.ptr, b.ptr, 0, plain.ptr, null, 0, null, null);
  assert.deepEqual([...readFloats(aux)], [...readFloats(plain)]);
  // DGELU: C = round(A B) * gelu'(aux), rounded: the unfused GEMM and gelu_bwd give the same bits.
  const dy = bf([m, n]);
  call("vs_gemm", 1, 1, 0, 1, m, n, k, 1, a.ptr, b.ptr, 0, c.ptr, null, 3, dy.ptr, null);
  call("vs_gelu_bwd", 1, m * n, dy.ptr, plain.ptr, again.ptr, null);
  assert.deepEqual([...readFloats(c)], [...readFloats(again)]);
});
