/**
 * The roofline model (bench:model): launch costs from recorded shape arguments, the batch
 * extrapolation and its affine check, and the priced step against the model's own FLOP count.
 */
import assert from "node:assert/strict";
import type { LaunchRecord } from "../lib/ffi/launch_log.ts";
import { native } from "../lib/ffi/native.ts";
import { modelConfig } from "../lib/model/config.ts";
import { countFlops } from "../lib/model/flops.ts";
import { launchCost } from "../lib/perf/launch_cost.ts";
import { extrapolate, GPUS, predictStep, priceLaunches, TARGET } from "../lib/perf/roofline.ts";
import { pretrainStepAt, recordPretrainStep } from "../lib/perf/step_launches.ts";
import "./helpers.ts";

const P = Deno.UnsafePointer.create(256n);

Deno.test("a GEMM's cost comes from its shape arguments", () => {
  // Linear weight gradient dW += dy^T x: bf16 in, f32 out, accumulated.
  const r: LaunchRecord = {
    kernel: "vs_gemm",
    args: [1, 0, 1, 0, 768, 3072, 4096, 1, P, P, 1, P, null, 0, null, P],
    stream: "compute",
  };
  const c = launchCost(r)!;
  assert.equal(c.flops, 2 * 768 * 3072 * 4096);
  assert.equal(c.bytes, (768 * 4096 + 4096 * 3072) * 2 + 768 * 3072 * 4 * 2);
  assert.equal(c.unit, "gemm");
  const [p] = priceLaunches([{ ...c, kernel: r.kernel }], GPUS.h100);
  assert.equal(p.bound, "compute");
  assert.ok(Math.abs(p.peakS - c.flops / 989.5e12) < 1e-12);
  assert.ok(Math.abs(p.targetS - p.peakS / TARGET.gemm) < 1e-12);
});

Deno.test("a step recorded at batches 1 to 3 extends exactly to batch 4", async () => {
  const cfg = modelConfig("tiny");
  const n = native();
  const at4 = await recordPretrainStep(n, cfg, 4, 0.75);
  const model4 = await pretrainStepAt(n, cfg, 4, 0.75);
  assert.ok(at4.length > 100, `only ${at4.length} launches recorded`);
  assert.deepEqual(model4.map((c) => c.kernel), at4.map((c) => c.kernel));
  at4.forEach((c, i) => {
    assert.ok(Math.abs(model4[i].flops - c.flops) <= 1e-9 * c.flops, `launch ${i} ${c.kernel} FLOPs`);
    assert.ok(Math.abs(model4[i].bytes - c.bytes) <= 1e-9 * c.bytes, `launch ${i} ${c.kernel} bytes`);
  });
  const step = predictStep(priceLaunches(model4, GPUS.a100));
  assert.ok(step.targetS > step.peakS && step.stepS >= step.hostS);
});

Deno.test("ViT-B's recorded step does the FLOPs the model counts", async () => {
  // A dry run: ViT-B is allocated (never touched) and nothing is computed, so this is cheap.
  const cfg = modelConfig("base");
  const costs = await pretrainStepAt(native(), cfg, 64, 0.9);
  const step = predictStep(priceLaunches(costs, GPUS.h100));
  const matmul = step.byUnit.gemm.flops + step.byUnit.attention.flops;
  // fvcore-style 3 x 2 x MACs (208.5 GFLOP a video) also counts the patch embedding's input gradient,
  // which is never computed, and LayerNorm's 5 per element: the recorded matmuls are a little less.
  const counted = 64 * countFlops(cfg, 0.9).trainFlops;
  assert.ok(matmul <= counted && matmul > 0.97 * counted, `recorded ${matmul}, counted ${counted}`);
});

Deno.test("extrapolation refuses a sequence that is not affine in the batch", () => {
  const c = (flops: number) => ({
    kernel: "vs_add",
    flops,
    bytes: flops,
    unit: "memory" as const,
    shape: "",
  });
  assert.deepEqual(extrapolate([[c(1)], [c(2)], [c(3)]], 10).map((x) => x.flops), [10]);
  assert.throws(() => extrapolate([[c(1)], [c(2)], [c(5)]], 10), /not affine in the batch/);
  assert.throws(() => extrapolate([[c(1)], [c(2), c(2)], [c(3)]], 10), /changes with the batch/);
});
