/**
 * `deno task bench:synthetic`: does VideoMAE pretraining make a data-efficient learner here? The regime
 * where it should: many unlabelled clips, few labels.
 *
 * 1. Data: an unlabelled pool of varied moving-shape clips (5 shape kinds, textures, 3 backgrounds, a
 *    wider range of speeds and sizes; --pool-style plain draws it like the labelled clips), and the labelled motion clips of the default fine-tuning (8
 *    classes) with a held-out split from another seed.
 * 2. Pretraining on the pool alone (its labels are never read), once.
 * 3. For each seed and label budget (a class-balanced share of the labelled clips, drawn by the seed):
 *    fine-tuning from the pretrained encoder and from scratch with the same recipe, steps and data, and a
 *    linear probe (logistic regression on the frozen, pooled encoder features) of the pretrained encoder
 *    and of a randomly initialised one. Everything is scored on the same held-out clips; a fine-tuning run
 *    is scored at its last step (no best-epoch picking).
 *
 * The table (mean and spread over seeds) goes to `<output>/results.md` with the date, commit, machine and
 * command; each finished stage is kept, so an interrupted benchmark resumes where it stopped.
 */
import { ensureSyntheticDataset, type SyntheticStyle } from "../lib/data/synthetic.ts";
import { formatListLine, readList } from "../lib/data/list_file.ts";
import { loadConfig } from "../lib/train/pretrain/config.ts";
import { type FinetuneConfig, loadFinetuneConfig } from "../lib/train/finetune/config.ts";
import { extractFeatures, type VideoFeatures } from "../lib/train/finetune/features.ts";
import { finetune } from "../lib/train/finetune/loop.ts";
import { fitLinearProbe, probeAccuracy } from "../lib/train/linear_probe.ts";
import { pretrain } from "../lib/train/pretrain/loop.ts";
import { listCheckpoints } from "../lib/train/checkpoint.ts";
import { parseFlags } from "../lib/task_cli.ts";
import { Rng } from "../lib/rng.ts";
import { commitId } from "./timing.ts";
import { type DeviceChoice, openNative } from "../lib/ffi/native.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const USAGE =
  "usage: deno task bench:synthetic [--output DIR] [--seeds N] [--budgets P,P,...] [--pool N] [--labelled N] " +
  "[--held-out N] [--pool-style varied|plain] [--pretrain-steps N] [--mask-ratio R] [--finetune-epochs N] " +
  "[--device D]";
const { values } = parseFlags("deno task bench:synthetic", USAGE, {
  options: {
    // Default: runs/bench_synthetic, or runs/bench_synthetic_plain with --pool-style plain (a run keeps its
    // pretraining, so the two pools must not share a folder).
    output: { type: "string", default: "" },
    seeds: { type: "string", default: "3" },
    budgets: { type: "string", default: "1,10,100" },
    pool: { type: "string", default: "4096" },
    "pool-style": { type: "string", default: "varied" },
    labelled: { type: "string", default: "1024" },
    "held-out": { type: "string", default: "256" },
    "pretrain-steps": { type: "string", default: "1600" },
    "mask-ratio": { type: "string", default: "0.75" },
    "finetune-epochs": { type: "string", default: "6" },
    device: { type: "string", default: "auto" },
    help: { type: "boolean", short: "h", default: false },
  },
});

/** A bad flag value: one line on stderr and exit status 2, as the tasks do. */
function badFlag(message: string): never {
  console.error(`bench:synthetic: ${message} (see --help)`);
  Deno.exit(2);
}
function positiveInt(name: string, text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1) badFlag(`--${name} must be a whole number >= 1, got ${text}`);
  return v;
}
const seeds = positiveInt("seeds", values.seeds);
const poolVideos = positiveInt("pool", values.pool);
const pretrainSteps = positiveInt("pretrain-steps", values["pretrain-steps"]);
const finetuneEpochs = positiveInt("finetune-epochs", values["finetune-epochs"]);
const poolStyle = values["pool-style"];
if (poolStyle !== "varied" && poolStyle !== "plain") {
  badFlag(`--pool-style must be varied or plain, got ${poolStyle}`);
}
const maskRatio = Number(values["mask-ratio"]);
if (!(maskRatio > 0 && maskRatio < 1)) {
  badFlag(`--mask-ratio must be in (0, 1), got ${values["mask-ratio"]}`);
}
const budgets = values.budgets.split(",").map((b) => {
  const v = Number(b);
  if (!(v > 0 && v <= 100)) badFlag(`--budgets takes percentages in (0, 100], got ${b}`);
  return v;
});
const out = (values.output || (poolStyle === "plain" ? "runs/bench_synthetic_plain" : "runs/bench_synthetic"))
  .replace(/\/+$/, "");
const started = performance.now();
const minutes = (t0: number) => (performance.now() - t0) / 60000;

// The geometry of every stage: 32 x 32 crops of 40 px clips, 4 frames (TSN segments over 32 frames when
// fine-tuning; stride 8 over the same 32 frames when pretraining), the small model of the defaults.
const LABELLED = positiveInt("labelled", values.labelled);
const HELD_OUT = positiveInt("held-out", values["held-out"]);
const CLASSES = 8;
const CLIP = { size: 40, frames: 32, encoding: "batch" } as const;
const shapes = `${out}/shapes`;

// 1. Data.
console.log(
  `== data: ${poolVideos} unlabelled ${poolStyle} clips, ${LABELLED} labelled, ${HELD_OUT} held out`,
);
let t0 = performance.now();
/** One generated dataset under `shapes`, made once (an existing one with the same options is kept). */
const dataset = (what: string, sub: string, videos: number, seed: number, style: SyntheticStyle) =>
  ensureSyntheticDataset({
    ...CLIP,
    dir: `${shapes}/${sub}`,
    videos,
    classes: CLASSES,
    seed,
    style,
    onProgress: (done, total) => {
      if (done % 256 === 0 || done === total) console.log(`  ${what}: ${done}/${total} clips`);
    },
  });
// The held-out clips come from another seed than the labelled ones: other shapes, colours and speeds.
const pool = await dataset(
  "pool",
  poolStyle === "varied" ? "pool" : "pool_plain",
  poolVideos,
  777,
  poolStyle,
);
const labelled = await dataset("labelled", "train", LABELLED, 0, "plain");
const heldOut = await dataset("held out", "eval", HELD_OUT, 1000, "plain");
const dataMinutes = minutes(t0);

// `path label` rows with paths relative to `shapes`, the root every list below is read from.
const rowsOf = async (list: string, sub: string) =>
  (await readList(list, sub)).map((e) => ({ path: e.path, label: e.label }));
const listText = (rows: { path: string; label: number }[]) =>
  rows.map((r) => `${formatListLine("path-label", r)}\n`).join("");
const labelledRows = await rowsOf(labelled.list, "train");
const heldOutList = `${shapes}/held_out.txt`;
await Deno.writeTextFile(
  heldOutList,
  listText(await rowsOf(heldOut.list, "eval")),
);

// 2. Pretraining on the pool.
const preOut = `${out}/pretrain`;
const preArgs = [
  ...["--train.output", preOut, "--train.device", values.device, "--train.vis_every", "0"],
  ...["--data.source", "list", "--data.list", pool.list, "--data.root", pool.dataRoot],
  ...[
    "--model.input_size",
    "32",
    "--model.frames",
    "4",
    "--data.sampling_rate",
    "8",
    "--data.short_side",
    "36",
  ],
  ...["--data.repeats", "1", "--train.batch_size", "32", "--optim.lr", "1e-3"],
  ...["--train.steps", String(pretrainSteps), "--optim.warmup_steps", String(Math.ceil(pretrainSteps / 20))],
  ...["--mask.ratio", String(maskRatio), "--train.log_every", "50", "--train.save_every", "400"],
];
const preCfg = await loadConfig(`${ROOT}configs/default.yaml`, preArgs);
console.log(`== pretraining: configs/default.yaml on the pool, ${pretrainSteps} steps -> ${preOut}`);
t0 = performance.now();
let preLoss: { first?: number; last?: number } = {};
const pre = pretrain(preCfg, { print: true });
// Steps run by this invocation: none when an earlier one finished the pretraining.
let preStepsRun = 0;
for await (const { loss } of pre) {
  preStepsRun++;
  if (Number.isFinite(loss)) {
    preLoss.first ??= loss;
    preLoss.last = loss;
  }
}
const pretrainMinutes = minutes(t0);
const preCkpt = listCheckpoints(`${preOut}/checkpoints`).at(-1);
if (!preCkpt || preCkpt.step < pretrainSteps) {
  throw new Error(
    `Pretraining stopped before step ${pretrainSteps} (last checkpoint ${preCkpt?.path ?? "none"})`,
  );
}
const pretrained = preCkpt.path;
if (preLoss.first === undefined) preLoss = await lossesFromLog(`${preOut}/metrics.jsonl`);
console.log(`pretrained encoder: ${pretrained}`);

/** The first and last logged training loss of a run's metrics.jsonl (for a resumed benchmark). */
async function lossesFromLog(path: string): Promise<{ first?: number; last?: number }> {
  const losses = (await Deno.readTextFile(path)).split("\n").filter((l) => l.trim()).map((l) =>
    JSON.parse(l).loss
  )
    .filter(Number.isFinite);
  return { first: losses[0], last: losses.at(-1) };
}

// 3. Budgets and seeds.
/** A class-balanced draw of `percent` of the labelled clips (at least one per class). */
function subset(percent: number, seed: number): { path: string; label: number }[] {
  const perClass = Math.max(1, Math.round((percent / 100) * LABELLED / CLASSES));
  const rng = new Rng(9000 + seed);
  const picked: { path: string; label: number }[] = [];
  for (let c = 0; c < CLASSES; c++) {
    const rows = labelledRows.filter((r) => r.label === c);
    const order = rng.permutation(rows.length);
    picked.push(...Array.from(order.subarray(0, perClass), (i) => rows[i]));
  }
  return picked;
}

function finetuneArgs(list: string, runOut: string, seed: number, init: string): string[] {
  return [
    ...["--train.output", runOut, "--train.device", values.device, "--train.seed", String(seed)],
    ...[
      "--data.source",
      "list",
      "--data.train_list",
      list,
      "--data.val_list",
      heldOutList,
      "--data.root",
      shapes,
    ],
    ...["--data.test_list", heldOutList, "--train.test", "false", "--train.epochs", String(finetuneEpochs)],
    ...["--model.input_size", "32", "--data.short_side", "36", "--data.eval_short_side", "32"],
    ...["--model.num_classes", String(CLASSES), "--train.finetune", init, "--train.log_every", "16"],
  ];
}

interface Cell {
  budget: number;
  clips: number;
  seed: number;
  method: "finetune" | "probe";
  init: "pretrained" | "scratch";
  top1: number;
  minutes: number;
}
const cellsPath = `${out}/cells.jsonl`;
const cells: Cell[] = [];
try {
  for (const l of (await Deno.readTextFile(cellsPath)).split("\n")) if (l.trim()) cells.push(JSON.parse(l));
} catch {
  // A fresh benchmark.
}
const have = (c: Omit<Cell, "top1" | "minutes" | "clips">) =>
  cells.some((x) => x.budget === c.budget && x.seed === c.seed && x.method === c.method && x.init === c.init);
async function record(c: Cell): Promise<void> {
  cells.push(c);
  await Deno.writeTextFile(cellsPath, `${JSON.stringify(c)}\n`, { append: true });
  console.log(
    `  ${c.method} from ${c.init}, ${c.budget}% (${c.clips} clips), seed ${c.seed}: held-out top-1 ${
      c.top1.toFixed(1)
    }% (${c.minutes.toFixed(1)} min)`,
  );
}

// Features of the held-out clips and of all labelled clips, per encoder; a budget's probe takes its rows.
const allList = `${shapes}/labelled_all.txt`;
await Deno.writeTextFile(allList, listText(labelledRows));
await Deno.mkdir(`${out}/probe_features`, { recursive: true });
const featureCache = new Map<string, { train: VideoFeatures; held: VideoFeatures }>();
async function features(init: "pretrained" | "scratch", seed: number, cfg: FinetuneConfig) {
  const key = init === "pretrained" ? "pretrained" : `scratch-${seed}`;
  let f = featureCache.get(key);
  if (!f) {
    const ckpt = init === "pretrained" ? pretrained : undefined;
    const [train, held] = await extractFeatures(
      cfg,
      [{ list: allList, root: shapes }, { list: heldOutList, root: shapes }],
      ckpt,
    );
    f = { train, held };
    featureCache.set(key, f);
  }
  return f;
}

const indexOf = new Map(labelledRows.map((r, i) => [r.path, i]));
await Deno.mkdir(`${out}/lists`, { recursive: true });
for (let seed = 0; seed < seeds; seed++) {
  for (const budget of budgets) {
    const rows = subset(budget, seed);
    // Every budget runs the same number of steps: the subset repeated to about the size of the whole set.
    const copies = Math.max(1, Math.round(LABELLED / rows.length));
    const list = `${out}/lists/budget${budget}_seed${seed}.txt`;
    await Deno.writeTextFile(list, listText(rows).repeat(copies));
    for (const init of ["pretrained", "scratch"] as const) {
      if (!have({ budget, seed, method: "probe", init })) {
        t0 = performance.now();
        const cfg = await loadFinetuneConfig(
          `${ROOT}configs/finetune_default.yaml`,
          finetuneArgs(list, `${out}/probe_features`, seed, ""),
        );
        const f = await features(init, seed, cfg);
        const dim = f.train.dim;
        const x = new Float32Array(rows.length * dim);
        const y = new Int32Array(rows.length);
        rows.forEach((r, i) => {
          const v = indexOf.get(r.path)!;
          x.set(f.train.features.subarray(v * dim, (v + 1) * dim), i * dim);
          y[i] = f.train.labels[v];
        });
        const probe = fitLinearProbe(x, y, dim, { classes: CLASSES, l2: 1e-2 });
        const top1 = probeAccuracy(probe, f.held.features, f.held.labels);
        await record({ budget, clips: rows.length, seed, method: "probe", init, top1, minutes: minutes(t0) });
      }
      if (!have({ budget, seed, method: "finetune", init })) {
        t0 = performance.now();
        const runOut = `${out}/finetune/budget${budget}_seed${seed}_${init}`;
        await Deno.remove(runOut, { recursive: true }).catch(() => {});
        const cfg = await loadFinetuneConfig(
          `${ROOT}configs/finetune_default.yaml`,
          finetuneArgs(list, runOut, seed, init === "pretrained" ? pretrained : ""),
        );
        console.log(`== fine-tuning from ${init}, ${budget}% of the labels, seed ${seed} -> ${runOut}`);
        const run = finetune(cfg, { print: false });
        let r = await run.next();
        while (!r.done) r = await run.next();
        const last = r.value.val.at(-1);
        if (!last) throw new Error(`${runOut}: the run ended without a validation`);
        await record({
          budget,
          clips: rows.length,
          seed,
          method: "finetune",
          init,
          top1: last.top1,
          minutes: minutes(t0),
        });
      }
    }
  }
}

// 4. The table: mean and sample standard deviation over seeds.
function stats(xs: number[]): string {
  if (xs.length === 0) return "-";
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  // One seed has no spread to show.
  if (xs.length === 1) return mean.toFixed(1);
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
  return `${mean.toFixed(1)} ± ${sd.toFixed(1)}`;
}
const pick = (budget: number, method: Cell["method"], init: Cell["init"]) =>
  cells.filter((c) => c.budget === budget && c.method === method && c.init === init && c.seed < seeds)
    .map((c) => c.top1);
// The device the runs used, as the training log names it (CPU model, threads, memory, BLAS core).
const native = await openNative({
  device: values.device as DeviceChoice,
});
const machine = native.deviceName();
const ftMinutes = cells.filter((c) => c.method === "finetune").reduce((a, c) => a + c.minutes, 0);
const table = [
  "| labels | fine-tune, scratch | fine-tune, pretrained | linear probe, random encoder | linear probe, pretrained |",
  "| --- | --- | --- | --- | --- |",
  ...budgets.map((b) => {
    const clips = cells.find((c) => c.budget === b)?.clips ?? 0;
    return `| ${b}% (${clips} clips) | ${stats(pick(b, "finetune", "scratch"))} | ${
      stats(pick(b, "finetune", "pretrained"))
    } | ${stats(pick(b, "probe", "scratch"))} | ${stats(pick(b, "probe", "pretrained"))} |`;
  }),
];
const command = `deno task bench:synthetic ${Deno.args.join(" ")}`.trim();
const text = [
  `Held-out top-1 (%) on ${HELD_OUT} clips of ${CLASSES} motion classes (chance 12.5%), ${
    seeds === 1 ? "one seed" : `mean ± standard deviation over ${seeds} seeds`
  } (the seed draws the labelled subset, the initialisation and the data order).`,
  "",
  ...table,
  "",
  `- date ${new Date().toISOString().slice(0, 10)}, commit ${await commitId()}, ${machine}; \`${command}\``,
  `- pretraining: ${poolVideos} unlabelled ${poolStyle} clips, ${pretrainSteps} steps of 32 clips, mask ${maskRatio}, loss ${
    preLoss.first?.toFixed(3) ?? "?"
  } -> ${preLoss.last?.toFixed(3) ?? "?"}${
    preStepsRun > 0 ? ` in ${pretrainMinutes.toFixed(1)} min` : " (reused)"
  }`,
  `- fine-tuning: configs/finetune_default.yaml at 32 px, ${finetuneEpochs} epochs of about ${LABELLED} clips ` +
  `whatever the budget (a small subset is repeated), scored at the last epoch; ${
    ftMinutes.toFixed(1)
  } min in all`,
  `- linear probe: logistic regression (L2 1e-2) on the standardised fc_norm features of the centre view`,
  `- data ${dataMinutes.toFixed(1)} min; this invocation ${minutes(started).toFixed(1)} min`,
  "",
].join("\n");
await Deno.writeTextFile(`${out}/results.md`, text);
console.log(`\n${text}\n(written to ${out}/results.md; every run in ${cellsPath})`);
