/**
 * `deno task finetune [--config FILE] [--section.key value ...]`: fine-tuning with V-SWIFT's recipe.
 *
 * Without arguments it runs configs/finetune_default.yaml: the small model on generated clips of 8 motion
 * classes, from scratch unless --finetune names a pretraining checkpoint (a checkpoint folder of
 * `deno task pretrain`, a safetensors file, or a VideoMAE / V-SWIFT .pth). Shortcuts: --finetune PATH
 * (train.finetune), --steps N, --epochs N, --device host|cuda|cuda-sim|auto, --output DIR, --gpus N (one process
 * per GPU of this machine; under torchrun or srun each process is one rank). Ctrl-C saves a checkpoint
 * and exits; the same command resumes.
 */
import { configOrExit, launchOnGpus, parseTaskArgs, runTrainingTask } from "../lib/task_cli.ts";
import { loadFinetuneConfig } from "../lib/train/finetune/config.ts";
import { finetune } from "../lib/train/finetune/loop.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const opts = parseTaskArgs(Deno.args, {
  config: `${ROOT}configs/finetune_default.yaml`,
  keys: {
    "--finetune": "--train.finetune",
    "--steps": "--train.steps",
    "--epochs": "--train.epochs",
    "--device": "--train.device",
    "--output": "--train.output",
  },
  switches: { "--resume": ["--train.resume", "always"], "--no-resume": ["--train.resume", "never"] },
  usage: [
    "usage: deno task finetune [--config FILE] [--finetune CKPT] [--steps N] [--epochs N] [--gpus N]",
    "                          [--device auto|host|cuda|cuda-sim] [--output DIR] [--resume | --no-resume] [--section.key value ...]",
    "       e.g. --optim.lr 5e-4 --train.batch_size 32 --data.rand_augment '' --mixup.mixup 0",
  ].join("\n"),
});
const cfg = await configOrExit(loadFinetuneConfig(opts.configPath, opts.overrides));
await launchOnGpus(opts.gpus, new URL(import.meta.url).pathname, Deno.args);

await runTrainingTask("fine-tuning", (signal) => finetune(cfg, { print: true, signal }));
