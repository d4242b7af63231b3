/**
 * `deno task finetune [--config FILE] [--section.key value ...]`: fine-tuning with V-SWIFT's recipe.
 *
 * Without arguments it runs configs/finetune_default.yaml: the small model on generated clips of 8 motion
 * classes, from scratch unless --finetune names a pretraining checkpoint (a checkpoint folder of
 * `deno task pretrain`, a safetensors file, or a VideoMAE / V-SWIFT .pth). Shortcuts: --finetune PATH
 * (train.finetune), --steps N, --epochs N, --device host|cuda|auto, --output DIR, --gpus N (one process
 * per GPU of this machine; under torchrun or srun each process is one rank). Ctrl-C saves a checkpoint
 * and exits; the same command resumes.
 */
import { distEnv } from "../lib/dist/env.ts";
import { launchLocal } from "../lib/dist/launch.ts";
import { loadFinetuneConfig } from "../lib/train/finetune_config.ts";
import { finetune } from "../lib/train/finetune_loop.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const args = [...Deno.args];
let configPath = `${ROOT}configs/finetune_default.yaml`;
const overrides: string[] = [];
let gpus = 0;
const shortcuts: Record<string, string> = {
  "--finetune": "--train.finetune",
  "--steps": "--train.steps",
  "--epochs": "--train.epochs",
  "--device": "--train.device",
  "--output": "--train.output",
};
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const [flag, inline] = a.includes("=")
    ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
    : [a, undefined];
  const value = () => inline ?? args[++i];
  if (flag === "--config") configPath = value();
  else if (flag === "--gpus") gpus = Number(value());
  else if (shortcuts[flag]) overrides.push(shortcuts[flag], value());
  else if (flag === "--help" || flag === "-h") {
    console.log(
      "usage: deno task finetune [--config FILE] [--finetune CKPT] [--steps N] [--epochs N] [--gpus N]",
    );
    console.log(
      "                          [--device auto|host|cuda] [--output DIR] [--section.key value ...]",
    );
    console.log("       e.g. --optim.lr 5e-4 --train.batch_size 32 --data.rand_augment '' --mixup.mixup 0");
    Deno.exit(0);
  } else overrides.push(a);
}

// --gpus N: one process per GPU on this machine (under torchrun or srun RANK is set and we are one).
if (!(Number.isInteger(gpus) && gpus >= 0)) {
  console.error(`--gpus must be a non-negative integer, got ${gpus}`);
  Deno.exit(2);
}
if (gpus > 1 && Deno.env.get("RANK") === undefined) {
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
  Deno.exit(await launchLocal(gpus, ["run", ...perms, new URL(import.meta.url).pathname, ...rest]));
}

let cfg;
try {
  cfg = await loadFinetuneConfig(configPath, overrides);
} catch (e) {
  console.error((e as Error).message);
  Deno.exit(2);
}

const stop = new AbortController();
const onInterrupt = () => {
  if (stop.signal.aborted) Deno.exit(130);
  console.error("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)");
  stop.abort();
};
Deno.addSignalListener("SIGINT", onInterrupt);
Deno.addSignalListener("SIGTERM", onInterrupt);

const run = finetune(cfg, { print: true, signal: stop.signal });
try {
  for (;;) {
    const r = await run.next();
    if (r.done) {
      const s = r.value;
      if (distEnv().rank !== 0) break;
      console.log(
        `${s.interrupted ? "stopped" : "done"}: ${s.output}${
          s.lastCheckpoint ? `, last checkpoint ${s.lastCheckpoint}` : ""
        }`,
      );
      break;
    }
  }
} catch (e) {
  console.error(`\nfine-tuning failed: ${(e as Error).message}`);
  Deno.exit(1);
} finally {
  Deno.removeSignalListener("SIGINT", onInterrupt);
  Deno.removeSignalListener("SIGTERM", onInterrupt);
}
