/**
 * `deno task bench:model --gpu h100|a100|h200`: a roofline model of one pretraining step, before a GPU.
 *
 * The launch sequence is the real one: one ViT-B/16 pretraining step (forward, backward, AdamW) is
 * recorded through the FFI binding on the host build as a dry run (every launch is logged with its
 * shape arguments, none is computed), at batches 1, 2 and 3; each launch's FLOPs and bytes are affine in
 * the batch, which the third recording checks, so they extend exactly to the batch asked for. Each
 * launch is then priced at the device's peak and at the efficiency our kernels target
 * (lib/perf/roofline.ts), giving the step time, videos/s and MFU, and showing which kernels decide it.
 */
import { openNative } from "../lib/ffi/native.ts";
import { modelConfig } from "../lib/model/config.ts";
import { GPUS, predictStep, priceLaunches, TARGET } from "../lib/perf/roofline.ts";
import { pretrainStepAt } from "../lib/perf/step_launches.ts";
import { parseFlags } from "../lib/task_cli.ts";
import { mfu, trainFlopsPerVideo } from "../lib/train/pretrain/mfu.ts";

const USAGE = "usage: deno task bench:model [--gpu h100|a100|h200] [--model SIZE] [--batch 128] " +
  "[--mask-ratio 0.9] [--gemm-eff E] [--attention-eff E] [--memory-eff E] [--launch-us US] [--top 12] [--summary]";
const { values } = parseFlags("deno task bench:model", USAGE, {
  options: {
    gpu: { type: "string", default: "h100" },
    model: { type: "string", default: "base" },
    batch: { type: "string", default: "128" },
    "mask-ratio": { type: "string", default: "0.9" },
    "gemm-eff": { type: "string", default: String(TARGET.gemm) },
    "attention-eff": { type: "string", default: String(TARGET.attention) },
    "memory-eff": { type: "string", default: String(TARGET.memory) },
    "launch-us": { type: "string", default: String(TARGET.hostLaunchUs) },
    top: { type: "string", default: "12" },
    summary: { type: "boolean", default: false },
  },
});
const gpu = GPUS[values.gpu.toLowerCase()];
if (!gpu) {
  console.error(`Unknown --gpu ${values.gpu}; known: ${Object.keys(GPUS).join(", ")}`);
  Deno.exit(2);
}
const batch = Number(values.batch);
const maskRatio = Number(values["mask-ratio"]);
if (!Number.isInteger(batch) || batch < 1) {
  console.error(`--batch must be a positive integer, got ${values.batch}`);
  Deno.exit(2);
}
/** A flag that must be a positive number. */
function positive(flag: "gemm-eff" | "attention-eff" | "memory-eff" | "launch-us"): number {
  const v = Number(values[flag]);
  if (!(v > 0)) {
    console.error(`--${flag} must be a positive number, got ${values[flag]}`);
    Deno.exit(2);
  }
  return v;
}
const eff = {
  ...TARGET,
  gemm: positive("gemm-eff"),
  attention: positive("attention-eff"),
  memory: positive("memory-eff"),
  hostLaunchUs: positive("launch-us"),
};

const n = await openNative({ device: "host", quiet: true });
const cfg = modelConfig(values.model);

const started = performance.now();
const costs = await pretrainStepAt(n, cfg, batch, maskRatio);
const priced = priceLaunches(costs, gpu, eff);
const step = predictStep(priced, eff);
const perVideo = trainFlopsPerVideo(cfg, maskRatio).honest;
const fmtUs = (s: number) => (s * 1e6).toFixed(1);

console.log(
  `Roofline model: ${cfg.name} pretraining step (decoder depth ${cfg.decoderDepth}, ${cfg.frames}x${cfg.imgSize}x${cfg.imgSize}, ` +
    `mask ${maskRatio}, bf16), batch ${batch}, on ${gpu.name}`,
);
console.log(
  `  roofs: ${(gpu.tensorFlops / 1e12).toFixed(1)} TFLOP/s bf16 dense, ${
    (gpu.dramBytes / 1e12).toFixed(2)
  } TB/s DRAM; ` +
    `targets: GEMM ${eff.gemm * 100}%, attention ${eff.attention * 100}%, memory ${eff.memory * 100}%, ` +
    `at least ${eff.minKernelUs} us a kernel, ${eff.hostLaunchUs} us of host time a launch`,
);
console.log(
  `  ${step.launches} launches recorded through the binding (dry run on the host build at batches 1, 2, 3; ` +
    `affine in the batch; ${((performance.now() - started) / 1000).toFixed(1)} s)\n`,
);

if (!values.summary) {
  console.log("| # | kernel | shape (batch 1) | GFLOP | MB | bound | us at peak | us at target |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  priced.forEach((p, i) => {
    console.log(
      `| ${i} | ${p.kernel} | ${p.shape} | ${(p.flops / 1e9).toFixed(3)} | ${
        (p.bytes / 1e6).toFixed(2)
      } | ${p.bound} | ` +
        `${fmtUs(p.peakS)} | ${fmtUs(p.targetS)} |`,
    );
  });
  console.log("");
}

// Which kernels decide the step: time at target per entry point.
const byKernel = new Map<string, { launches: number; flops: number; bytes: number; s: number }>();
for (const p of priced) {
  const k = byKernel.get(p.kernel) ?? { launches: 0, flops: 0, bytes: 0, s: 0 };
  k.launches++;
  k.flops += p.flops;
  k.bytes += p.bytes;
  k.s += p.targetS;
  byKernel.set(p.kernel, k);
}
console.log("| kernel | launches | GFLOP | GB | ms at target | share of step |");
console.log("| --- | --- | --- | --- | --- | --- |");
const rows = [...byKernel].sort((a, b) => b[1].s - a[1].s).slice(0, Number(values.top));
for (const [k, v] of rows) {
  console.log(
    `| ${k} | ${v.launches} | ${(v.flops / 1e9).toFixed(1)} | ${(v.bytes / 1e9).toFixed(2)} | ${
      (v.s * 1e3).toFixed(2)
    } | ${((100 * v.s) / step.targetS).toFixed(1)}% |`,
  );
}

const videosPerS = (at: number) => batch / at;
const mfuAt = (at: number) => mfu(videosPerS(at), perVideo, gpu.tensorFlops);
console.log(
  `\nstep FLOPs ${(step.flops / 1e12).toFixed(2)} T recorded (${
    (step.flops / batch / 1e9).toFixed(1)
  } G a video; the model's count is ${(perVideo / 1e9).toFixed(1)} G), DRAM traffic ${
    (step.bytes / 1e9).toFixed(1)
  } GB`,
);
console.log(
  `at peak:   ${(step.peakS * 1e3).toFixed(1)} ms a step, ${
    videosPerS(step.peakS).toFixed(0)
  } videos/s, MFU ${(100 * mfuAt(step.peakS)).toFixed(1)}%`,
);
console.log(
  `at target: ${
    (step.targetS * 1e3).toFixed(1)
  } ms of device time a step; the host issues the ${step.launches} launches in ${
    (step.hostS * 1e3).toFixed(1)
  } ms`,
);
console.log(
  `predicted: ${(step.stepS * 1e3).toFixed(1)} ms a step (${
    step.stepS === step.targetS ? "device bound" : "launch bound: the host cannot queue kernels fast enough"
  }), ${videosPerS(step.stepS).toFixed(0)} videos/s per GPU, true MFU ${
    (100 * mfuAt(step.stepS)).toFixed(1)
  }%`,
);
const units = step.byUnit;
console.log(
  `device time at target: GEMM ${(units.gemm.targetS * 1e3).toFixed(1)} ms, attention ${
    (units.attention.targetS * 1e3).toFixed(1)
  } ms, memory-bound kernels ${
    (units.memory.targetS * 1e3).toFixed(1)
  } ms (${units.memory.launches} launches)`,
);
