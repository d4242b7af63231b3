/**
 * Whole models against PyTorch: the tiny pretraining model's predictions, targets and loss, and the tiny
 * classifier's logits, against the float64 outputs of an independent PyTorch implementation
 * (tests/fixtures/make_model_fixtures.py) on the same weights, inputs and mask. Every weight is random
 * (LayerNorm affines and q/v biases included), so a wrong attention scale, bias packing, GELU, LayerNorm,
 * patch order, position table or target normalisation moves the outputs far beyond f32 rounding.
 */
import assert from "node:assert/strict";
import { Graph } from "../lib/autograd.ts";
import { openPth, PthTensor, tensorsOf, toSafeTensors } from "../lib/io/pth.ts";
import { type SafeTensor, toFloats } from "../lib/io/safetensors.ts";
import { VideoClassifier } from "../lib/model/classifier.ts";
import { modelConfig } from "../lib/model/config.ts";
import { maskFromBoolean } from "../lib/model/masking.ts";
import { VideoMAEPretrain } from "../lib/model/pretrain.ts";
import { loadStateDict } from "../lib/model/state.ts";
import { readFloats, writeTensor } from "../lib/tensor.ts";
import { arena, maxRelDiff } from "./helpers.ts";

const DIR = new URL("./fixtures/model/", import.meta.url).pathname;

// The fixture's sizes: 4 frames of 16 x 16, tubelet 2, patch 8 (8 tokens), embed 16 in 2 heads, depth 2,
// decoder 8 wide in 2 heads, depth 1.
const CONFIG = modelConfig("tiny", {
  imgSize: 16,
  frames: 4,
  embedDim: 16,
  heads: 2,
  depth: 2,
  decoderDim: 8,
  decoderHeads: 2,
  decoderDepth: 1,
});

/** A fixture's tensors: the state dict (dense safetensors entries) and the named inputs and outputs. */
function fixture(name: string): { state: Map<string, SafeTensor>; tensor(key: string): PthTensor } {
  const root = openPth(`${DIR}${name}`).root as Map<string, unknown>;
  return {
    state: toSafeTensors(tensorsOf(root.get("state"))),
    tensor(key: string): PthTensor {
      const t = root.get(key);
      assert.ok(t instanceof PthTensor, `${name} has no tensor "${key}"`);
      return t;
    },
  };
}

function floats(t: PthTensor): Float64Array {
  if (t.dtype === "F64") return new Float64Array(t.bytes().buffer);
  return Float64Array.from(toFloats(t.toSafeTensor()));
}

Deno.test("the tiny pretraining model reproduces PyTorch's predictions, targets and loss", () => {
  const f = fixture("pretrain_tiny.pth");
  const model = new VideoMAEPretrain(CONFIG).allocate("f32");
  const report = loadStateDict(model, f.state, { source: "pretrain_tiny.pth" });
  assert.equal(report.loaded.length, model.store.params.length);

  const video = f.tensor("video");
  const visible = new Int32Array(f.tensor("visible").bytes().buffer);
  const [b, tokens] = [video.shape[0], 8];
  const bool = new Uint8Array(b * tokens).fill(1);
  const nv = visible.length / b;
  for (let i = 0; i < b; i++) for (let j = 0; j < nv; j++) bool[i * tokens + visible[i * nv + j]] = 0;
  const mask = maskFromBoolean(bool, b, tokens);
  assert.deepEqual([...mask.masked], [...new Int32Array(f.tensor("masked").bytes().buffer)]);

  const g = new Graph(arena, { grad: false });
  const x = g.alloc(video.shape, "f32");
  writeTensor(x, toFloats(video.toSafeTensor()));
  const out = model.forward(g, x, { mask });
  const target = maxRelDiff(readFloats(out.target), floats(f.tensor("target")));
  const pred = maxRelDiff(readFloats(out.pred), floats(f.tensor("pred")));
  const loss = readFloats(out.loss)[0];
  const want = floats(f.tensor("loss"))[0];
  g.reset();
  model.free();
  assert.ok(target < 1e-5, `target differs from PyTorch's by ${target}`);
  assert.ok(pred < 1e-5, `predictions differ from PyTorch's by ${pred}`);
  assert.ok(Math.abs(loss - want) < 1e-5 * want, `loss ${loss}, PyTorch ${want}`);
});

for (const pool of ["mean", "max"] as const) {
  Deno.test(`the tiny classifier reproduces PyTorch's logits (${pool} pooling)`, () => {
    const f = fixture("classifier_tiny.pth");
    const model = new VideoClassifier(CONFIG, { numClasses: 5, dropPath: 0, pool }).allocate("f32");
    loadStateDict(model, f.state, { source: "classifier_tiny.pth" });
    const video = f.tensor("video");
    const g = new Graph(arena, { grad: false });
    const x = g.alloc(video.shape, "f32");
    writeTensor(x, toFloats(video.toSafeTensor()));
    const logits = readFloats(model.forward(g, x).logits);
    g.reset();
    model.free();
    const want = pool === "mean" ? f.tensor("logits") : fixture("classifier_tiny_max.pth").tensor("logits");
    const err = maxRelDiff(logits, floats(want));
    assert.ok(err < 1e-5, `logits differ from PyTorch's by ${err}`);
  });
}
