/**
 * `deno task eval --ckpt PATH [--config FILE] [--section.key value ...]`: the multi-view test alone
 * (S temporal x K spatial views per video, softmax averaged per video) of a fine-tuned classifier: a
 * checkpoint folder of `deno task finetune`, a safetensors file, or a V-SWIFT / VideoMAE .pth. Writes
 * test_per_video.csv and test_summary.json under <train.output>/test. The config gives the model size,
 * the classes and the test list (configs/finetune_default.yaml by default). --gpus N splits the views over
 * N processes of this machine (every view once); rank 0 merges them.
 */
import { configOrExit, launchOnGpus, parseTaskArgs } from "../lib/task_cli.ts";
import { loadFinetuneConfig } from "../lib/train/finetune/config.ts";
import { evaluateCheckpoint } from "../lib/train/finetune/eval.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const opts = parseTaskArgs(Deno.args, {
  config: `${ROOT}configs/finetune_default.yaml`,
  keys: { "--device": "--train.device", "--output": "--train.output" },
  own: ["--ckpt"],
  usage: [
    "usage: deno task eval --ckpt PATH [--config FILE] [--device auto|host|cuda|cuda-sim] [--output DIR] [--gpus N]",
    "                      [--section.key value ...]   e.g. --data.test_chunks 2 --data.test_crops 3",
  ].join("\n"),
});
const ckpt = opts.values.ckpt;
if (!ckpt) {
  console.error(
    "deno task eval needs --ckpt PATH (a fine-tuning checkpoint folder, safetensors or .pth file)",
  );
  Deno.exit(2);
}
const cfg = await configOrExit(loadFinetuneConfig(opts.configPath, opts.overrides));
await launchOnGpus(opts.gpus, new URL(import.meta.url).pathname, Deno.args);

try {
  const r = await evaluateCheckpoint(cfg, ckpt, { print: true });
  if (r) console.log(`per video: ${r.perVideo}\nsummary: ${r.summaryFile}`);
} catch (e) {
  console.error(`evaluation failed: ${(e as Error).message}`);
  Deno.exit(1);
}
