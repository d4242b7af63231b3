/**
 * `deno task pretrain [--config FILE] [--section.key value ...]`: VideoMAE pretraining.
 *
 * Without arguments it runs configs/default.yaml: a small model on a generated dataset of moving
 * shapes, a few minutes on 2 CPU cores. Shortcuts: --steps N (train.steps), --device host|cuda|cuda-sim|auto,
 * --output DIR, --synthetic (throughput mode: one fixed random batch on the device, V-SWIFT's
 * --use_synthetic). Ctrl-C saves a checkpoint and exits; the same command resumes.
 */
import { configOrExit, launchOnGpus, parseTaskArgs, runTrainingTask } from "../lib/task_cli.ts";
import { loadConfig } from "../lib/train/pretrain/config.ts";
import { pretrain } from "../lib/train/pretrain/loop.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const opts = parseTaskArgs(Deno.args, {
  config: `${ROOT}configs/default.yaml`,
  keys: { "--steps": "--train.steps", "--device": "--train.device", "--output": "--train.output" },
  switches: {
    "--synthetic": ["--data.source", "memory"],
    "--resume": ["--train.resume", "always"],
    "--no-resume": ["--train.resume", "never"],
  },
  usage: [
    "usage: deno task pretrain [--config FILE] [--steps N] [--device auto|host|cuda|cuda-sim] [--output DIR] [--synthetic]",
    "                          [--resume | --no-resume]",
    "                          [--gpus N] [--section.key value ...]   e.g. --optim.lr 1e-4 --train.batch_size 64",
  ].join("\n"),
});
const cfg = await configOrExit(loadConfig(opts.configPath, opts.overrides));
await launchOnGpus(opts.gpus, new URL(import.meta.url).pathname, Deno.args);

const speeds: number[] = [];
const mfus: number[] = [];
await runTrainingTask("pretraining", (signal) => pretrain(cfg, { print: true, signal }), {
  onStep: (m) => {
    speeds.push(m.videosPerSecond);
    if (m.mfu !== undefined) mfus.push(m.mfu);
  },
  onEnd: () => {
    if (cfg.data.source !== "memory" || speeds.length === 0) return;
    // Throughput mode: the mean over the second half of the run, past warm-up.
    const tail = (a: number[]) => a.slice(Math.floor(a.length / 2));
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    console.log(
      `throughput: ${mean(tail(speeds)).toFixed(1)} videos/s` +
        (mfus.length ? `, MFU ${(100 * mean(tail(mfus))).toFixed(1)}%` : ""),
    );
  },
});
