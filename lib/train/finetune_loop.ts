/**
 * The fine-tuning loop, V-SWIFT's recipe (spec §3.4-§3.6, §4.2): TSN segment sampling, RandAugment,
 * random resized crop and random erasing in the loader; mixup / CutMix with label smoothing and the
 * soft-target cross-entropy; stochastic depth; AdamW (0.9, 0.999) with layer-wise lr decay on fp32 master
 * weights (bf16 compute on a GPU); warmup then cosine per step; validation every epoch; checkpoints that
 * resume the same schedule and data stream; the multi-view test at the end. `deno task finetune` runs it;
 * notebooks iterate it (one FinetuneStepMetrics per step).
 *
 * Every random draw of a step (mixup, stochastic depth, augmentation) comes from a generator keyed by
 * (seed, rank, step), so ranks draw differently (V-SWIFT's ranks draw alike, spec §9.6) and a resumed run
 * draws exactly what the uninterrupted one would have.
 */
import { Graph } from "../autograd.ts";
import { readHeadMap, readLabelNames } from "../data/labels.ts";
import { VideoLoader } from "../data/loader.ts";
import { rngFor } from "../data/seed.ts";
import { ensureSyntheticDataset, MOTION_CLASSES } from "../data/synthetic.ts";
import { openNative } from "../ffi/native.ts";
import { TensorBoardWriter } from "../io/tensorboard.ts";
import { Arena, persistentMemory } from "../memory.ts";
import { VideoClassifier } from "../model/classifier.ts";
import { type ModelConfig, modelConfig } from "../model/config.ts";
import { formatReport, loadPretrained, type PretrainedReport } from "../model/pretrained.ts";
import { readScalar } from "../tensor.ts";
import { AdamW } from "./adamw.ts";
import {
  type CheckpointState,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
} from "./checkpoint.ts";
import { type EvalMetrics, mergeTest, testViews, validate } from "./finetune_eval.ts";
import { type FinetuneConfig, headClasses } from "./finetune_config.ts";
import { layerDecayRule } from "./layer_decay.ts";
import { mixBatch, type MixupOptions } from "./mixup.ts";
import { CosineSchedule } from "./schedule.ts";
import type { TestSummary } from "./tta.ts";

/** Generator streams of the loop (distinct from the loader's). */
const STREAM = { mix: 201, dropPath: 202 } as const;

export interface FinetuneStepMetrics {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  /** Global gradient norm (read on logging steps only; NaN otherwise). */
  gradNorm: number;
  /** What the batch got: mixup, cutmix or none, and the weight of the samples' own labels. */
  mix: "none" | "mixup" | "cutmix";
  lam: number;
  videosPerSecond: number;
  stepMs: number;
  dataWaitPercent: number;
  memoryGiB: number;
  /** Present on the last step of an epoch that was validated. */
  val?: EvalMetrics;
}

export interface FinetuneSummary {
  steps: number;
  output: string;
  lastCheckpoint?: string;
  interrupted: boolean;
  /** Validation per epoch, in order. */
  val: (EvalMetrics & { epoch: number })[];
  /** The multi-view test, when it ran. */
  test?: TestSummary;
  pretrained?: PretrainedReport;
}

export interface FinetuneLoopOptions {
  /** Print log lines (the command line); notebooks leave it off. */
  print?: boolean;
  /** Aborting stops after the current step and saves a checkpoint. */
  signal?: AbortSignal;
}

/** A list file and the folder its relative paths start from ("" = as written). */
export interface Split {
  list: string;
  root: string;
}

/** Data of a run: the configured lists, or the generated motion dataset's splits. */
export interface RunData {
  train: Split;
  val: Split;
  test: Split;
}

/** The list files of a configuration, generating the motion dataset first for source "shapes". */
export async function resolveData(
  cfg: FinetuneConfig,
  say: (m: string) => void = () => {},
): Promise<RunData> {
  if (cfg.data.source === "list") {
    const root = cfg.data.root;
    return {
      train: { list: cfg.data.train_list, root },
      val: { list: cfg.data.val_list, root },
      test: { list: cfg.data.test_list, root },
    };
  }
  const dir = cfg.data.shapes_dir || `${cfg.train.output}/shapes`;
  const common = { classes: headClasses(cfg), size: cfg.data.shapes_size, frames: cfg.data.shapes_frames };
  const train = await ensureSyntheticDataset({
    ...common,
    dir: `${dir}/train`,
    videos: cfg.data.shapes_train_videos,
    seed: cfg.train.seed,
  });
  // The eval split comes from another seed: other shapes, colours, speeds and positions.
  const heldOut = await ensureSyntheticDataset({
    ...common,
    dir: `${dir}/eval`,
    videos: cfg.data.shapes_eval_videos,
    seed: cfg.train.seed + 1000,
  });
  say(
    `data: generated motion clips in ${dir} (${train.videos} train, ${heldOut.videos} eval, ${train.classes} classes)`,
  );
  const evalSplit = { list: heldOut.list, root: heldOut.dataRoot };
  return { train: { list: train.list, root: train.dataRoot }, val: evalSplit, test: evalSplit };
}

/** The model geometry of a configuration. */
export function finetuneModelConfig(cfg: FinetuneConfig): ModelConfig {
  return modelConfig(cfg.model.size, {
    imgSize: cfg.model.input_size,
    frames: cfg.model.frames,
    tubelet: cfg.model.tubelet,
    ...(cfg.model.patch_size > 0 ? { patchSize: cfg.model.patch_size } : {}),
  });
}

/** The classifier of a configuration, allocated and initialised. */
export function buildClassifier(cfg: FinetuneConfig, dtype: "f32" | "bf16"): VideoClassifier {
  return new VideoClassifier(finetuneModelConfig(cfg), {
    numClasses: headClasses(cfg),
    dropPath: cfg.model.drop_path,
    initScale: cfg.model.init_scale,
  }).allocate(dtype).initialize(cfg.train.seed);
}

/** A validation (mode "val") or test (mode "test") loader over a list. */
export function evalLoader(
  cfg: FinetuneConfig,
  mode: "val" | "test",
  split: Split,
  dtype: "f32" | "bf16",
  rank = 0,
  worldSize = 1,
): VideoLoader {
  const m = finetuneModelConfig(cfg);
  return new VideoLoader({
    mode,
    list: split.list,
    dataRoot: split.root || undefined,
    batchSize: cfg.train.eval_batch_size > 0 ? cfg.train.eval_batch_size : cfg.train.batch_size,
    frames: m.frames,
    inputSize: m.imgSize,
    shortSide: cfg.data.eval_short_side > 0 ? cfg.data.eval_short_side : m.imgSize,
    mean: cfg.data.mean,
    std: cfg.data.std,
    seed: cfg.train.seed,
    rank,
    worldSize,
    workers: cfg.data.workers > 0 ? cfg.data.workers : undefined,
    prefetch: cfg.data.prefetch,
    dtype,
    testChunks: cfg.data.test_chunks,
    testCrops: cfg.data.test_crops,
    probeCache: `${cfg.train.output}/probe_cache.json`,
    log: (msg) => console.error(msg),
  });
}

/**
 * The multi-view test of a model on the test list: views to this rank's file, then (rank 0) the merge
 * into test/test_per_video.csv and test/test_summary.json under the output folder.
 */
export async function runTest(
  cfg: FinetuneConfig,
  model: VideoClassifier,
  data: RunData,
  dtype: "f32" | "bf16",
  arena: Arena,
  extra: Record<string, unknown> = {},
): Promise<{ summary: TestSummary; perVideo: string; summaryFile: string }> {
  const [rank, worldSize] = [0, 1]; // one process; the view files are per rank for a multi-process run
  const loader = evalLoader(cfg, "test", data.test, dtype, rank, worldSize);
  const dir = `${cfg.train.output}/test`;
  try {
    await testViews(model, loader, arena, dir, rank);
  } finally {
    await loader.close();
  }
  const labelNames = cfg.data.label_names
    ? readLabelNames(cfg.data.label_names, model.numClasses)
    : cfg.data.source === "shapes"
    ? MOTION_CLASSES.slice(0, model.numClasses)
    : undefined;
  return await mergeTest(dir, worldSize, {
    videos: loader.entries.length,
    viewsPerVideo: cfg.data.test_chunks * cfg.data.test_crops,
    paths: loader.entries.map((e) => e.path),
    labelNames,
    extra: { chunks: cfg.data.test_chunks, crops: cfg.data.test_crops, ...extra },
  });
}

/** Runs (or resumes) a fine-tuning run; yields the metrics of every step. */
export async function* finetune(
  cfg: FinetuneConfig,
  opts: FinetuneLoopOptions = {},
): AsyncGenerator<FinetuneStepMetrics, FinetuneSummary> {
  const say = (m: string) => opts.print && console.log(m);
  const out = cfg.train.output;
  const ckptDir = `${out}/checkpoints`;
  await Deno.mkdir(out, { recursive: true });
  // One process per run for now; rank and world size key the random streams and the test's view files.
  const [rank, worldSize] = [0, 1];

  // Device, model, optimiser.
  const n = await openNative({ device: cfg.train.device, quiet: true });
  say(`device: ${n.backend} (${n.deviceName()})${n.fallbackReason ? `; not cuda: ${n.fallbackReason}` : ""}`);
  const dtype = cfg.model.dtype === "auto" ? (n.backend === "cuda" ? "bf16" : "f32") : cfg.model.dtype;
  const model = buildClassifier(cfg, dtype);
  const mc = model.config;
  const scale = cfg.optim.scale_lr ? (cfg.train.batch_size * worldSize) / 256 : 1;
  const opt = new AdamW(
    model.store,
    {
      lr: cfg.optim.lr * scale,
      betas: [cfg.optim.betas[0], cfg.optim.betas[1]],
      eps: cfg.optim.eps,
      weightDecay: cfg.optim.weight_decay,
      clipGrad: cfg.optim.clip_grad > 0 ? cfg.optim.clip_grad : undefined,
    },
    layerDecayRule(mc.depth, cfg.optim.layer_decay, cfg.optim.weight_decay),
  );
  say(
    `model: ${mc.name} classifier, ${model.numClasses} classes, ${
      (model.parameterCount / 1e6).toFixed(3)
    }M ` +
      `parameters, ${dtype} compute, fp32 masters; layer decay ${cfg.optim.layer_decay}, drop path ${cfg.model.drop_path}`,
  );

  // Start: the newest checkpoint of this run, else the pretrained weights, else the initialisation.
  const latest = listCheckpoints(ckptDir).pop();
  let state: CheckpointState | undefined;
  let pretrained: PretrainedReport | undefined;
  if (latest) {
    state = await loadCheckpoint(latest.path, model, opt);
    say(`resuming from ${latest.path} (step ${state.step})`);
  } else if (cfg.train.finetune) {
    const headMap = cfg.data.head_map ? readHeadMap(cfg.data.head_map, model.numClasses) : undefined;
    pretrained = await loadPretrained(model, cfg.train.finetune, {
      modelKeys: cfg.train.model_key.split("|").filter(Boolean),
      headMap,
      headMapSource: cfg.data.head_map || undefined,
    });
    say(formatReport(pretrained));
  } else say("no pretrained weights (train.finetune is empty): training from scratch");

  // Data.
  const data = await resolveData(cfg, say);
  const train = new VideoLoader({
    mode: "train",
    list: data.train.list,
    dataRoot: data.train.root || undefined,
    batchSize: cfg.train.batch_size,
    frames: mc.frames,
    inputSize: mc.imgSize,
    shortSide: cfg.data.short_side > 0 ? cfg.data.short_side : undefined,
    repeats: cfg.data.repeats,
    flip: cfg.data.flip,
    mean: cfg.data.mean,
    std: cfg.data.std,
    seed: cfg.train.seed,
    rank,
    worldSize,
    workers: cfg.data.workers > 0 ? cfg.data.workers : undefined,
    prefetch: cfg.data.prefetch,
    dtype,
    randAugment: cfg.data.rand_augment || undefined,
    randomErasing: cfg.data.reprob,
    probeCache: `${out}/probe_cache.json`,
    resume: state?.data as never,
    log: (m) => console.error(m),
  });
  const spe = train.stepsPerEpoch;
  const totalSteps = cfg.train.steps > 0 ? cfg.train.steps : cfg.train.epochs * spe;
  const warmup = Math.min(
    totalSteps,
    cfg.optim.warmup_steps > 0 ? cfg.optim.warmup_steps : Math.round(cfg.optim.warmup_epochs * spe),
  );
  const schedule = new CosineSchedule(cfg.optim.lr * scale, cfg.optim.min_lr * scale, warmup, totalSteps);
  const mixOpts: MixupOptions = {
    mixup: cfg.mixup.mixup,
    cutmix: cfg.mixup.cutmix,
    prob: cfg.mixup.prob,
    switchProb: cfg.mixup.switch_prob,
    smoothing: cfg.mixup.smoothing,
    numClasses: model.numClasses,
  };
  say(`schedule: ${totalSteps} steps (${spe} per epoch, batch ${cfg.train.batch_size}), warmup ${warmup}`);

  const tb = cfg.train.tensorboard ? new TensorBoardWriter(`${out}/tensorboard`) : undefined;
  const jsonl = await Deno.open(`${out}/metrics.jsonl`, { write: true, create: true, append: true });
  const arena = new Arena();
  const vals: (EvalMetrics & { epoch: number })[] = [];
  let lastCheckpoint = latest?.path;
  let interrupted = false;
  let test: TestSummary | undefined;
  let windowStart = performance.now();
  let windowWait = train.stats().waitedMs;
  let windowSteps = 0;
  const log = async (record: Record<string, unknown>) =>
    await jsonl.write(new TextEncoder().encode(JSON.stringify(record) + "\n"));

  const save = async (step: number, metrics: Record<string, number>) => {
    lastCheckpoint = await saveCheckpoint(ckptDir, model, opt, {
      version: 1,
      step,
      epoch: Math.floor(step / spe),
      optimizerStep: opt.step,
      config: cfg,
      data: train.position(),
      rng: {},
      metrics,
    });
    await pruneCheckpoints(ckptDir, cfg.train.keep_last);
  };

  try {
    for (let step = state?.step ?? 0; step < totalSteps; step++) {
      // 1. A batch of augmented clips; mixup or CutMix on the device, soft targets beside it.
      const g = new Graph(arena);
      const batch = await train.next(g);
      if (!batch) throw new Error("The training loader ran dry; this is a bug");
      const epoch = Math.floor(step / spe);
      const { targets, draw } = mixBatch(
        g,
        rngFor(STREAM.mix, cfg.train.seed, rank, step),
        batch.video,
        batch.labels,
        mixOpts,
      );

      // 2. Forward with stochastic depth and the soft-target loss; a non-finite loss stops the run.
      const lr = schedule.at(step);
      model.store.zeroGrad();
      const res = model.forward(g, batch.video, {
        rng: rngFor(STREAM.dropPath, cfg.train.seed, rank, step),
        targets,
      });
      const loss = readScalar(res.loss!);
      if (!Number.isFinite(loss)) {
        throw new Error(
          `The loss is ${loss} at step ${step}; stopping. The last good checkpoint is ${
            lastCheckpoint ?? "none"
          }`,
        );
      }

      // 3. Backward and AdamW with per-layer learning rates.
      g.backward(res.loss!);
      opt.update(lr);
      g.reset();

      // 4. Metrics and logs.
      windowSteps++;
      const logNow = (step + 1) % cfg.train.log_every === 0 || step + 1 === totalSteps;
      const elapsed = performance.now() - windowStart;
      const waited = train.stats().waitedMs - windowWait;
      const metrics: FinetuneStepMetrics = {
        step: step + 1,
        totalSteps,
        epoch,
        loss,
        lr,
        gradNorm: logNow ? readScalar(opt.gradNorm) : NaN,
        mix: draw.kind,
        lam: draw.lam,
        videosPerSecond: (windowSteps * cfg.train.batch_size * worldSize * 1000) / elapsed,
        stepMs: elapsed / windowSteps,
        dataWaitPercent: (100 * waited) / elapsed,
        memoryGiB: (persistentMemory().peak + arena.peak) / 2 ** 30,
      };
      if (logNow) {
        say(formatFinetuneLine(metrics));
        await log(metrics as unknown as Record<string, unknown>);
        for (const tag of ["loss", "lr", "gradNorm", "videosPerSecond"] as const) {
          if (Number.isFinite(metrics[tag])) tb?.scalar(`train/${tag}`, metrics[tag], step + 1);
        }
        windowStart = performance.now();
        windowWait = train.stats().waitedMs;
        windowSteps = 0;
      }

      // 5. End of an epoch: checkpoint when due, then validation.
      const endOfEpoch = (step + 1) % spe === 0 || step + 1 === totalSteps;
      let saved = false;
      if (endOfEpoch) {
        if ((epoch + 1) % cfg.train.save_ckpt_freq === 0 || step + 1 === totalSteps) {
          await save(step + 1, { loss });
          saved = true;
        }
        if (cfg.train.validate && data.val.list) {
          const vl = evalLoader(cfg, "val", data.val, dtype, rank, worldSize);
          try {
            metrics.val = await validate(model, vl, arena);
          } finally {
            await vl.close();
          }
          vals.push({ ...metrics.val, epoch });
          const v = metrics.val;
          say(
            `val epoch ${epoch}: top-1 ${v.top1.toFixed(2)}%  top-5 ${v.top5.toFixed(2)}%  loss ${
              v.loss.toFixed(4)
            } (${v.videos} videos)`,
          );
          await log({ epoch, step: step + 1, val: v });
          tb?.scalar("val/top1", v.top1, step + 1);
          tb?.scalar("val/top5", v.top5, step + 1);
          tb?.scalar("val/loss", v.loss, step + 1);
          windowStart = performance.now();
          windowWait = train.stats().waitedMs;
        }
      }
      yield metrics;

      // 6. An interrupt (Ctrl-C, or the caller's signal during this step) stops here with a checkpoint.
      if (opts.signal?.aborted) {
        if (!saved) await save(step + 1, { loss });
        interrupted = true;
        say(`interrupted after step ${step + 1}; saved ${lastCheckpoint}. Run the same command to resume.`);
        break;
      }
    }

    // 7. The multi-view test after the last step.
    if (!interrupted && cfg.train.test && data.test.list) {
      const r = await runTest(cfg, model, data, dtype, arena, {
        checkpoint: lastCheckpoint ?? null,
        steps: totalSteps,
      });
      test = r.summary;
      say(
        `test (${cfg.data.test_chunks} x ${cfg.data.test_crops} views): top-1 ${
          test.top1.toFixed(2)
        }%  top-5 ${test.top5.toFixed(2)}% over ${test.videos} videos; per video: ${r.perVideo}`,
      );
      await log({ test });
      tb?.scalar("test/top1", test.top1, totalSteps);
      tb?.scalar("test/top5", test.top5, totalSteps);
    }
  } finally {
    tb?.close();
    jsonl.close();
    const stats = await train.close();
    if (stats.skipped.length > 0) say(`skipped ${stats.skipped.length} videos that failed to decode`);
    arena.dispose();
    opt.free();
    model.free();
  }
  return { steps: totalSteps, output: out, lastCheckpoint, interrupted, val: vals, test, pretrained };
}

/** One log line: step, epoch, loss, lr, grad norm, mixing, videos/s, step time, data wait, memory. */
export function formatFinetuneLine(m: FinetuneStepMetrics): string {
  return [
    `step ${m.step}/${m.totalSteps}`,
    `epoch ${m.epoch}`,
    `loss ${m.loss.toFixed(4)}`,
    `lr ${m.lr.toExponential(2)}`,
    `grad_norm ${Number.isFinite(m.gradNorm) ? m.gradNorm.toFixed(3) : "-"}`,
    `${m.mix}${m.mix === "none" ? "" : ` ${m.lam.toFixed(2)}`}`,
    `${m.videosPerSecond.toFixed(1)} videos/s`,
    `${m.stepMs.toFixed(0)} ms/step`,
    `data wait ${m.dataWaitPercent.toFixed(0)}%`,
    `mem ${m.memoryGiB.toFixed(2)} GiB`,
  ].join("  ");
}

/**
 * `deno task eval --ckpt`: the multi-view test alone, on a fine-tuned checkpoint (a checkpoint folder of
 * ours, a safetensors file or a .pth file). The weights must cover the whole classifier.
 */
export async function evaluateCheckpoint(
  cfg: FinetuneConfig,
  ckpt: string,
  opts: { print?: boolean } = {},
): Promise<{ summary: TestSummary; perVideo: string; summaryFile: string; report: PretrainedReport }> {
  const say = (m: string) => opts.print && console.log(m);
  await Deno.mkdir(cfg.train.output, { recursive: true });
  const n = await openNative({ device: cfg.train.device, quiet: true });
  const dtype = cfg.model.dtype === "auto" ? (n.backend === "cuda" ? "bf16" : "f32") : cfg.model.dtype;
  const model = buildClassifier(cfg, dtype);
  const arena = new Arena();
  try {
    const report = await loadPretrained(model, ckpt, {
      modelKeys: cfg.train.model_key.split("|").filter(Boolean),
      headMap: cfg.data.head_map ? readHeadMap(cfg.data.head_map, model.numClasses) : undefined,
      headMapSource: cfg.data.head_map || undefined,
    });
    say(formatReport(report));
    if (report.missing.length > 0) {
      throw new Error(
        `${ckpt} does not hold a whole ${model.numClasses}-class classifier (missing ${
          report.missing.join(", ")
        }); ` +
          `test a fine-tuned checkpoint, or check model.size / model.num_classes`,
      );
    }
    const data = await resolveData(cfg, say);
    if (!data.test.list) {
      throw new Error("No test list: set data.test_list (V-SWIFT tests on the validation list)");
    }
    const r = await runTest(cfg, model, data, dtype, arena, { checkpoint: ckpt });
    say(
      `test (${cfg.data.test_chunks} x ${cfg.data.test_crops} views): top-1 ${
        r.summary.top1.toFixed(2)
      }%  top-5 ${r.summary.top5.toFixed(2)}% over ${r.summary.videos} videos`,
    );
    return { ...r, report };
  } finally {
    arena.dispose();
    model.free();
  }
}
