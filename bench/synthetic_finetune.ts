/**
 * `deno task bench:synthetic [--output DIR] [--epochs N] [--pretrain-epochs N]`: does VideoMAE pretraining
 * help? Generates the labelled motion clips of configs/finetune_default.yaml, pretrains the small default
 * model (configs/default.yaml) on the training clips with their labels unused (VideoMAE's setting:
 * pretrain and fine-tune on the same videos), then fine-tunes from the pretrained encoder and from
 * scratch with the same recipe and data, and prints a Markdown table of training loss, validation and
 * multi-view test accuracy for both. Everything lands under the output folder (runs/bench_synthetic); a
 * finished stage is not run again, so an interrupted benchmark resumes where it stopped.
 */
import { loadConfig } from "../lib/train/pretrain/config.ts";
import { loadFinetuneConfig } from "../lib/train/finetune/config.ts";
import { resolveData } from "../lib/train/finetune/data.ts";
import { finetune, type FinetuneSummary } from "../lib/train/finetune/loop.ts";
import { pretrain } from "../lib/train/pretrain/loop.ts";
import { parseFlags } from "../lib/task_cli.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const USAGE =
  "usage: deno task bench:synthetic [--output DIR] [--epochs N] [--pretrain-epochs N] [--device D]";
const { values } = parseFlags("deno task bench:synthetic", USAGE, {
  options: {
    output: { type: "string", default: "runs/bench_synthetic" },
    epochs: { type: "string" },
    "pretrain-epochs": { type: "string", default: "2" },
    device: { type: "string", default: "auto" },
    help: { type: "boolean", short: "h", default: false },
  },
});
const out = values.output.replace(/\/+$/, "");
const started = performance.now();
const minutes = (t0: number) => ((performance.now() - t0) / 60000).toFixed(1);

// 1. The labelled clips (train split and held-out split), then pretraining on the training clips; the
// pretraining loader never reads the labels of the list.
const shapes = `${out}/shapes`;
const ftArgs = (init: string) => [
  ...["--train.output", `${out}/finetune_${init}`, "--data.shapes_dir", shapes],
  ...["--train.device", values.device],
  ...(values.epochs ? ["--train.epochs", values.epochs] : []),
];
const splits = await resolveData(
  await loadFinetuneConfig(`${ROOT}configs/finetune_default.yaml`, ftArgs("scratch")),
  undefined,
  console.log,
);
const preArgs = [
  ...["--train.output", `${out}/pretrain`, "--train.device", values.device, "--train.vis_every", "0"],
  ...["--data.source", "list", "--data.list", splits.train.list, "--data.root", splits.train.root],
  ...["--train.epochs", values["pretrain-epochs"], "--optim.warmup_epochs", "0.25"],
];
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
  const args = [...ftArgs(init), "--train.finetune", init === "pretrained" ? pretrained : ""];
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
/**
 * From a run's metrics.jsonl: validation top-1 per epoch, and the mean training loss of the logged steps
 * of the last epoch.
 */
async function readRunLog(dir: string): Promise<{ vals: { epoch: number; top1: number }[]; loss?: number }> {
  const byEpoch = new Map<number, number>();
  const steps: { epoch: number; loss: number }[] = [];
  for (const line of (await Deno.readTextFile(`${dir}/metrics.jsonl`)).split("\n")) {
    if (!line.trim()) continue;
    const rec = JSON.parse(line);
    if (!Number.isInteger(rec.epoch)) continue;
    if (rec.val) byEpoch.set(rec.epoch, rec.val.top1);
    else if (Number.isFinite(rec.loss)) steps.push(rec);
  }
  const tail = steps.filter((r) => r.epoch === steps.at(-1)?.epoch);
  return {
    vals: [...byEpoch].sort((x, y) => x[0] - y[0]).map(([epoch, top1]) => ({ epoch, top1 })),
    loss: tail.length ? tail.reduce((sum, r) => sum + r.loss, 0) / tail.length : undefined,
  };
}
const logs = new Map<string, Awaited<ReturnType<typeof readRunLog>>>();
for (const r of rows) logs.set(r.init, await readRunLog(r.summary.output));
const pct = (v?: number) => (v === undefined ? "-" : `${v.toFixed(1)}%`);
const cfg = await loadFinetuneConfig(`${ROOT}configs/finetune_default.yaml`);
const lines = [
  `| initialisation | train loss (last epoch) | val top-1 (last epoch) | best val top-1 | test top-1 (${cfg.data.test_chunks} x ${cfg.data.test_crops} views) | test top-5 | fine-tuning time |`,
  "| --- | --- | --- | --- | --- | --- | --- |",
  ...rows.map((r) => {
    const { vals: v, loss } = logs.get(r.init)!;
    const best = v.length ? Math.max(...v.map((x) => x.top1)) : undefined;
    const cells = [
      r.init === "pretrained" ? "pretrained (VideoMAE)" : "from scratch",
      loss?.toFixed(3) ?? "-",
      pct(v.at(-1)?.top1),
      pct(best),
      pct(r.summary.test?.top1),
      pct(r.summary.test?.top5),
      `${r.minutes} min`,
    ];
    return `| ${cells.join(" | ")} |`;
  }),
];
const videos = rows[0].summary.test?.videos ?? 0;
const preNote = ranSteps > 0
  ? `pretraining ${preSteps} steps in ${preMinutes} min`
  : `pretraining reused from an earlier run (${preSteps} steps)`;
const note =
  `${cfg.data.shapes_train_videos} labelled training clips (also the pretraining clips), ${videos} ` +
  `held-out clips, 8 classes (chance 12.5%, uniform loss ${Math.log(8).toFixed(3)}); ${preNote}; ` +
  `total ${minutes(started)} min.`;
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
