/**
 * `deno task bench:step`: pretraining step throughput on synthetic data already on the device.
 *
 * For each batch size: videos/s, step time, true MFU (3 x 2 x the MACs of the model as trained, 208.5
 * GFLOP per ViT-B video), V-SWIFT-convention MFU (3 x 2 x 53.433 GMAC) and peak memory. Defaults: ViT-B,
 * bf16, 16 x 224 x 224, mask 0.9, batches 64, 128, 256 on a GPU; on the host the default pretraining's
 * model and batch (configs/default.yaml: mini, 8 x 64 x 64, patch 8, decoder depth 2, batch 8) in f32,
 * the dtype host training runs. `--config` takes the model and batch from another pretraining config,
 * `--model` a size at its defaults.
 *
 * `--compare torch` (host build): the same step in PyTorch (bench/torch_step.py, needs `python3 -c
 * "import torch"` to work) with the same thread count, interleaved with ours round by round (A, B, A,
 * B, ...) so that a shared or throttled machine slows both alike; prints each round's ratio and the
 * median ratio of our videos/s to PyTorch's.
 */
import { Graph } from "../lib/autograd.ts";
import { type DeviceChoice, openNative } from "../lib/ffi/native.ts";
import { Arena, persistentMemory } from "../lib/memory.ts";
import { type ModelConfig, modelConfig } from "../lib/model/config.ts";
import { VideoMAEPretrain } from "../lib/model/pretrain.ts";
import { Rng } from "../lib/rng.ts";
import { type DType, readScalar, writeTensor } from "../lib/tensor.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { loadConfig, modelConfigOf } from "../lib/train/pretrain/config.ts";
import { mfu, peakFlops, trainFlopsPerVideo } from "../lib/train/pretrain/mfu.ts";
import { pretrainStep } from "../lib/train/pretrain/step.ts";
import { parseFlags } from "../lib/task_cli.ts";
import { startTorchStep, type TorchStep } from "./torch_step.ts";
import { recordResult, timeMs } from "./timing.ts";

const USAGE = "usage: deno task bench:step [--device auto|host|cuda] [--model SIZE | --config FILE] " +
  "[--dtype f32|bf16] [--batches 64,128] [--steps 10] [--compare torch] [--rounds 5] [--threads N] " +
  "[--peak-tflops T] [--record]";
const { values } = parseFlags("deno task bench:step", USAGE, {
  options: {
    device: { type: "string", default: "auto" },
    model: { type: "string" },
    config: { type: "string" },
    dtype: { type: "string" },
    batches: { type: "string" },
    steps: { type: "string", default: "10" },
    compare: { type: "string" },
    rounds: { type: "string", default: "5" },
    threads: { type: "string" },
    "peak-tflops": { type: "string" },
    record: { type: "boolean", default: false },
  },
});
const n = await openNative({ device: values.device as DeviceChoice });
const gpu = n.isCuda;
if (values.compare !== undefined && values.compare !== "torch") {
  console.error(`--compare takes torch, got ${values.compare}`);
  Deno.exit(2);
}
if (values.compare && gpu) {
  console.error("--compare torch runs PyTorch on the CPU: use it with --device host");
  Deno.exit(2);
}
const dtype = (values.dtype ?? (gpu ? "bf16" : "f32")) as DType;
if (dtype !== "f32" && dtype !== "bf16") {
  console.error(`--dtype must be f32 or bf16, got ${dtype}`);
  Deno.exit(2);
}
const threads = Number(values.threads ?? navigator.hardwareConcurrency);
if (!Number.isInteger(threads) || threads < 1) {
  console.error(`--threads must be a positive integer, got ${values.threads}`);
  Deno.exit(2);
}
if (values.threads) n.call("vs_set_threads", threads);

let cfg: ModelConfig;
let defaultBatches: string;
if (values.model) {
  cfg = modelConfig(values.model);
  defaultBatches = gpu ? "64,128,256" : "2";
} else if (values.config || !gpu) {
  const path = values.config ??
    decodeURIComponent(new URL("../configs/default.yaml", import.meta.url).pathname);
  const pc = await loadConfig(path);
  cfg = modelConfigOf(pc);
  defaultBatches = String(pc.train.batch_size);
} else {
  cfg = modelConfig("base");
  defaultBatches = "64,128,256";
}
const batches = (values.batches ?? defaultBatches).split(",").map(Number);
const steps = Number(values.steps);
const rounds = Number(values.rounds);
const peak = values["peak-tflops"] ? Number(values["peak-tflops"]) * 1e12 : peakFlops(n.deviceName());
const device = n.deviceName();
const perVideo = trainFlopsPerVideo(cfg);
const shape = `${cfg.frames}x${cfg.imgSize}x${cfg.imgSize}, patch ${cfg.patchSize}`;
console.log(
  `pretraining step, ${cfg.name} (${shape}, decoder depth ${cfg.decoderDepth}), ${dtype}, on ${device}`,
);
console.log(
  `training FLOPs per video: ${(perVideo.honest / 1e9).toFixed(1)} G (as trained), ${
    (perVideo.vswift / 1e9).toFixed(1)
  } G (V-SWIFT's convention)`,
);
if (!peak) console.log("peak FLOP/s of this device unknown: pass --peak-tflops for MFU");

const model = new VideoMAEPretrain(cfg).allocate(dtype).initialize(0);
const opt = new AdamW(model.store, { lr: 1e-4, betas: [0.9, 0.95] });
const rng = new Rng(0);

/** Milliseconds per step of ours at batch b, and the loss of one more step. */
function runOurs(b: number, iters: number, warmup: number): { ms: number; loss: number; mem: number } {
  const arena = new Arena();
  const video = arena.alloc([b, 3, cfg.frames, cfg.imgSize, cfg.imgSize], dtype);
  writeTensor(video, Float32Array.from({ length: video.numel }, () => rng.normal()));
  const stepArena = new Arena();
  const ms = timeMs(() => {
    const g = new Graph(stepArena);
    pretrainStep(model, opt, g, video, { lr: 1e-4, rng, maskRatio: 0.9 });
    g.reset();
  }, { warmup, iters });
  const g = new Graph(stepArena);
  const loss = readScalar(pretrainStep(model, opt, g, video, { lr: 1e-4, rng, maskRatio: 0.9 }));
  g.reset();
  const mem = (persistentMemory().peak + arena.peak + stepArena.peak) / 2 ** 30;
  stepArena.dispose();
  arena.dispose();
  return { ms, loss, mem };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const lines: string[] = [];
if (values.compare) {
  const header = "| batch | round | ours videos/s | PyTorch videos/s | ratio |";
  lines.push(header, "| --- | --- | --- | --- | --- |");
  console.log(`\nagainst PyTorch on the CPU, ${threads} threads each, ${steps} steps per turn, interleaved`);
  console.log(header);
  for (const b of batches) {
    let torch: TorchStep;
    try {
      torch = await startTorchStep(cfg, { batch: b, threads, maskRatio: 0.9 });
    } catch (e) {
      console.error((e as Error).message);
      Deno.exit(1);
    }
    const ratios: number[] = [];
    try {
      runOurs(b, 1, 2); // warm-up
      for (let r = 0; r < rounds; r++) {
        const ours = runOurs(b, steps, 0);
        const theirs = await torch.run(steps);
        const ratio = theirs.msPerStep / ours.ms;
        ratios.push(ratio);
        const line = `| ${b} | ${r + 1} | ${((b * 1000) / ours.ms).toFixed(2)} | ${
          ((b * 1000) / theirs.msPerStep).toFixed(2)
        } | ${ratio.toFixed(2)}x |`;
        lines.push(line);
        console.log(line);
      }
    } finally {
      await torch.close();
    }
    const summary = `batch ${b}: ours / PyTorch videos/s, median of ${rounds} interleaved rounds: ${
      median(ratios).toFixed(2)
    }x`;
    lines.push("", summary);
    console.log(summary);
  }
} else {
  const header = "| batch | videos/s | step ms | true MFU | V-SWIFT MFU | peak memory GiB |";
  lines.push(header, "| --- | --- | --- | --- | --- | --- |");
  console.log(`\n${header}`);
  for (const b of batches) {
    const { ms, loss, mem } = runOurs(b, steps, 2);
    const vps = (b * 1000) / ms;
    const fmt = (x?: number) => (x === undefined ? "n/a" : `${(100 * x).toFixed(1)}%`);
    const line = `| ${b} | ${vps.toFixed(1)} | ${ms.toFixed(1)} | ${
      fmt(peak && mfu(vps, perVideo.honest, peak))
    } | ${fmt(peak && mfu(vps, perVideo.vswift, peak))} | ${mem.toFixed(2)} |`;
    lines.push(line);
    console.log(line);
    if (!Number.isFinite(loss)) console.log(`  the loss is ${loss}: the numbers above are not trustworthy`);
  }
}

if (values.record) {
  const body =
    `model ${cfg.name} (${shape}), decoder depth ${cfg.decoderDepth}, ${dtype}, ${steps} timed steps${
      values.compare ? ` per turn, ${rounds} interleaved rounds against PyTorch` : " after 2 warm-up steps"
    }, peak ${peak ? (peak / 1e12).toFixed(1) : "unknown"} TFLOP/s\n\n${lines.join("\n")}`;
  console.log(`\nrecorded in ${await recordResult(values.compare ? "step-vs-torch" : "step", device, body)}`);
}
