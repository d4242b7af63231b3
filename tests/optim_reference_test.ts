/**
 * AdamW and gradient clipping against torch.optim.AdamW and torch.nn.utils.clip_grad_norm_ written out
 * here in float64, step by step: decoupled weight decay (p *= 1 - lr wd, before the moments), both bias
 * corrections, eps added to sqrt(v_hat) (not inside the root), V-SWIFT's decay mask, per-group lr scales,
 * and clipping by max_norm / (norm + 1e-6) only when that is below 1.
 */
import assert from "node:assert/strict";
import { copyToDevice } from "../lib/ffi/pointers.ts";
import { ParamStore } from "../lib/model/params.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats } from "../lib/tensor.ts";
import { AdamW, type AdamWOptions, type GroupRule, vswiftDecays } from "../lib/train/adamw.ts";
import "./helpers.ts";

/** Parameters that cover the decay mask: matrices decay; vectors, biases and pos_embed do not. */
const SHAPES: [string, number[]][] = [
  ["blocks.0.attn.qkv.weight", [6, 4]],
  ["blocks.0.attn.q_bias", [4]],
  ["blocks.0.mlp.fc1.bias", [5]],
  ["blocks.0.norm1.weight", [4]],
  ["decoder.mask_token", [1, 1, 4]],
  ["pos_embed", [1, 3, 4]],
  ["head.weight", [3, 4]],
];

interface Reference {
  p: Float64Array[];
  m: Float64Array[];
  v: Float64Array[];
}

function makeStore(rng: Rng): { store: ParamStore; init: Float32Array[] } {
  const store = new ParamStore();
  for (const [name, shape] of SHAPES) store.declare(name, shape, { kind: "zeros" });
  store.allocate("f32");
  const init = store.params.map((p) => Float32Array.from({ length: p.numel }, () => rng.normal()));
  store.params.forEach((p, i) => store.setMaster(p, init[i]));
  return { store, init };
}

/**
 * Runs `lrs.length` updates on both sides with fresh gradients each step and returns the largest
 * |ours - reference| / (|reference| + 1e-3) over parameters and both moments, and the grad norms.
 */
function compare(
  opts: AdamWOptions,
  lrs: number[],
  gradScale: number,
  rule?: GroupRule,
): { worst: number; norms: [number, number][] } {
  const rng = new Rng(7);
  const { store, init } = makeStore(rng);
  const adam = new AdamW(store, opts, rule);
  const [b1, b2] = opts.betas ?? [0.9, 0.999];
  const eps = opts.eps ?? 1e-8;
  const wd = opts.weightDecay ?? 0.05;
  // Hyper-parameters per parameter, written out from the rules rather than read from the optimiser.
  const hp = store.params.map((p) =>
    rule ? rule(p) : { lrScale: 1, weightDecay: decaysByName(p.name, p.shape) ? wd : 0 }
  );
  const ref: Reference = {
    p: init.map((v) => Float64Array.from(v)),
    m: init.map((v) => new Float64Array(v.length)),
    v: init.map((v) => new Float64Array(v.length)),
  };
  const norms: [number, number][] = [];
  lrs.forEach((lr, s) => {
    const t = s + 1;
    const grads = store.params.map((p) =>
      Float32Array.from({ length: p.numel }, () => rng.normal() * gradScale)
    );
    store.params.forEach((p, i) => copyToDevice(p.grad.ptr, grads[i]));
    adam.update(lr);
    // clip_grad_norm_: the total 2-norm over every gradient, coef = max / (norm + 1e-6), applied if < 1.
    let sq = 0;
    for (const g of grads) for (const x of g) sq += x * x;
    const norm = Math.sqrt(sq);
    norms.push([readFloats(adam.gradNorm)[0], norm]);
    const coef = opts.clipGrad === undefined ? 1 : Math.min(1, opts.clipGrad / (norm + 1e-6));
    store.params.forEach((_, i) => {
      const a = lr * hp[i].lrScale;
      const bc1 = 1 - b1 ** t;
      const bc2 = 1 - b2 ** t;
      for (let j = 0; j < grads[i].length; j++) {
        const g = grads[i][j] * coef;
        ref.p[i][j] *= 1 - a * hp[i].weightDecay;
        ref.m[i][j] = b1 * ref.m[i][j] + (1 - b1) * g;
        ref.v[i][j] = b2 * ref.v[i][j] + (1 - b2) * g * g;
        const denom = Math.sqrt(ref.v[i][j]) / Math.sqrt(bc2) + eps;
        ref.p[i][j] -= (a / bc1) * (ref.m[i][j] / denom);
      }
    });
  });
  let worst = 0;
  store.params.forEach((p, i) => {
    const got = [
      store.readMaster(p),
      readFloats(adam.m.sub(p.offset, p.shape)),
      readFloats(adam.v.sub(p.offset, p.shape)),
    ];
    const want = [ref.p[i], ref.m[i], ref.v[i]];
    for (let k = 0; k < 3; k++) {
      for (let j = 0; j < p.numel; j++) {
        worst = Math.max(worst, Math.abs(got[k][j] - want[k][j]) / (Math.abs(want[k][j]) + 1e-3));
      }
    }
  });
  adam.free();
  store.free();
  return { worst, norms };
}

/** V-SWIFT's mask, restated: no decay for 1-D tensors, .bias / .scale names, pos_embed and cls_token. */
function decaysByName(name: string, shape: readonly number[]): boolean {
  return shape.length > 1 && !/\.(bias|scale)$/.test(name) && name !== "pos_embed" && name !== "cls_token";
}

// Large lr, decay and eps, so that each term (decay sign, bias corrections, eps placement) moves the
// weights far beyond f32 rounding within a few steps.
const BASE: AdamWOptions = { lr: 0, betas: [0.9, 0.95], eps: 1e-2, weightDecay: 0.3 };
const LRS = [0.05, 0.1, 0.2, 0.15, 0.07];

Deno.test("AdamW follows torch.optim.AdamW for several steps, with V-SWIFT's decay mask", () => {
  assert.deepEqual(
    SHAPES.map(([n, s]) => vswiftDecays({ name: n, shape: s } as never)),
    [true, false, false, false, true, false, true],
  );
  const { worst } = compare(BASE, LRS, 1);
  assert.ok(worst < 2e-5, `AdamW differs from the reference by ${worst}`);
});

Deno.test("AdamW: per-group lr scales and weight decays of a custom rule", () => {
  const rule: GroupRule = (p) => ({
    lrScale: p.name.startsWith("blocks") ? 0.25 : 1,
    weightDecay: p.name === "head.weight" ? 0 : 0.2,
  });
  const { worst } = compare(BASE, LRS, 1, rule);
  assert.ok(worst < 2e-5, `AdamW with groups differs from the reference by ${worst}`);
});

Deno.test("clipping: gradients scaled by max_norm / (norm + 1e-6) when the norm exceeds max_norm", () => {
  // Gradients of norm ~ 5 * sqrt(55) ~ 37 clipped to 1.5: the update sees gradients 25x smaller, which
  // with eps 1e-2 changes the step, so a clip that does nothing is caught.
  const { worst, norms } = compare({ ...BASE, clipGrad: 1.5 }, LRS, 5);
  assert.ok(worst < 2e-5, `clipped AdamW differs from the reference by ${worst}`);
  for (const [got, want] of norms) {
    assert.ok(want > 10, `the gradient norm ${want} should exceed max_norm`);
    assert.ok(Math.abs(got - want) < 1e-5 * want, `gradNorm ${got}, want ${want} (before clipping)`);
  }
});

Deno.test("clipping: no change when the norm is below max_norm", () => {
  const clipped = compare({ ...BASE, clipGrad: 1e6 }, LRS, 1);
  const plain = compare(BASE, LRS, 1);
  assert.ok(clipped.worst < 2e-5, `AdamW with an idle clip differs from the reference by ${clipped.worst}`);
  assert.deepEqual(clipped.norms, plain.norms);
});
