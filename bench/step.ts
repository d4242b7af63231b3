/**
 * `deno task bench:step`: pretraining step throughput on synthetic data already on the device.
 *
 * For each batch size: videos/s, step time, true MFU (3 x 2 x the MACs of the model as trained, 208.5
 * GFLOP per ViT-B video), V-SWIFT-convention MFU (3 x 2 x 53.433 GMAC) and peak memory. Defaults: ViT-B,
 * bf16, 16 x 224 x 224, mask 0.9, batches 64, 128, 256 on a GPU; the mini model, batch 2, on the host.
 */
import { parseArgs } from "node:util";
import { Graph } from "../lib/autograd.ts";
import { type DeviceChoice, openNative } from "../lib/ffi/native.ts";
import { Arena, persistentMemory } from "../lib/memory.ts";
import { modelConfig } from "../lib/model/config.ts";
import { VideoMAEPretrain } from "../lib/model/pretrain.ts";
import { Rng } from "../lib/rng.ts";
import { readScalar, writeTensor } from "../lib/tensor.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { mfu, peakFlops, trainFlopsPerVideo } from "../lib/train/mfu.ts";
import { pretrainStep } from "../lib/train/pretrain_step.ts";
import { recordResult, timeMs } from "./timing.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    device: { type: "string", default: "auto" },
    model: { type: "string" },
    batches: { type: "string" },
    steps: { type: "string", default: "10" },
    "peak-tflops": { type: "string" },
    record: { type: "boolean", default: false },
  },
});
const n = await openNative({ device: values.device as DeviceChoice });
const gpu = n.isCuda;
const device = n.deviceName();
const cfg = modelConfig(values.model ?? (gpu ? "base" : "mini"));
const batches = (values.batches ?? (gpu ? "64,128,256" : "2")).split(",").map(Number);
const steps = Number(values.steps);
const peak = values["peak-tflops"] ? Number(values["peak-tflops"]) * 1e12 : peakFlops(device);
const perVideo = trainFlopsPerVideo(cfg);
console.log(`pretraining step, ${cfg.name} (decoder depth ${cfg.decoderDepth}), bf16, on ${device}`);
console.log(
  `training FLOPs per video: ${(perVideo.honest / 1e9).toFixed(1)} G (as trained), ${
    (perVideo.vswift / 1e9).toFixed(1)
  } G (V-SWIFT's convention)`,
);
if (!peak) console.log("peak FLOP/s of this device unknown: pass --peak-tflops for MFU");

const model = new VideoMAEPretrain(cfg).allocate("bf16").initialize(0);
const opt = new AdamW(model.store, { lr: 1e-4, betas: [0.9, 0.95] });
const rng = new Rng(0);
const header = "| batch | videos/s | step ms | true MFU | V-SWIFT MFU | peak memory GiB |";
const lines = [header, "| --- | --- | --- | --- | --- | --- |"];
console.log(`\n${header}`);
for (const b of batches) {
  const arena = new Arena();
  const video = arena.alloc([b, 3, cfg.frames, cfg.imgSize, cfg.imgSize], "bf16");
  writeTensor(video, Float32Array.from({ length: video.numel }, () => rng.normal()));
  const stepArena = new Arena();
  let loss = 0;
  const ms = timeMs(() => {
    const g = new Graph(stepArena);
    const l = pretrainStep(model, opt, g, video, { lr: 1e-4, rng, maskRatio: 0.9 });
    g.reset();
    void l;
  }, { warmup: 2, iters: steps });
  {
    const g = new Graph(stepArena);
    loss = readScalar(pretrainStep(model, opt, g, video, { lr: 1e-4, rng, maskRatio: 0.9 }));
    g.reset();
  }
  const vps = (b * 1000) / ms;
  const mem = (persistentMemory().peak + arena.peak + stepArena.peak) / 2 ** 30;
  const fmt = (x?: number) => (x === undefined ? "n/a" : `${(100 * x).toFixed(1)}%`);
  const line = `| ${b} | ${vps.toFixed(1)} | ${ms.toFixed(1)} | ${
    fmt(peak && mfu(vps, perVideo.honest, peak))
  } | ${fmt(peak && mfu(vps, perVideo.vswift, peak))} | ${mem.toFixed(2)} |`;
  lines.push(line);
  console.log(line);
  if (!Number.isFinite(loss)) console.log(`  the loss is ${loss}: the numbers above are not trustworthy`);
  stepArena.dispose();
  arena.dispose();
}

if (values.record) {
  const body =
    `model ${cfg.name}, decoder depth ${cfg.decoderDepth}, bf16, ${steps} timed steps after 2 warm-up steps, peak ${
      peak ? (peak / 1e12).toFixed(1) : "unknown"
    } TFLOP/s\n\n${lines.join("\n")}`;
  console.log(`\nrecorded in ${await recordResult("step", device, body)}`);
}
