/**
 * `deno task pretrain [--config FILE] [--section.key value ...]`: VideoMAE pretraining.
 *
 * Without arguments it runs configs/default.yaml: a small model on a generated dataset of moving
 * shapes, a few minutes on 2 CPU cores. Shortcuts: --steps N (train.steps), --device host|cuda|auto,
 * --output DIR, --synthetic (throughput mode: one fixed random batch on the device, V-SWIFT's
 * --use_synthetic). Ctrl-C saves a checkpoint and exits; the same command resumes.
 */
import { distEnv } from "../lib/dist/env.ts";
import { launchLocal } from "../lib/dist/launch.ts";
import { loadConfig } from "../lib/train/config.ts";
import { pretrain } from "../lib/train/pretrain_loop.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const args = [...Deno.args];
let configPath = `${ROOT}configs/default.yaml`;
const overrides: string[] = [];
let gpus = 0;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const [flag, inline] = a.includes("=")
    ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
    : [a, undefined];
  const value = () => inline ?? args[++i];
  if (flag === "--config") configPath = value();
  else if (flag === "--steps") overrides.push("--train.steps", value());
  else if (flag === "--device") overrides.push("--train.device", value());
  else if (flag === "--output") overrides.push("--train.output", value());
  else if (flag === "--synthetic") overrides.push("--data.source", "memory");
  else if (flag === "--gpus") gpus = Number(value());
  else if (flag === "--help" || flag === "-h") {
    console.log(
      "usage: deno task pretrain [--config FILE] [--steps N] [--device auto|host|cuda] [--output DIR] [--synthetic]",
    );
    console.log(
      "                          [--section.key value ...]   e.g. --optim.lr 1e-4 --train.batch_size 64",
    );
    Deno.exit(0);
  } else overrides.push(a);
}

let cfg;
try {
  cfg = await loadConfig(configPath, overrides);
} catch (e) {
  console.error((e as Error).message);
  Deno.exit(2);
}

// --gpus N: one process per GPU on this machine (under torchrun or srun RANK is set and we are one).
if (gpus > 1 && Deno.env.get("RANK") === undefined) {
  const script = new URL(import.meta.url).pathname;
  const perms = [
    "--allow-ffi",
    "--allow-read",
    "--allow-write",
    "--allow-run",
    "--allow-env",
    "--allow-sys",
    "--allow-net",
  ];
  const rest = Deno.args.filter((a, i, all) =>
    a !== "--gpus" && !a.startsWith("--gpus=") && all[i - 1] !== "--gpus"
  );
  Deno.exit(await launchLocal(gpus, ["run", ...perms, script, ...rest]));
}
if (!(Number.isInteger(gpus) && gpus >= 0)) {
  console.error(`--gpus must be a non-negative integer, got ${gpus}`);
  Deno.exit(2);
}

const dist = distEnv();
const stop = new AbortController();
const onInterrupt = () => {
  if (stop.signal.aborted) Deno.exit(130); // a second Ctrl-C does not wait for the checkpoint
  if (dist.rank === 0) {
    console.error("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)");
  }
  stop.abort();
};
Deno.addSignalListener("SIGINT", onInterrupt);
// Batch schedulers stop jobs with SIGTERM: save the same way.
Deno.addSignalListener("SIGTERM", onInterrupt);

const run = pretrain(cfg, { print: true, signal: stop.signal });
const speeds: number[] = [];
const mfus: number[] = [];
try {
  for (;;) {
    const r = await run.next();
    if (r.done) {
      const s = r.value;
      if (dist.rank !== 0) break;
      if (cfg.data.source === "memory" && speeds.length > 0) {
        // Throughput mode: the mean over the second half of the run, past warm-up.
        const tail = (a: number[]) => a.slice(Math.floor(a.length / 2));
        const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
        console.log(
          `throughput: ${mean(tail(speeds)).toFixed(1)} videos/s` +
            (mfus.length ? `, MFU ${(100 * mean(tail(mfus))).toFixed(1)}%` : ""),
        );
      }
      console.log(
        `${s.interrupted ? "stopped" : "done"}: ${s.output}${
          s.lastCheckpoint ? `, last checkpoint ${s.lastCheckpoint}` : ""
        }`,
      );
      break;
    }
    speeds.push(r.value.videosPerSecond);
    if (r.value.mfu !== undefined) mfus.push(r.value.mfu);
  }
} catch (e) {
  const rank = dist.worldSize > 1 ? `rank ${dist.rank}: ` : "";
  console.error(`\n${rank}pretraining failed: ${(e as Error).message}`);
  Deno.exit(1);
} finally {
  Deno.removeSignalListener("SIGINT", onInterrupt);
  Deno.removeSignalListener("SIGTERM", onInterrupt);
}
