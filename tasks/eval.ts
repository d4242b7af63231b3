/**
 * `deno task eval --ckpt PATH [--config FILE] [--section.key value ...]`: the multi-view test alone
 * (S temporal x K spatial views per video, softmax averaged per video) of a fine-tuned classifier: a
 * checkpoint folder of `deno task finetune`, a safetensors file, or a V-SWIFT / VideoMAE .pth. Writes
 * test_per_video.csv and test_summary.json under <train.output>/test. The config gives the model size,
 * the classes and the test list (configs/finetune_default.yaml by default). --gpus N splits the views over
 * N processes of this machine (every view once); rank 0 merges them.
 */
import { launchLocal } from "../lib/dist/launch.ts";
import { loadFinetuneConfig } from "../lib/train/finetune_config.ts";
import { evaluateCheckpoint } from "../lib/train/finetune_eval.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const args = [...Deno.args];
let configPath = `${ROOT}configs/finetune_default.yaml`;
let ckpt = "";
let gpus = 0;
const overrides: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const [flag, inline] = a.includes("=")
    ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
    : [a, undefined];
  const value = () => inline ?? args[++i];
  if (flag === "--config") configPath = value();
  else if (flag === "--ckpt") ckpt = value();
  else if (flag === "--gpus") gpus = Number(value());
  else if (flag === "--device") overrides.push("--train.device", value());
  else if (flag === "--output") overrides.push("--train.output", value());
  else if (flag === "--help" || flag === "-h") {
    console.log(
      "usage: deno task eval --ckpt PATH [--config FILE] [--device auto|host|cuda] [--output DIR] [--gpus N]",
    );
    console.log(
      "                      [--section.key value ...]   e.g. --data.test_chunks 2 --data.test_crops 3",
    );
    Deno.exit(0);
  } else overrides.push(a);
}
if (!ckpt) {
  console.error(
    "deno task eval needs --ckpt PATH (a fine-tuning checkpoint folder, safetensors or .pth file)",
  );
  Deno.exit(2);
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
try {
  const r = await evaluateCheckpoint(cfg, ckpt, { print: true });
  if (r) console.log(`per video: ${r.perVideo}\nsummary: ${r.summaryFile}`);
} catch (e) {
  console.error(`evaluation failed: ${(e as Error).message}`);
  Deno.exit(1);
}
