/**
 * The fine-tuning loop end to end on generated clips: a tiny model learns the motion classes of its
 * training clips well above chance, the multi-view test writes per-video results, `deno task eval`'s
 * path reproduces the test from the saved checkpoint, the linear probe's features are what the head reads,
 * and an interrupted run resumes to the same weights.
 */
import assert from "node:assert/strict";
import { readList } from "../lib/data/list_file.ts";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { listCheckpoints } from "../lib/train/checkpoint.ts";
import {
  applyFinetuneOverrides,
  defaultFinetuneConfig,
  type FinetuneConfig,
  loadFinetuneConfig,
  validateFinetuneConfig,
} from "../lib/train/finetune/config.ts";
import { evaluateCheckpoint } from "../lib/train/finetune/eval.ts";
import { extractFeatures } from "../lib/train/finetune/features.ts";
import { finetune, type FinetuneStepMetrics, type FinetuneSummary } from "../lib/train/finetune/loop.ts";
import { finalWeights, scratchDir } from "./helpers.ts";

Deno.test("finetune config: V-SWIFT's defaults, YAML and overrides, errors that name the key", async () => {
  const d = defaultFinetuneConfig();
  assert.deepEqual(
    [d.optim.betas, d.optim.layer_decay, d.mixup.mixup, d.mixup.cutmix, d.mixup.smoothing, d.data.reprob],
    [[0.9, 0.999], 0.75, 0.8, 1, 0.1, 0.25],
  );
  assert.equal(d.data.rand_augment, "rand-m7-n4-mstd0.5-inc1");
  const root = new URL("../configs/", import.meta.url).pathname;
  const ssv2 = await loadFinetuneConfig(`${root}ssv2_finetune_vit_b16.yaml`);
  assert.deepEqual(
    [
      ssv2.model.size,
      ssv2.model.num_classes,
      ssv2.train.batch_size,
      ssv2.optim.min_lr,
      ssv2.data.test_chunks,
    ],
    ["base", 174, 128, 1e-5, 2],
  );
  const small = await loadFinetuneConfig(`${root}finetune_default.yaml`, ["--optim.lr=5e-4", "--data.flip"]);
  assert.deepEqual([small.optim.lr, small.data.flip, small.data.source], [5e-4, true, "shapes"]);
  // Pooling: V-SWIFT's mean by default and in its configs; the small default that has to learn pools with max.
  assert.deepEqual([d.model.pool, ssv2.model.pool, small.model.pool, small.data.repeats], [
    "mean",
    "mean",
    "max",
    1,
  ]);
  await assert.rejects(
    loadFinetuneConfig(`${root}finetune_default.yaml`, ["--model.pool", "attentive"]),
    /model.pool/,
  );
  assert.deepEqual(d.data.crop_scale, [0.08, 1]);
  for (const v of ["0.3,1", "[0.3, 1]"]) {
    const c = await loadFinetuneConfig(`${root}finetune_default.yaml`, ["--data.crop_scale", v]);
    assert.deepEqual(c.data.crop_scale, [0.3, 1]);
  }
  await assert.rejects(
    loadFinetuneConfig(`${root}finetune_default.yaml`, ["--data.crop_scale", "0,1"]),
    /Config data.crop_scale must be a list of 2 numbers in \(0, 1\] \(on the command line: 0.4,1\), got "0,1"/,
  );
  await assert.rejects(
    loadFinetuneConfig(`${root}finetune_default.yaml`, ["--data.crop_scale", "0.9,0.5"]),
    /data.crop_scale \[0.9, 0.5\] must be \[min, max\] with min <= max/,
  );
  await assert.rejects(
    loadFinetuneConfig(undefined, ["--mixup.alpha", "1"]),
    /Unknown config key "mixup.alpha" \(command line\); mixup has mixup, cutmix/,
  );
  await assert.rejects(
    loadFinetuneConfig(undefined, ["--data.train_list", "x", "--train.batch_size", "7"]),
    /Mixup and CutMix need an even train.batch_size, got 7/,
  );
  await assert.rejects(
    loadFinetuneConfig(undefined, ["--data.dataset", "k800", "--data.train_list", "x"]),
    /Unknown dataset "k800"/,
  );
  await assert.rejects(loadFinetuneConfig(undefined), /No data: set data.train_list/);
  await assert.rejects(
    loadFinetuneConfig(undefined, ["--data.train_list", "x", "--model.num_classes", "400"]),
    /model.num_classes 400 does not match data.dataset SSV2 \(174 classes\)/,
  );
});

const dataDir = await scratchDir("vswift-finetune-");
// Four motion classes (left, right, up, down), four videos each.
const ds = await ensureSyntheticDataset({
  dir: `${dataDir}/shapes`,
  videos: 16,
  classes: 4,
  size: 40,
  frames: 16,
  seed: 2,
});

/** The easy setting: the tiny model, plain crops, no mixing, evaluated on its training clips. */
function tinyConfig(output: string, overrides: string[] = []): FinetuneConfig {
  const cfg = defaultFinetuneConfig();
  applyFinetuneOverrides(cfg, [
    ...["--model.size", "tiny", "--model.input_size", "32", "--model.frames", "4", "--model.dtype", "f32"],
    ...["--model.drop_path", "0", "--model.num_classes", "4", "--data.dataset", "shapes"],
    ...[
      "--data.train_list",
      ds.list,
      "--data.val_list",
      ds.list,
      "--data.test_list",
      ds.list,
      "--data.root",
      ds.dataRoot,
    ],
    ...[
      "--data.short_side",
      "36",
      "--data.eval_short_side",
      "32",
      "--data.repeats",
      "2",
      "--data.workers",
      "2",
    ],
    ...["--data.rand_augment", "", "--data.reprob", "0", "--data.test_crops", "1"],
    ...["--mixup.prob", "0", "--mixup.smoothing", "0", "--optim.lr", "4e-3", "--optim.warmup_steps", "4"],
    ...["--optim.layer_decay", "1", "--train.batch_size", "8", "--train.epochs", "12", "--train.seed", "1"],
    ...[
      "--train.output",
      output,
      "--train.device",
      "host",
      "--train.tensorboard",
      "false",
      "--train.log_every",
      "8",
    ],
    ...overrides,
  ]);
  validateFinetuneConfig(cfg);
  return cfg;
}

async function run(cfg: FinetuneConfig, signal?: AbortSignal, stopAfter?: () => void) {
  const steps: FinetuneStepMetrics[] = [];
  const it = finetune(cfg, { signal });
  for (;;) {
    const r = await it.next();
    if (r.done) return { steps, summary: r.value as FinetuneSummary };
    steps.push(r.value);
    if (steps.length === 3) stopAfter?.();
  }
}

/** The tiny fine-tune of the first test, run once (validated at each epoch end). */
let tiny: Promise<{ out: string; steps: FinetuneStepMetrics[]; summary: FinetuneSummary }> | undefined;
function tinyRun() {
  const out = `${dataDir}/run`;
  return tiny ??= run(tinyConfig(out)).then((r) => ({ out, ...r }));
}

Deno.test("a tiny fine-tune learns the motion classes of its clips well above chance; eval --ckpt agrees", async () => {
  const { out, steps, summary } = await tinyRun();
  assert.equal(steps.length, 48); // 16 videos / (8 clips / 2 per video) = 4 steps per epoch, 12 epochs
  const mean = (a: FinetuneStepMetrics[]) => a.reduce((s, m) => s + m.loss, 0) / a.length;
  assert.ok(
    mean(steps.slice(-8)) < mean(steps.slice(0, 8)) - 0.1,
    `loss ${mean(steps.slice(0, 8))} -> ${mean(steps.slice(-8))}`,
  );
  const test = summary.test!;
  assert.deepEqual([test.videos, test.views, test.padViews, test.repeatedViews], [16, 32, 0, 0]);
  assert.ok(test.top1 >= 40, `test top-1 ${test.top1}% (chance is 25%)`);
  const csv = (await Deno.readTextFile(`${out}/test/test_per_video.csv`)).trim().split("\n");
  assert.equal(csv.length, 17);
  const saved = JSON.parse(await Deno.readTextFile(`${out}/test/test_summary.json`));
  assert.equal(saved.top1, test.top1);

  // The test alone from the saved checkpoint gives the same figures.
  const last = listCheckpoints(`${out}/checkpoints`).pop()!;
  assert.equal(last.step, 48);
  const again = (await evaluateCheckpoint(tinyConfig(`${dataDir}/eval`), last.path))!;
  assert.deepEqual(again.report.missing, []);
  assert.equal(again.summary.top1, test.top1);
  assert.equal(again.summary.top5, test.top5);
});

Deno.test("extractFeatures gives what the head reads, one row per video in list order, from a checkpoint or the init", async () => {
  const { out, summary } = await tinyRun();
  const ckpt = listCheckpoints(`${out}/checkpoints`).pop()!.path;
  const split = { list: ds.list, root: ds.dataRoot };
  // An output folder that does not exist yet is made (the loaders keep their probe cache there).
  const fresh = `${dataDir}/features/not-made-yet`;
  const [f] = await extractFeatures(tinyConfig(fresh), [split], ckpt);
  assert.ok((await Deno.stat(`${fresh}/probe_cache.json`)).isFile);
  const entries = await readList(ds.list, ds.dataRoot);
  assert.equal(f.videos, entries.length);
  assert.equal(f.features.length, f.videos * f.dim);
  assert.deepEqual([...f.labels], entries.map((e) => e.label));

  // The checkpoint's head on these rows gives the run's last validation (the same centre views).
  const w = await finalWeights(out);
  const [weight, bias] = [w.get("head.weight")!, w.get("head.bias")!];
  const k = bias.length;
  assert.equal(weight.length, k * f.dim);
  let [right, loss] = [0, 0];
  for (let v = 0; v < f.videos; v++) {
    const logits = Array.from({ length: k }, (_, c) => {
      let s = bias[c];
      for (let j = 0; j < f.dim; j++) s += weight[c * f.dim + j] * f.features[v * f.dim + j];
      return s;
    });
    const top = Math.max(...logits);
    if (logits.indexOf(top) === f.labels[v]) right++;
    loss += Math.log(logits.reduce((a, l) => a + Math.exp(l - top), 0)) - (logits[f.labels[v]] - top);
  }
  const val = summary.val.at(-1)!;
  assert.equal((100 * right) / f.videos, val.top1);
  assert.ok(
    Math.abs(loss / f.videos - val.loss) < 1e-4 * Math.max(1, val.loss),
    `${loss / f.videos} vs ${val.loss}`,
  );

  // Without a checkpoint: the initialisation of train.seed, the same twice, not the trained encoder's.
  const [a] = await extractFeatures(tinyConfig(`${dataDir}/features/init`), [split]);
  const [b] = await extractFeatures(tinyConfig(`${dataDir}/features/init`), [split]);
  assert.deepEqual(a.features, b.features);
  assert.notDeepEqual(a.features, f.features);
});

Deno.test("an interrupted fine-tune resumes to the same weights; validation runs at each epoch end", async () => {
  // With mixing, augmentation and stochastic depth on: their draws are keyed by step, so resuming
  // repeats them exactly.
  const recipe = [
    ...["--train.epochs", "2", "--train.test", "false", "--mixup.prob", "1", "--mixup.smoothing", "0.1"],
    ...["--data.rand_augment", "rand-m7-n2-mstd0.5-inc1", "--data.reprob", "0.5", "--model.drop_path", "0.2"],
  ];
  const whole = await run(tinyConfig(`${dataDir}/whole`, recipe));
  assert.equal(whole.summary.val.length, 2);
  assert.ok(whole.steps[3].val && whole.steps[7].val && !whole.steps[2].val);
  assert.ok(whole.steps.some((m) => m.mix === "cutmix") || whole.steps.some((m) => m.mix === "mixup"));
  const parts = `${dataDir}/parts`;
  const stop = new AbortController();
  const first = await run(tinyConfig(parts, recipe), stop.signal, () => stop.abort());
  assert.equal(first.steps.length, 3);
  assert.equal(first.summary.interrupted, true);
  const rest = await run(tinyConfig(parts, recipe));
  assert.deepEqual(rest.steps.map((m) => m.step), [4, 5, 6, 7, 8]);
  const a = await finalWeights(`${dataDir}/whole`);
  const b = await finalWeights(parts);
  assert.equal(a.size, b.size);
  for (const [name, v] of a) assert.deepEqual(b.get(name), v, name);
});

Deno.test("--finetune into a folder that holds a from-scratch run is refused, naming the key and the ways on", async () => {
  const out = `${dataDir}/ft-scratch`;
  const short = ["--train.steps", "2", "--train.validate", "false", "--train.test", "false"];
  const first = await run(tinyConfig(out, short));
  assert.equal(first.summary.pretrained, undefined);
  const ckpt = listCheckpoints(`${out}/checkpoints`).pop()!.path;
  // The README's two commands in a row: the second must not quietly continue the first.
  await assert.rejects(
    run(tinyConfig(out, [...short, "--train.finetune", ckpt, "--train.steps", "4"])),
    new RegExp(
      `train.finetune: "" in the checkpoint, "${ckpt}" now[^]*The checkpoint is intact[^]*--output DIR[^]*--no-resume`,
    ),
  );
});
