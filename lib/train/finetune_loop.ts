/**
 * The fine-tuning loop, V-SWIFT's recipe (spec §3.4-§3.6, §4.2): TSN segment sampling, RandAugment,
 * random resized crop and random erasing in the loader; mixup / CutMix with label smoothing and the
 * soft-target cross-entropy; stochastic depth; AdamW (0.9, 0.999) with layer-wise lr decay on fp32 master
 * weights (bf16 compute on a GPU); warmup then cosine per step; gradients averaged over the ranks;
 * validation every epoch; checkpoints that resume the same schedule and data stream; the multi-view test
 * at the end. `deno task finetune` runs it; notebooks iterate it (one FinetuneStepMetrics per step).
 *
 * Every random draw of a step (mixup, stochastic depth, augmentation) comes from a generator keyed by
 * (seed, rank, step), so ranks draw differently (V-SWIFT's ranks draw alike, spec §9.6) and a resumed run
 * draws exactly what the uninterrupted one would have.
 */
import { Graph } from "../autograd.ts";
import { readHeadMap } from "../data/labels.ts";
import { rngFor } from "../data/seed.ts";
import { GradSync } from "../dist/grad_sync.ts";
import { TensorBoardWriter } from "../io/tensorboard.ts";
import { Arena, persistentMemory } from "../memory.ts";
import { formatReport, loadPretrained, type PretrainedReport } from "../model/pretrained.ts";
import { readScalar } from "../tensor.ts";
import { AdamW } from "./adamw.ts";
import { adamWOptions, runSchedule } from "./optim_config.ts";
import {
  type CheckpointState,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
} from "./checkpoint.ts";
import type { FinetuneConfig } from "./finetune_config.ts";
import { evalLoader, resolveData, trainLoader } from "./finetune_data.ts";
import { type EvalMetrics, formatTest, runTest, validate } from "./finetune_eval.ts";
import { buildClassifier } from "./finetune_model.ts";
import { layerDecayRule } from "./layer_decay.ts";
import { mixBatch, type MixupOptions } from "./mixup.ts";
import { describeProcess, openTrainingProcess } from "./process_group.ts";
import type { TestSummary } from "./tta.ts";

/** Generator streams of the loop (distinct from the loader's). */
const STREAM = { mix: 201, dropPath: 202 } as const;

export interface FinetuneStepMetrics {
  step: number;
  totalSteps: number;
  epoch: number;
  /** Mean over the ranks. */
  loss: number;
  lr: number;
  /** Global gradient norm (read on logging steps only; NaN otherwise). */
  gradNorm: number;
  /** What this rank's batch got: mixup, cutmix or none, and the weight of the samples' own labels. */
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
  /** Validation per epoch of this invocation, in order. */
  val: (EvalMetrics & { epoch: number })[];
  /** The multi-view test, when it ran (rank 0). */
  test?: TestSummary;
  pretrained?: PretrainedReport;
}

export interface FinetuneLoopOptions {
  /** Print log lines (the command line); notebooks leave it off. */
  print?: boolean;
  /** Aborting stops after the current step and saves a checkpoint. */
  signal?: AbortSignal;
}

/** Runs (or resumes) a fine-tuning run; yields the metrics of every step. */
export async function* finetune(
  cfg: FinetuneConfig,
  opts: FinetuneLoopOptions = {},
): AsyncGenerator<FinetuneStepMetrics, FinetuneSummary> {
  const out = cfg.train.output;
  const ckptDir = `${out}/checkpoints`;

  // Device and process group; rank 0 writes logs, checkpoints and the merged test.
  const proc = await openTrainingProcess(cfg.train.device, cfg.model.dtype);
  const { group, lead, dtype } = proc;
  const rank = proc.env.rank;
  const say = (m: string) => opts.print && lead && console.log(m);
  say(describeProcess(proc));
  await Deno.mkdir(out, { recursive: true });

  // Model and optimiser.
  const model = buildClassifier(cfg, dtype, proc);
  const mc = model.config;
  const globalBatch = cfg.train.batch_size * group.worldSize;
  const opt = new AdamW(
    model.store,
    adamWOptions(cfg.optim, globalBatch),
    layerDecayRule(mc.depth, cfg.optim.layer_decay, cfg.optim.weight_decay),
  );
  say(
    `model: ${mc.name} classifier, ${model.numClasses} classes, ${
      (model.parameterCount / 1e6).toFixed(3)
    }M ` +
      `parameters, ${dtype} compute, fp32 masters; layer decay ${cfg.optim.layer_decay}, drop path ${cfg.model.drop_path}`,
  );

  // Start: the newest checkpoint of this run, else the pretrained weights, else the initialisation;
  // then the same weights on every rank.
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
  await group.broadcast(model.store.master!, 0);
  model.store.syncCompute();
  const sync = group.worldSize > 1 ? new GradSync(group, model.store) : undefined;

  // Data: every rank continues its own part of the stream (the checkpoint holds rank 0's position).
  const data = await resolveData(cfg, group, say);
  const resume = state ? { ...(state.data as object), rank } as never : undefined;
  const train = trainLoader(cfg, data.train, dtype, proc.env, resume);
  const spe = train.stepsPerEpoch;
  const schedule = runSchedule(cfg.optim, { ...cfg.train, globalBatch, stepsPerEpoch: spe });
  const totalSteps = schedule.totalSteps;
  const mixOpts: MixupOptions = {
    mixup: cfg.mixup.mixup,
    cutmix: cfg.mixup.cutmix,
    prob: cfg.mixup.prob,
    switchProb: cfg.mixup.switch_prob,
    smoothing: cfg.mixup.smoothing,
    numClasses: model.numClasses,
  };
  say(
    `schedule: ${totalSteps} steps (${spe} per epoch, global batch ${globalBatch}), warmup ${schedule.warmupSteps}`,
  );

  const tb = lead && cfg.train.tensorboard ? new TensorBoardWriter(`${out}/tensorboard`) : undefined;
  const jsonl = lead
    ? await Deno.open(`${out}/metrics.jsonl`, { write: true, create: true, append: true })
    : undefined;
  const log = async (record: unknown) =>
    await jsonl?.write(new TextEncoder().encode(JSON.stringify(record) + "\n"));
  const arena = new Arena();
  const vals: (EvalMetrics & { epoch: number })[] = [];
  let lastCheckpoint = latest?.path;
  let interrupted = false;
  let test: TestSummary | undefined;
  let windowStart = performance.now();
  let windowWait = train.stats().waitedMs;
  let windowSteps = 0;

  const save = async (step: number, metrics: Record<string, number>) => {
    if (!lead) return;
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
      const mixRng = rngFor(STREAM.mix, cfg.train.seed, rank, step);
      const { targets, draw } = mixBatch(g, mixRng, batch.video, batch.labels, mixOpts);

      // 2. Forward with stochastic depth and the soft-target loss; a non-finite loss stops the run.
      const lr = schedule.at(step);
      model.store.zeroGrad();
      const res = model.forward(g, batch.video, {
        rng: rngFor(STREAM.dropPath, cfg.train.seed, rank, step),
        targets,
      });
      const local = readScalar(res.loss!);
      if (!Number.isFinite(local)) {
        throw new Error(
          `The loss is ${local} at step ${step} on rank ${rank}; stopping. The last good checkpoint is ${
            lastCheckpoint ?? "none"
          }`,
        );
      }

      // 3. Backward, gradients averaged over the ranks, AdamW with per-layer learning rates.
      g.backward(res.loss!, sync?.hook(g));
      await sync?.finish();
      opt.update(lr);
      g.reset();

      // 4. Metrics and logs (the loss averaged over the ranks).
      windowSteps++;
      const logNow = (step + 1) % cfg.train.log_every === 0 || step + 1 === totalSteps;
      const [lossSum] = group.worldSize > 1 ? await group.allReduceNumbers([local], "sum") : [local];
      const loss = lossSum / group.worldSize;
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
        videosPerSecond: (windowSteps * globalBatch * 1000) / elapsed,
        stepMs: elapsed / windowSteps,
        dataWaitPercent: (100 * waited) / elapsed,
        memoryGiB: (persistentMemory().peak + arena.peak) / 2 ** 30,
      };
      if (logNow) {
        say(formatFinetuneLine(metrics));
        await log(metrics);
        for (const tag of ["loss", "lr", "gradNorm", "videosPerSecond"] as const) {
          if (Number.isFinite(metrics[tag])) tb?.scalar(`train/${tag}`, metrics[tag], step + 1);
        }
        windowStart = performance.now();
        windowWait = train.stats().waitedMs;
        windowSteps = 0;
      }

      // 5. End of an epoch: checkpoint when due, then validation over every rank's share of the videos.
      const endOfEpoch = (step + 1) % spe === 0 || step + 1 === totalSteps;
      let saved = false;
      if (endOfEpoch) {
        if ((epoch + 1) % cfg.train.save_ckpt_freq === 0 || step + 1 === totalSteps) {
          await save(step + 1, { loss });
          saved = true;
        }
        if (cfg.train.validate && data.val.list) {
          const vl = evalLoader(cfg, "val", data.val, dtype, proc.env);
          try {
            metrics.val = await validate(model, vl, arena, group);
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

      // 6. An interrupt on any rank (Ctrl-C, or the caller's signal during this step) stops every rank
      // here, with a checkpoint.
      const [stopVotes] = group.worldSize > 1
        ? await group.allReduceNumbers([opts.signal?.aborted ? 1 : 0], "sum")
        : [opts.signal?.aborted ? 1 : 0];
      if (stopVotes > 0) {
        if (!saved) await save(step + 1, { loss });
        interrupted = true;
        say(`interrupted after step ${step + 1}; saved ${lastCheckpoint}. Run the same command to resume.`);
        break;
      }
    }

    // 7. The multi-view test after the last step.
    if (!interrupted && cfg.train.test && data.test.list) {
      const extra = { checkpoint: lastCheckpoint ?? null, steps: totalSteps };
      const r = await runTest(cfg, model, data, dtype, arena, proc.env, group, extra);
      if (r) {
        test = r.summary;
        say(`${formatTest(cfg, test)}; per video: ${r.perVideo}`);
        await log({ test });
        tb?.scalar("test/top1", test.top1, totalSteps);
        tb?.scalar("test/top5", test.top5, totalSteps);
      }
    }
  } finally {
    tb?.close();
    jsonl?.close();
    const stats = await train.close();
    if (stats.failedFiles > 0) say(`skipped ${stats.failedFiles} video files that failed to decode`);
    arena.dispose();
    opt.free();
    model.free();
    await group.close();
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
    `mix ${m.mix}${m.mix === "none" ? "" : ` lam ${m.lam.toFixed(2)}`}`,
    `${m.videosPerSecond.toFixed(1)} videos/s`,
    `${m.stepMs.toFixed(0)} ms/step`,
    `data wait ${m.dataWaitPercent.toFixed(0)}%`,
    `mem ${m.memoryGiB.toFixed(2)} GiB`,
  ].join("  ");
}
