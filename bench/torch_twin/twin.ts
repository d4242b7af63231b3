/**
 * `deno task bench:twin [--steps N] [--model classifier|pretrain|both] [--out DIR]`: the PyTorch twin.
 *
 * Trains vswift's classifier (the default fine-tuning's recipe: max pooling, label smoothing, layer
 * decay, weight decay, warmup then cosine) and its pretraining model (tube masks, normalised-pixel MSE,
 * AdamW 0.9/0.95) for N steps on clips from our loader, and saves what PyTorch needs to repeat the run:
 * the initial weights, every step's clips (after augmentation and mixing), soft targets or masks and
 * learning rate, and each parameter's lr scale and weight decay. twin.py then trains an independent
 * PyTorch implementation (Debian's python3-torch) from the same weights on the same clips, and this
 * prints both loss curves side by side with their largest relative difference; it exits 1 when that is
 * above --tol. Without python3 and torch it says so and exits 0.
 *
 * Stochastic depth is off (its per-sample draws are ours alone); the rest is the shipped recipe, at 32 px
 * and a batch of 8 so that both frameworks finish in a minute or two on 2 cores.
 */
import { Graph } from "../../lib/autograd.ts";
import type { Batch, VideoLoader } from "../../lib/data/loader.ts";
import { rngFor } from "../../lib/data/seed.ts";
import { fromFloats, type SafeTensor, saveSafetensors } from "../../lib/io/safetensors.ts";
import type { VideoModel } from "../../lib/model/base.ts";
import { VideoMAEPretrain } from "../../lib/model/pretrain.ts";
import { stateDict } from "../../lib/model/state.ts";
import { Arena } from "../../lib/memory.ts";
import { Rng } from "../../lib/rng.ts";
import { readFloats, type Tensor } from "../../lib/tensor.ts";
import { AdamW, type GroupRule, vswiftDecays } from "../../lib/train/adamw.ts";
import { loadFinetuneConfig } from "../../lib/train/finetune/config.ts";
import { resolveData, trainLoader } from "../../lib/train/finetune/data.ts";
import { layerDecayRule } from "../../lib/train/finetune/layer_decay.ts";
import { mixBatch, mixupOptions } from "../../lib/train/finetune/mixup.ts";
import { buildClassifier } from "../../lib/train/finetune/model.ts";
import { adamWOptions, type OptimSection, runSchedule } from "../../lib/train/optim_config.ts";
import { loadConfig, modelConfigOf } from "../../lib/train/pretrain/config.ts";
import { pretrainLoader } from "../../lib/train/pretrain/data.ts";
import { openTrainingProcess, type TrainingProcess } from "../../lib/train/process.ts";
import { parseFlags } from "../../lib/task_cli.ts";
import { findPython } from "../torch_step.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

const USAGE =
  "usage: deno task bench:twin [--steps N] [--model classifier|pretrain|both] [--out DIR] [--tol X]";
const { values: args } = parseFlags("deno task bench:twin", USAGE, {
  options: {
    steps: { type: "string", default: "24" },
    model: { type: "string", default: "both" },
    out: { type: "string", default: "runs/torch_twin" },
    tol: { type: "string", default: "1e-3" },
  },
});
const steps = Number(args.steps);
const tol = Number(args.tol);
const bad = !Number.isInteger(steps) || steps < 1
  ? `--steps must be a positive integer, got ${args.steps}`
  : !["classifier", "pretrain", "both"].includes(args.model!)
  ? `--model must be classifier, pretrain or both, got ${args.model}`
  : !(tol > 0)
  ? `--tol must be a positive number, got ${args.tol}`
  : undefined;
if (bad) {
  console.error(`${bad}\n${USAGE}`);
  Deno.exit(2);
}

/** What one step of our run left for PyTorch. */
interface Recorded {
  tensors: Map<string, SafeTensor>;
  losses: number[];
  lrs: number[];
}

/** A step's inputs and its loss: the model-specific part of a recorded run. */
type StepFn = (
  g: Graph,
  batch: Batch,
  step: number,
  save: (name: string, t: Tensor | Int32Array, shape?: number[]) => void,
) => Tensor;

/**
 * Runs `steps` steps of (model, opt) on the loader's batches, recording every input the step used.
 * Also saves the initial state dict and each parameter's lr scale and weight decay under `dir`.
 */
async function record(
  dir: string,
  model: VideoModel,
  opt: AdamW,
  rule: GroupRule,
  loader: VideoLoader,
  optim: OptimSection,
  batchSize: number,
  step: StepFn,
  meta: Record<string, unknown>,
): Promise<Recorded> {
  await Deno.mkdir(dir, { recursive: true });
  await saveSafetensors(`${dir}/init.safetensors`, stateDict(model, { buffers: false }));
  const groups = Object.fromEntries(model.store.params.map((p) => {
    const h = rule(p);
    return [p.name, { lr_scale: h.lrScale, weight_decay: h.weightDecay }];
  }));
  const schedule = runSchedule(optim, {
    globalBatch: batchSize,
    stepsPerEpoch: loader.stepsPerEpoch,
    steps,
    epochs: 1,
  });
  const rec: Recorded = { tensors: new Map(), losses: [], lrs: [] };
  const save = (name: string, t: Tensor | Int32Array, shape?: number[]) => {
    if (t instanceof Int32Array) {
      const bytes = new Uint8Array(t.buffer, t.byteOffset, t.byteLength).slice();
      rec.tensors.set(name, { dtype: "I32", shape: shape ?? [t.length], data: bytes });
    } else rec.tensors.set(name, fromFloats(readFloats(t), [...t.shape]));
  };
  const arena = new Arena();
  model.store.syncCompute();
  for (let s = 0; s < steps; s++) {
    const g = new Graph(arena);
    const batch = await loader.next(g);
    if (!batch) throw new Error(`The loader ran dry at step ${s}; this is a bug`);
    const lr = schedule.at(s);
    model.store.zeroGrad();
    const loss = step(g, batch, s, save);
    rec.losses.push(readFloats(loss)[0]);
    g.backward(loss);
    opt.update(lr);
    rec.lrs.push(lr);
    g.reset();
  }
  await loader.close();
  await saveSafetensors(`${dir}/steps.safetensors`, rec.tensors);
  const [b1, b2] = optim.betas;
  await Deno.writeTextFile(
    `${dir}/run.json`,
    JSON.stringify(
      {
        ...meta,
        steps,
        lrs: rec.lrs,
        betas: [b1, b2],
        eps: optim.eps,
        clip_grad: optim.clip_grad,
        groups,
        vswift_losses: rec.losses,
      },
      null,
      1,
    ),
  );
  return rec;
}

async function classifierRun(dir: string): Promise<number[]> {
  const cfg = await loadFinetuneConfig(`${ROOT}configs/finetune_default.yaml`, [
    ...["--model.input_size", "32", "--data.short_side", "36", "--data.eval_short_side", "32"],
    ...["--model.drop_path", "0", "--train.batch_size", "8", "--train.steps", String(steps)],
    ...["--data.shapes_train_videos", "64", "--data.shapes_eval_videos", "8", "--train.output", dir],
  ]);
  const model = buildClassifier(cfg, "f32");
  const mc = model.config;
  const rule = layerDecayRule(mc.depth, cfg.optim.layer_decay, cfg.optim.weight_decay);
  const opt = new AdamW(model.store, adamWOptions(cfg.optim, cfg.train.batch_size), rule);
  const data = await resolveData(cfg, undefined, (m) => console.error(m));
  const loader = trainLoader(cfg, data.train, "f32");
  const mix = mixupOptions(cfg.mixup, model.numClasses);
  console.error(
    `classifier: ${mc.name}, ${model.parameterCount} parameters, ${steps} steps of ${cfg.train.batch_size} clips`,
  );
  const { losses } = await record(
    dir,
    model,
    opt,
    rule,
    loader,
    cfg.optim,
    cfg.train.batch_size,
    (g, batch, s, save) => {
      const { targets } = mixBatch(g, rngFor(201, cfg.train.seed, 0, s), batch.video, batch.labels, mix);
      save(`video.${s}`, batch.video);
      save(`targets.${s}`, targets);
      return model.forward(g, batch.video, { targets }).loss!;
    },
    {
      kind: "classifier",
      model: { ...mc, pool: model.pool, classes: model.numClasses },
    },
  );
  model.free();
  return losses;
}

async function pretrainRun(proc: TrainingProcess, dir: string): Promise<number[]> {
  const cfg = await loadConfig(`${ROOT}configs/default.yaml`, [
    ...["--model.input_size", "32", "--data.short_side", "36", "--model.frames", "4"],
    ...["--train.batch_size", "8", "--train.steps", String(steps), "--data.shapes_videos", "32"],
    ...["--train.output", dir],
  ]);
  const mc = modelConfigOf(cfg);
  const model = new VideoMAEPretrain(mc).allocate("f32").initialize(cfg.train.seed);
  const wd = cfg.optim.weight_decay;
  const rule: GroupRule = (p) => ({ lrScale: 1, weightDecay: vswiftDecays(p) ? wd : 0 });
  // The rule PyTorch is given is the one our AdamW applies.
  const opt = new AdamW(model.store, adamWOptions(cfg.optim, cfg.train.batch_size), rule);
  const loader = await pretrainLoader(cfg, proc, undefined, (m) => console.error(m));
  const rng = new Rng(cfg.train.seed + 1);
  console.error(
    `pretraining: ${mc.name}, ${model.parameterCount} parameters, ${steps} steps of ${cfg.train.batch_size} clips`,
  );
  const { losses } = await record(
    dir,
    model,
    opt,
    rule,
    loader,
    cfg.optim,
    cfg.train.batch_size,
    (g, batch, s, save) => {
      const m = batch.mask!;
      save(`video.${s}`, batch.video);
      save(`visible.${s}`, m.visible, [m.b, m.nVisible]);
      save(`masked.${s}`, m.masked, [m.b, m.nMasked]);
      return model.forward(g, batch.video, { mask: m, rng, maskRatio: cfg.mask.ratio }).loss;
    },
    { kind: "pretrain", model: mc },
  );
  model.free();
  return losses;
}

/** Both curves side by side; returns the largest relative difference. */
function compare(name: string, ours: number[], theirs: number[]): number {
  console.log(`\n${name}: loss per step, vswift vs PyTorch`);
  console.log("step  vswift        pytorch       rel. diff");
  let worst = 0;
  ours.forEach((a, i) => {
    const b = theirs[i];
    const rel = Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
    worst = Math.max(worst, Number.isNaN(rel) ? Infinity : rel);
    console.log(
      `${String(i).padStart(4)}  ${a.toFixed(7).padEnd(12)}  ${b.toFixed(7).padEnd(12)}  ${
        rel.toExponential(2)
      }`,
    );
  });
  console.log(`${name}: largest relative difference ${worst.toExponential(3)} over ${ours.length} steps`);
  return worst;
}

let python: string;
try {
  python = await findPython(["torch"], "bench:twin");
} catch (e) {
  console.log(`bench:twin skipped: ${(e as Error).message}`);
  Deno.exit(0);
}
const proc = await openTrainingProcess("host", "f32");
const runs = args.model === "both" ? ["classifier", "pretrain"] : [args.model!];
let failed = false;
for (const kind of runs) {
  const dir = `${args.out}/${kind}`;
  const ours = kind === "classifier" ? await classifierRun(dir) : await pretrainRun(proc, dir);
  const py = await new Deno.Command(python, {
    args: [`${ROOT}bench/torch_twin/twin.py`, dir],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!py.success) throw new Error(`twin.py failed on ${dir} (exit ${py.code})`);
  const torch = JSON.parse(await Deno.readTextFile(`${dir}/torch_losses.json`)) as number[];
  if (compare(kind, ours, torch) > tol) failed = true;
}
if (failed) {
  console.log(`FAILED: a curve differs by more than --tol ${tol}`);
  Deno.exit(1);
}
