/**
 * Forward values of the layers against naive float64 references written out here: the attention layer
 * (qkv with q_bias / v_bias packed around a zero key bias, softmax(q k^T / sqrt(hd)) v per head, proj),
 * linear with bias and with the GELU epilogue, LayerNorm, GELU over a range, the Conv3d patch embedding,
 * and the MSE against per-patch normalised targets. The references share no code with the kernels.
 */
import assert from "node:assert/strict";
import { Graph } from "../lib/autograd.ts";
import { Attention, LayerNorm, Linear } from "../lib/model/layers.ts";
import { ParamStore } from "../lib/model/params.ts";
import { gelu } from "../lib/ops/elementwise.ts";
import { addLayerNorm } from "../lib/ops/layernorm.ts";
import { linear } from "../lib/ops/linear.ts";
import { mse } from "../lib/ops/loss.ts";
import { indexTensor } from "../lib/ops/tokens.ts";
import { patchify, patchTarget, videoDims } from "../lib/ops/video.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats, type Tensor, writeTensor } from "../lib/tensor.ts";
import { arena, maxRelDiff } from "./helpers.ts";

const rng = new Rng(5);

function values(n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => Math.fround(rng.normal() * scale));
}

function upload(g: Graph, shape: number[], v: Float64Array): Tensor {
  const t = g.alloc(shape, "f32");
  writeTensor(t, Float32Array.from(v));
  return t;
}

/** A store whose parameters all get random values (biases and LayerNorm affines included). */
function randomize(store: ParamStore): Map<string, Float64Array> {
  store.allocate("f32");
  const out = new Map<string, Float64Array>();
  for (const p of store.params) {
    const v = values(p.numel, 0.5);
    store.setMaster(p, Float32Array.from(v));
    out.set(p.name, v);
  }
  return out;
}

/** y[r, o] = sum_i x[r, i] w[o, i] + b[o]. */
function refLinear(
  x: Float64Array,
  w: Float64Array,
  b: Float64Array | undefined,
  inDim: number,
): Float64Array {
  const rows = x.length / inDim;
  const outDim = w.length / inDim;
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i] * w[o * inDim + i];
      y[r * outDim + o] = s;
    }
  }
  return y;
}

/** erf by its Maclaurin series (|x| <= 3) or its asymptotic continued fraction, to ~1e-12. */
function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a <= 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 80; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let f = 0;
    for (let n = 60; n >= 1; n--) f = (n / 2) / (a + f);
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f);
  }
  return x < 0 ? -r : r;
}

const refGelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

Deno.test("the erf of the references matches tabulated values", () => {
  for (const [x, want] of [[0.5, 0.5204998778], [1, 0.8427007929], [2, 0.9953222650], [3.5, 0.9999992569]]) {
    assert.ok(Math.abs(erf(x) - want) < 1e-9 && Math.abs(erf(-x) + want) < 1e-9, `erf(${x}) = ${erf(x)}`);
  }
});

Deno.test("GELU: 0.5 x (1 + erf(x / sqrt 2)) from -8 to 8", () => {
  const xs = Float64Array.from({ length: 321 }, (_, i) => Math.fround(-8 + i * 0.05));
  const g = new Graph(arena, { grad: false });
  const got = readFloats(gelu(g, upload(g, [xs.length], xs)));
  g.reset();
  xs.forEach((x, i) => {
    const want = refGelu(x);
    assert.ok(
      Math.abs(got[i] - want) <= 2e-7 * Math.max(1, Math.abs(want)),
      `gelu(${x}) = ${got[i]}, want ${want}`,
    );
  });
});

Deno.test("linear: x W^T + b, and with the GELU epilogue", () => {
  const [rows, inDim, outDim] = [7, 12, 9];
  const x = values(rows * inDim);
  const w = values(outDim * inDim, 0.3);
  const b = values(outDim);
  const g = new Graph(arena, { grad: false });
  const xt = upload(g, [rows, inDim], x);
  const wt = upload(g, [outDim, inDim], w);
  const bt = upload(g, [outDim], b);
  const plain = readFloats(linear(g, xt, wt, bt));
  const act = readFloats(linear(g, xt, wt, bt, { gelu: true }));
  g.reset();
  const want = refLinear(x, w, b, inDim);
  assert.ok(maxRelDiff(plain, want) < 1e-6, `linear: ${maxRelDiff(plain, want)}`);
  const wantAct = want.map(refGelu);
  assert.ok(maxRelDiff(act, wantAct) < 1e-6, `linear + GELU: ${maxRelDiff(act, wantAct)}`);
});

Deno.test("LayerNorm: (x - mean) / sqrt(biased var + eps) * w + b, and fused with the residual add", () => {
  const [rows, dim, eps] = [5, 24, 1e-6];
  const store = new ParamStore();
  const ln = new LayerNorm(store, "norm", dim, eps);
  const p = randomize(store);
  // The last row varies by ~1e-3 around 0.5: its variance is comparable to eps, so where eps goes matters.
  const x = values(rows * dim, 2).map((v, i) => i >= (rows - 1) * dim ? Math.fround(0.5 + v * 5e-4) : v);
  const r = values(rows * dim);
  const ref = (v: Float64Array) => {
    const y = new Float64Array(v.length);
    for (let i = 0; i < rows; i++) {
      const row = v.subarray(i * dim, (i + 1) * dim);
      const mean = row.reduce((s, t) => s + t, 0) / dim;
      const varB = row.reduce((s, t) => s + (t - mean) ** 2, 0) / dim;
      for (let j = 0; j < dim; j++) {
        y[i * dim + j] = ((row[j] - mean) / Math.sqrt(varB + eps)) * p.get("norm.weight")![j] +
          p.get("norm.bias")![j];
      }
    }
    return y;
  };
  const g = new Graph(arena, { grad: false });
  const xt = upload(g, [rows, dim], x);
  const got = readFloats(ln.forward(g, xt));
  const fused = addLayerNorm(g, xt, upload(g, [rows, dim], r), ln.weight.value, ln.bias.value, eps);
  const sum = readFloats(fused.sum);
  const y = readFloats(fused.y);
  g.reset();
  store.free();
  assert.ok(maxRelDiff(got, ref(x)) < 1e-6, `LayerNorm: ${maxRelDiff(got, ref(x))}`);
  const xr = x.map((v, i) => v + r[i]);
  assert.ok(maxRelDiff(sum, xr) < 1e-7, "residual sum");
  assert.ok(maxRelDiff(y, ref(xr)) < 1e-6, `LayerNorm of the sum: ${maxRelDiff(y, ref(xr))}`);
});

Deno.test("attention layer: q_bias and v_bias packed around a zero key bias, softmax(q k^T / sqrt(hd)) v", () => {
  const [b, n, dim, heads] = [2, 5, 12, 3];
  const hd = dim / heads;
  const store = new ParamStore();
  const attn = new Attention(store, "attn", dim, heads, "xavier");
  const p = randomize(store);
  const x = values(b * n * dim);
  const g = new Graph(arena, { grad: false });
  const got = readFloats(attn.forward(g, upload(g, [b * n, dim], x), b, n));
  g.reset();
  store.free();

  const bias = new Float64Array(3 * dim);
  bias.set(p.get("attn.q_bias")!, 0);
  bias.set(p.get("attn.v_bias")!, 2 * dim);
  const qkv = refLinear(x, p.get("attn.qkv.weight")!, bias, dim); // (b, n, 3, heads, hd)
  const at = (bi: number, t: number, which: number, h: number, d: number) =>
    qkv[(bi * n + t) * 3 * dim + which * dim + h * hd + d];
  const o = new Float64Array(b * n * dim);
  for (let bi = 0; bi < b; bi++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < n; i++) {
        const s = Array.from({ length: n }, (_, j) => {
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += at(bi, i, 0, h, d) * at(bi, j, 1, h, d);
          return dot / Math.sqrt(hd);
        });
        const mx = Math.max(...s);
        const e = s.map((v) => Math.exp(v - mx));
        const z = e.reduce((u, v) => u + v, 0);
        for (let d = 0; d < hd; d++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc += (e[j] / z) * at(bi, j, 2, h, d);
          o[(bi * n + i) * dim + h * hd + d] = acc;
        }
      }
    }
  }
  const want = refLinear(o, p.get("attn.proj.weight")!, p.get("attn.proj.bias")!, dim);
  assert.ok(maxRelDiff(got, want) < 1e-5, `attention layer: ${maxRelDiff(got, want)}`);
});

Deno.test("patch embedding: the Conv3d with kernel = stride = (tubelet, p, p) over raster-ordered tokens", () => {
  const [b, c, t, h, w, tub, ps, dim] = [2, 3, 4, 8, 12, 2, 4, 10];
  const store = new ParamStore();
  const embed = new Linear(store, "proj", c * tub * ps * ps, dim, {
    init: "torchDefault",
    weightShape: [dim, c, tub, ps, ps],
  });
  const p = randomize(store);
  const video = values(b * c * t * h * w);
  const g = new Graph(arena, { grad: false });
  const vt = upload(g, [b, c, t, h, w], video);
  const got = readFloats(embed.forward(g, patchify(g, vt, videoDims(vt, tub, ps), "f32")));
  g.reset();
  store.free();
  const [tt, hh, ww] = [t / tub, h / ps, w / ps];
  const wt = p.get("proj.weight")!;
  const want = new Float64Array(b * tt * hh * ww * dim);
  for (let bi = 0; bi < b; bi++) {
    for (let tok = 0; tok < tt * hh * ww; tok++) {
      const [z, y, x] = [Math.floor(tok / (hh * ww)), Math.floor(tok / ww) % hh, tok % ww];
      for (let o = 0; o < dim; o++) {
        let s = p.get("proj.bias")![o];
        for (let ch = 0; ch < c; ch++) {
          for (let dz = 0; dz < tub; dz++) {
            for (let dy = 0; dy < ps; dy++) {
              for (let dx = 0; dx < ps; dx++) {
                const pix = video[(((bi * c + ch) * t + z * tub + dz) * h + y * ps + dy) * w + x * ps + dx];
                s += pix * wt[(((o * c + ch) * tub + dz) * ps + dy) * ps + dx];
              }
            }
          }
        }
        want[(bi * tt * hh * ww + tok) * dim + o] = s;
      }
    }
  }
  assert.ok(maxRelDiff(got, want) < 1e-6, `patch embedding: ${maxRelDiff(got, want)}`);
});

Deno.test("MSE against per-patch, per-channel normalised targets (unbiased std + 1e-6)", () => {
  const [b, c, t, h, w, tub, ps] = [2, 3, 4, 8, 8, 2, 4];
  const tokens = (t / tub) * (h / ps) * (w / ps);
  const masked = Int32Array.from([1, 4, 6, 0, 2, 7]); // 3 masked tokens per sample
  const nm = 3;
  const f = c * tub * ps * ps;
  const video = values(b * c * t * h * w, 3);
  const pred = values(b * nm * f);
  const g = new Graph(arena, { grad: false });
  const vt = upload(g, [b, c, t, h, w], video);
  const dims = videoDims(vt, tub, ps);
  const target = patchTarget(g, vt, dims, indexTensor(g, masked, b), 1e-6);
  const loss = readFloats(mse(g, upload(g, [b, nm, f], pred), target))[0];
  g.reset();
  const [hh, ww] = [h / ps, w / ps];
  let sq = 0;
  for (let bi = 0; bi < b; bi++) {
    for (let k = 0; k < nm; k++) {
      const tok = masked[bi * nm + k];
      assert.ok(tok < tokens);
      const [z, y, x] = [Math.floor(tok / (hh * ww)), Math.floor(tok / ww) % hh, tok % ww];
      for (let ch = 0; ch < c; ch++) {
        const px: number[] = [];
        for (let dz = 0; dz < tub; dz++) {
          for (let dy = 0; dy < ps; dy++) {
            for (let dx = 0; dx < ps; dx++) {
              px.push(video[(((bi * c + ch) * t + z * tub + dz) * h + y * ps + dy) * w + x * ps + dx]);
            }
          }
        }
        const mean = px.reduce((s, v) => s + v, 0) / px.length;
        const std = Math.sqrt(px.reduce((s, v) => s + (v - mean) ** 2, 0) / (px.length - 1));
        // Feature order (dt, dy, dx, c): the pixel's index in px, times 3, plus the channel.
        px.forEach((v, j) => {
          sq += (pred[(bi * nm + k) * f + j * c + ch] - (v - mean) / (std + 1e-6)) ** 2;
        });
      }
    }
  }
  const want = sq / (b * nm * f);
  assert.ok(Math.abs(loss - want) < 1e-5 * want, `MSE ${loss}, want ${want}`);
});
