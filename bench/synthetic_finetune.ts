/**
 * `deno task bench:synthetic [--output DIR] [--epochs N] [--pretrain-epochs N]`: does VideoMAE pretraining
 * help? Pretrains the small default model (configs/default.yaml) on unlabelled generated clips, then
 * fine-tunes it (configs/finetune_default.yaml: V-SWIFT's recipe on a labelled split of 8 motion classes)
 * from the pretrained encoder and from scratch, and prints a Markdown table of validation and multi-view
 * test accuracy for both. Everything lands under the output folder (runs/bench_synthetic); a finished
 * stage is not run again, so an interrupted benchmark resumes where it stopped.
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../lib/train/config.ts";
import { loadFinetuneConfig } from "../lib/train/finetune_config.ts";
import { finetune, type FinetuneSummary } from "../lib/train/finetune_loop.ts";
import { pretrain } from "../lib/train/pretrain_loop.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const { values } = parseArgs({
  args: Deno.args,
  options: {
    output: { type: "string", default: "runs/bench_synthetic" },
    epochs: { type: "string" },
    "pretrain-epochs": { type: "string" },
    device: { type: "string", default: "auto" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "usage: deno task bench:synthetic [--output DIR] [--epochs N] [--pretrain-epochs N] [--device D]",
  );
  Deno.exit(0);
}
const out = values.output.replace(/\/+$/, "");
const started = performance.now();
const minutes = (t0: number) => ((performance.now() - t0) / 60000).toFixed(1);

// 1. Pretraining on unlabelled clips (the labels of the generated list are never read).
const preArgs = [
  "--train.output",
  `${out}/pretrain`,
  "--train.device",
  values.device,
  "--train.vis_every",
  "0",
];
if (values["pretrain-epochs"]) preArgs.push("--train.epochs", values["pretrain-epochs"]);
const preCfg = await loadConfig(`${ROOT}configs/default.yaml`, preArgs);
console.log(`== pretraining: configs/default.yaml -> ${out}/pretrain`);
const t0 = performance.now();
const pre = pretrain(preCfg, { print: true });
let pretrained: string | undefined;
let preSteps = 0;
let ranSteps = 0;
for (;;) {
  const r = await pre.next();
  if (r.done) {
    pretrained = r.value.lastCheckpoint;
    preSteps = r.value.steps;
    break;
  }
  ranSteps++;
}
if (!pretrained) throw new Error("Pretraining saved no checkpoint");
const preMinutes = minutes(t0);
console.log(`pretrained encoder: ${pretrained} (${preMinutes} min)`);

// 2. Fine-tuning from the pretrained encoder and from scratch, on the same labelled clips.
interface Row {
  init: string;
  summary: FinetuneSummary;
  minutes: string;
}
const rows: Row[] = [];
for (const init of ["pretrained", "scratch"] as const) {
  const args = [
    ...["--train.output", `${out}/finetune_${init}`, "--data.shapes_dir", `${out}/shapes`],
    ...["--train.device", values.device],
    ...(init === "pretrained" ? ["--train.finetune", pretrained] : ["--train.finetune", ""]),
    ...(values.epochs ? ["--train.epochs", values.epochs] : []),
  ];
  const cfg = await loadFinetuneConfig(`${ROOT}configs/finetune_default.yaml`, args);
  console.log(`== fine-tuning from ${init}: configs/finetune_default.yaml -> ${cfg.train.output}`);
  const t1 = performance.now();
  const run = finetune(cfg, { print: true });
  for (;;) {
    const r = await run.next();
    if (r.done) {
      rows.push({ init, summary: r.value, minutes: minutes(t1) });
      break;
    }
  }
}

// 3. The table. Validation figures come from the runs' logs, which also hold the epochs of a run that
// was resumed (the loop's summary only has the epochs of its own invocation).
async function valLog(dir: string): Promise<{ epoch: number; top1: number }[]> {
  const byEpoch = new Map<number, number>();
  for (const line of (await Deno.readTextFile(`${dir}/metrics.jsonl`)).split("\n")) {
    if (!line.includes('"val"')) continue;
    const rec = JSON.parse(line);
    if (rec.val && Number.isInteger(rec.epoch)) byEpoch.set(rec.epoch, rec.val.top1);
  }
  return [...byEpoch].sort((a, b) => a[0] - b[0]).map(([epoch, top1]) => ({ epoch, top1 }));
}
const vals = new Map<string, { epoch: number; top1: number }[]>();
for (const r of rows) vals.set(r.init, await valLog(r.summary.output));
const pct = (v?: number) => (v === undefined ? "-" : `${v.toFixed(1)}%`);
const cfg = await loadFinetuneConfig(`${ROOT}configs/finetune_default.yaml`);
const lines = [
  `| initialisation | val top-1 (last epoch) | best val top-1 | test top-1 (${cfg.data.test_chunks} x ${cfg.data.test_crops} views) | test top-5 | fine-tuning time |`,
  "| --- | --- | --- | --- | --- | --- |",
  ...rows.map((r) => {
    const v = vals.get(r.init)!;
    const best = v.length ? Math.max(...v.map((x) => x.top1)) : undefined;
    return `| ${r.init === "pretrained" ? "pretrained (VideoMAE)" : "from scratch"} | ${
      pct(v.at(-1)?.top1)
    } | ${pct(best)} | ${pct(r.summary.test?.top1)} | ${pct(r.summary.test?.top5)} | ${r.minutes} min |`;
  }),
];
const videos = rows[0].summary.test?.videos ?? 0;
const preNote = ranSteps > 0
  ? `pretraining ${preSteps} steps in ${preMinutes} min`
  : `pretraining reused from an earlier run (${preSteps} steps)`;
const note = `${cfg.data.shapes_train_videos} labelled training clips, ${videos} held-out clips, 8 classes ` +
  `(chance 12.5%); ${preNote}; total ${minutes(started)} min.`;
const text = `${lines.join("\n")}\n\n${note}\n`;
await Deno.writeTextFile(`${out}/results.md`, text);
await Deno.writeTextFile(
  `${out}/results.json`,
  JSON.stringify(
    { pretrained, rows: rows.map((r) => ({ init: r.init, minutes: r.minutes, ...r.summary })) },
    null,
    1,
  ),
);
console.log(`\n${text}\n(written to ${out}/results.md)`);
