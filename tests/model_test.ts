/** The VideoMAE models: names and shapes, masking, whole-model gradients, overfitting one batch. */
import assert from "node:assert/strict";
import { Graph } from "../lib/autograd.ts";
import { VideoClassifier } from "../lib/model/classifier.ts";
import { geometry, modelConfig } from "../lib/model/config.ts";
import { keptPerSlice, maskFromBoolean, maskToBoolean, tubeMask } from "../lib/model/masking.ts";
import { VideoMAEPretrain } from "../lib/model/pretrain.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats, readScalar, writeTensor } from "../lib/tensor.ts";
import { arena, assertGradOk, gradCheck, randn } from "./helpers.ts";

Deno.test("state names and shapes are V-SWIFT's", () => {
  const m = new VideoMAEPretrain(modelConfig("base"));
  const shapes = new Map(m.store.params.map((p) => [p.name, p.shape.join("x")]));
  assert.deepEqual(shapes.get("encoder.patch_embed.proj.weight"), "768x3x2x16x16");
  assert.deepEqual(shapes.get("encoder.blocks.3.attn.q_bias"), "768");
  assert.deepEqual(shapes.get("encoder.blocks.11.attn.qkv.weight"), "2304x768");
  assert.deepEqual(shapes.get("encoder.blocks.0.mlp.fc1.weight"), "3072x768");
  assert.deepEqual(shapes.get("encoder_to_decoder.weight"), "384x768");
  assert.deepEqual(shapes.get("encoder_to_decoder.bias"), undefined);
  assert.deepEqual(shapes.get("decoder.mask_token"), "1x1x384");
  assert.deepEqual(shapes.get("decoder.blocks.3.mlp.fc2.weight"), "384x1536");
  assert.deepEqual(shapes.get("decoder.head.bias"), "1536");
  assert.deepEqual(shapes.get("decoder.blocks.0.attn.k_bias"), undefined);
  assert.deepEqual((m.parameterCount / 1e6).toFixed(3), "94.211"); // spec §7, decoder depth 4
  const g = new VideoMAEPretrain(modelConfig("giant"));
  assert.deepEqual(g.store.get("decoder.blocks.0.mlp.fc1.weight")!.shape.join("x"), "2234x512");
  assert.deepEqual(g.store.get("decoder.head.weight")!.shape.join("x"), "1176x512");
  const c = new VideoClassifier(modelConfig("base"), { numClasses: 174 });
  assert.deepEqual(c.store.get("head.weight")!.shape.join("x"), "174x768");
  assert(c.store.get("fc_norm.weight"));
  assert(c.store.get("blocks.11.attn.v_bias"));
});

Deno.test("bad configurations are refused with the field named", () => {
  assert.throws(() => modelConfig("enormous"), /Unknown model size "enormous"/);
  assert.throws(() => modelConfig("base", { imgSize: 225 }), /imgSize 225 is not divisible by patchSize 16/);
  assert.throws(() => modelConfig("base", { heads: 7 }), /embedDim 768 is not divisible by heads 7/);
});

Deno.test("tube masking keeps floor(L (1 - r)) per slice (V-SWIFT) or L - floor(r L) (v1)", () => {
  assert.deepEqual(keptPerSlice(196, 0.9, "vswift"), 19);
  assert.deepEqual(keptPerSlice(196, 0.9, "v1"), 20);
  assert.deepEqual(keptPerSlice(256, 0.9, "vswift"), 25);
  assert.deepEqual(keptPerSlice(196, 0.75, "vswift"), 49);
  assert.deepEqual(keptPerSlice(196, 0.75, "v1"), 49);
  const m = tubeMask(new Rng(1), { b: 3, slices: 8, perSlice: 196, ratio: 0.9 });
  assert.deepEqual([m.nVisible, m.nMasked], [152, 1416]);
  for (let i = 0; i < 3; i++) {
    const vis = m.visible.subarray(i * 152, (i + 1) * 152);
    // Raster order, and the same spatial pattern in every slice.
    for (let j = 1; j < vis.length; j++) assert(vis[j] > vis[j - 1]);
    const first = [...vis.subarray(0, 19)];
    for (let s = 1; s < 8; s++) {
      assert.deepEqual(
        [...vis.subarray(s * 19, (s + 1) * 19)],
        first.map((v) => v + s * 196),
      );
    }
  }
  assert(m.visible.subarray(0, 19).join() !== m.visible.subarray(152, 171).join(), "samples share a pattern");
  const back = maskFromBoolean(maskToBoolean(m), 3, 1568);
  assert.deepEqual(back.visible, m.visible);
  assert.throws(() => maskFromBoolean([1, 0, 0, 0, 1, 1, 0, 0], 2, 4), /sample 0 masks 1, sample 1 masks 2/);
});

/**
 * Moves every parameter off its initial value: zero biases would hide their own paths, and at
 * initialisation most single weights move the f32 loss by little more than its rounding.
 */
function jitter(model: VideoMAEPretrain | VideoClassifier, rng: Rng): void {
  for (const p of model.store.params) {
    const v = model.store.readMaster(p);
    for (let i = 0; i < v.length; i++) v[i] += 0.2 * rng.normal();
    model.store.setMaster(p, v);
  }
}

function tinyBatch(rng: Rng, b = 2) {
  const c = modelConfig("tiny");
  const video = randn(rng, [b, 3, c.frames, c.imgSize, c.imgSize]);
  return { c, video };
}

Deno.test("pretraining forward: shapes, loss value, target equals the patchified input's statistics", () => {
  const rng = new Rng(3);
  const { c, video } = tinyBatch(rng);
  const model = new VideoMAEPretrain(c).allocate("f32").initialize(1);
  const g = new Graph(arena, { grad: false });
  const out = model.forward(g, video, { rng, maskRatio: 0.75 });
  const { tokens, patchDim } = geometry(c);
  assert.deepEqual(tokens, 32);
  assert.deepEqual(out.mask.nMasked, 24);
  assert.deepEqual(out.pred.shape, [2, 24, patchDim]);
  const pred = readFloats(out.pred);
  const target = readFloats(out.target);
  let sse = 0;
  for (let i = 0; i < pred.length; i++) sse += (pred[i] - target[i]) ** 2;
  const loss = readScalar(out.loss);
  assert(Math.abs(loss - sse / pred.length) < 1e-5 * loss, `loss ${loss} vs ${sse / pred.length}`);
  // Each (token, channel) of the target has mean 0 and unbiased std 1 (up to eps).
  for (let ch = 0; ch < 3; ch++) {
    let s = 0;
    let ss = 0;
    for (let f = 0; f < patchDim / 3; f++) {
      const v = target[f * 3 + ch];
      s += v;
      ss += v * v;
    }
    const n = patchDim / 3;
    assert(Math.abs(s / n) < 1e-4);
    assert(Math.abs(ss / (n - 1) - 1) < 1e-3);
  }
  g.reset();
  model.free();
});

Deno.test("whole tiny pretraining model: parameter gradients match finite differences", () => {
  const rng = new Rng(4);
  const { c, video } = tinyBatch(rng);
  const model = new VideoMAEPretrain(c).allocate("f32").initialize(2);
  jitter(model, rng);
  const mask = model.drawMask(rng, 2, 0.75);
  const inputs = Object.fromEntries(model.store.params.map((p) => [p.name, p.value]));
  const r = gradCheck(inputs, (g) => model.forward(g, video, { mask }).loss, {
    samples: 4,
    eps: 3e-2,
    mode: "largest",
  });
  assertGradOk(r, 1e-2);
  model.free();
});

Deno.test("whole tiny classifier with stochastic depth: parameter gradients match finite differences", () => {
  const rng = new Rng(5);
  const { c, video } = tinyBatch(rng);
  const model = new VideoClassifier(c, { numClasses: 5, dropPath: 0.3, initScale: 1 }).allocate("f32")
    .initialize(3);
  jitter(model, rng);
  const targets = randn(rng, [2, 5]);
  writeTensor(targets, [0.9, 0.025, 0.025, 0.025, 0.025, 0.1, 0.2, 0.3, 0.2, 0.2]);
  const inputs = Object.fromEntries(model.store.params.map((p) => [p.name, p.value]));
  const r = gradCheck(inputs, (g) => model.forward(g, video, { targets, rng: new Rng(11) }).loss!, {
    samples: 4,
    eps: 3e-2,
    mode: "largest",
  });
  assertGradOk(r, 1e-2);
  model.free();
});

Deno.test("a tiny pretraining model overfits one fixed batch with AdamW (loss < 10% of the first)", () => {
  const rng = new Rng(6);
  // The head predicts every masked token from decoderDim features: 24 masked tokens need more than 24.
  const c = modelConfig("tiny", { decoderDim: 32 });
  const video = randn(rng, [1, 3, c.frames, c.imgSize, c.imgSize]);
  const model = new VideoMAEPretrain(c).allocate("f32").initialize(4);
  const mask = model.drawMask(rng, 1, 0.75);
  const lr = 3e-3;
  const opt = new AdamW(model.store, { lr, betas: [0.9, 0.95], weightDecay: 0.05 });
  const losses: number[] = [];
  for (let step = 0; step < 300; step++) {
    const g = new Graph(arena);
    model.store.zeroGrad();
    const { loss } = model.forward(g, video, { mask });
    g.backward(loss);
    opt.update(lr);
    losses.push(readScalar(loss));
    g.reset();
  }
  const [first, last] = [losses[0], losses[losses.length - 1]];
  assert(last < 0.1 * first, `loss went from ${first} to ${last}`);
  opt.free();
  model.free();
});
