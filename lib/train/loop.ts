/**
 * The training loop that pretraining and fine-tuning share: open the process, build the model and the
 * optimiser, resume (or start), broadcast the weights, open the data, the schedule; then per step the
 * batch, the task's forward, backward with gradients averaged over the ranks, the guard against
 * non-finite steps, AdamW, the
 * log window, checkpoints and the stop vote. A task passes in what differs (its model, data, forward,
 * metrics, and what happens after a step, at the end of an epoch and after the last step), so reliability
 * rules (guards, signals, resume) live here once.
 */
import { Graph } from "../autograd.ts";
import type { Batch, LoaderPosition, VideoLoader } from "../data/loader.ts";
import { GradSync } from "../distributed/grad_sync.ts";
import type { DeviceChoice } from "../ffi/native.ts";
import { Arena, persistentMemory } from "../memory.ts";
import type { VideoModel } from "../model/base.ts";
import { readScalar, type Tensor } from "../tensor.ts";
import type { AdamW } from "./adamw.ts";
import {
  type CheckpointState,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
} from "./checkpoint.ts";
import { type OptimSection, runSchedule } from "./optim_config.ts";
import { describeProcess, openTrainingProcess, type TrainingProcess } from "./process.ts";
import { RefusedToStart, unlessStopped } from "./exit_codes.ts";
import { NonFiniteGuard, NonFiniteStepError } from "./nonfinite.ts";
import { RunLog, type WindowFigures } from "./run_log.ts";
import { setAsidePreviousRun, truncateMetrics } from "./run_files.ts";

/** The config sections the loop reads (both tasks' configs have them). */
export interface LoopConfig {
  model: { dtype: "auto" | "f32" | "bf16" };
  optim: OptimSection;
  train: {
    epochs: number;
    batch_size: number;
    steps: number;
    device: DeviceChoice;
    output: string;
    /** Save every this many steps (absent or 0: at the end of every save_ckpt_freq-th epoch). */
    save_every?: number;
    save_ckpt_freq: number;
    keep_last: number;
    log_every: number;
    tensorboard: boolean;
    /** auto: resume when a checkpoint exists; always: insist on one; never: set the old run aside. */
    resume: "auto" | "always" | "never";
  };
}

export interface LoopOptions {
  /** Print log lines and a live progress line (the command line); notebooks leave it off. */
  print?: boolean;
  /** Aborting stops after the current step and saves a checkpoint (Ctrl-C does this in the task). */
  signal?: AbortSignal;
}

/** What every step reports, before the task adds its own figures. */
export interface StepFigures extends WindowFigures {
  /** Steps done (1-based). */
  step: number;
  totalSteps: number;
  epoch: number;
  /** Mean over the ranks. */
  loss: number;
  lr: number;
  /** Global gradient norm before clipping (every step: the guard reads it before the update). */
  gradNorm: number;
  memoryGiB: number;
}

/** The open run, as the task's parts see it. */
export interface Run<M extends VideoModel> {
  proc: TrainingProcess;
  out: string;
  model: M;
  opt: AdamW;
  globalBatch: number;
  arena: Arena;
  log: RunLog;
  totalSteps: number;
  lastCheckpoint?: string;
}

/** The parts of a training task the loop calls; `X` is what the task's forward hands its metrics. */
export interface TrainTask<M extends VideoModel, X, S> {
  /** "pretraining" or "training": names the loader in errors. */
  name: string;
  /** Shows the live progress line on a terminal. */
  progress?: boolean;
  build(proc: TrainingProcess, globalBatch: number, say: (m: string) => void): { model: M; opt: AdamW };
  /** Starting weights when there is no checkpoint to resume from (pretrained weights, say). */
  start?(model: M, say: (m: string) => void): Promise<void>;
  /** The training data; `resume` continues this rank's part of a checkpoint's stream. */
  data(
    proc: TrainingProcess,
    resume: LoaderPosition | undefined,
    say: (m: string) => void,
  ): Promise<VideoLoader>;
  /** RNG states to checkpoint, and restoring them on resume. */
  rngState?(): Record<string, (number | null)[]>;
  restore?(state: CheckpointState): void;
  /** The forward of step `step` (0-based), gradients zeroed; the loop does the backward and AdamW. */
  forward(model: M, g: Graph, batch: Batch, step: number): { loss: Tensor; extra: X };
  /** The step's metrics from the shared figures. */
  metrics(f: StepFigures, extra: X): S;
  formatLine(m: S): string;
  /** TensorBoard scalars of a logged step. */
  scalars(m: S): [string, number][];
  /** After the step's log, with its graph still alive (pictures from its tensors). */
  afterStep?(run: Run<M>, batch: Batch, extra: X, m: S): Promise<void>;
  /** At the end of an epoch (and of the run), after its checkpoint. */
  endOfEpoch?(run: Run<M>, m: S): Promise<void>;
  /** After the last step of a run that was not interrupted, before the model is freed. */
  finish?(run: Run<M>): Promise<void>;
}

/** What a finished (or interrupted) run leaves. */
export interface LoopSummary {
  steps: number;
  output: string;
  lastCheckpoint?: string;
  interrupted: boolean;
  skippedVideos: number;
}

/** Runs (or resumes) a training run of `task`; yields the metrics of every step. */
export async function* trainLoop<M extends VideoModel, X, S>(
  cfg: LoopConfig,
  opts: LoopOptions,
  task: TrainTask<M, X, S>,
): AsyncGenerator<S, LoopSummary> {
  const out = cfg.train.output;
  const ckptDir = `${out}/checkpoints`;

  // Device and process group: one process per GPU (or per host-group member); rank 0 writes everything.
  // A signal while the ranks meet (which can wait for a missing rank until its timeout) ends the run
  // there: nothing is trained yet.
  const proc = await unlessStopped(
    openTrainingProcess(cfg.train.device, cfg.model.dtype),
    opts.signal,
    "the rendezvous",
  );
  const { group, lead } = proc;
  const rank = proc.env.rank;
  const say = (m: string) => opts.print && lead && console.log(m);
  say(describeProcess(proc));
  await Deno.mkdir(out, { recursive: true });

  // Model and optimiser; the newest checkpoint of this run, else the task's start; the same weights on
  // every rank.
  const globalBatch = cfg.train.batch_size * group.worldSize;
  const { model, opt } = task.build(proc, globalBatch, say);
  let latest = listCheckpoints(ckptDir).pop();
  if (cfg.train.resume === "never") {
    // Start afresh as asked, with the previous run's files kept aside rather than mixed in or deleted.
    const aside = lead ? await setAsidePreviousRun(out) : undefined;
    if (aside) say(`--no-resume: the previous run's checkpoints and logs are now in ${aside}`);
    latest = undefined;
  } else if (cfg.train.resume === "always" && !latest) {
    throw new RefusedToStart(`--resume: ${ckptDir} holds no checkpoint to resume from`);
  }
  let state: CheckpointState | undefined;
  if (latest) {
    // The same run only: a changed configuration is named key by key (ConfigChangedError).
    state = await loadCheckpoint(latest.path, model, opt, { config: cfg, say });
    say(`resuming from ${latest.path} (step ${state.step})`);
  } else if (task.start) await task.start(model, say);
  else say(`starting from a fresh initialisation (no checkpoint in ${ckptDir})`);
  // Lines logged after the checkpoint (a kill -9 past it) are logged again by this run: drop them.
  const dropped = lead ? await truncateMetrics(`${out}/metrics.jsonl`, state?.step ?? 0) : 0;
  if (dropped > 0) {
    say(`metrics.jsonl: dropped ${dropped} line(s) past step ${state?.step ?? 0}, which this run redoes`);
  }
  await group.broadcast(model.store.master!, 0);
  model.store.syncCompute();
  // Gradients are averaged in buckets that leave during the backward (a single process skips it).
  const sync = group.worldSize > 1 ? new GradSync(group, model.store) : undefined;

  // Data: every rank continues its own part of the stream (the checkpoint holds rank 0's position).
  const resume = state ? { ...(state.data as LoaderPosition), rank } : undefined;
  const loader = await task.data(proc, resume, say);
  const spe = loader.stepsPerEpoch;
  const schedule = runSchedule(cfg.optim, { ...cfg.train, globalBatch, stepsPerEpoch: spe });
  const totalSteps = schedule.totalSteps;
  say(
    `schedule: ${totalSteps} steps (${spe} per epoch, global batch ${globalBatch}), warmup ${schedule.warmupSteps}`,
  );
  if (state) task.restore?.(state);

  const log = await RunLog.open({
    out,
    lead,
    print: !!opts.print,
    tensorboard: cfg.train.tensorboard,
    progress: !!task.progress,
    waitedMs: () => loader.stats().waitedMs,
  });
  const arena = new Arena();
  const run: Run<M> = {
    proc,
    out,
    model,
    opt,
    globalBatch,
    arena,
    log,
    totalSteps,
    lastCheckpoint: latest?.path,
  };
  const guard = new NonFiniteGuard(cfg.optim.skip_nonfinite);
  let interrupted = false;
  let skippedVideos = 0;

  const save = async (step: number, loss: number) => {
    if (!lead) return;
    // A checkpoint is a place to go on from: weights that overflowed (even from finite gradients, at an
    // absurd learning rate) are never written.
    const bad = model.store.nonFinite();
    if (bad.length > 0) {
      throw new NonFiniteStepError(
        `The weights hold non-finite values after step ${step} (${bad.slice(0, 3).join(", ")}${
          bad.length > 3 ? `, ... ${bad.length} tensors` : ""
        }); not saving them. The last good checkpoint is ${
          run.lastCheckpoint ?? "none (none was saved yet)"
        }. Lower optim.lr or set optim.clip_grad, then resume from it`,
      );
    }
    run.lastCheckpoint = await saveCheckpoint(ckptDir, model, opt, {
      version: 1,
      step,
      epoch: Math.floor(step / spe),
      optimizerStep: opt.step,
      config: cfg,
      data: loader.position(),
      rng: task.rngState?.() ?? {},
      metrics: { loss },
    });
    await pruneCheckpoints(ckptDir, cfg.train.keep_last);
  };
  // Every rank stops after the same step when any of them was interrupted.
  const stopVote = async () => {
    const mine = opts.signal?.aborted ? 1 : 0;
    const [votes] = group.worldSize > 1 ? await group.allReduceNumbers([mine], "sum") : [mine];
    return votes > 0;
  };

  try {
    for (let step = state?.step ?? 0; step < totalSteps; step++) {
      // 1. Data and the task's forward.
      const g = new Graph(arena);
      const batch = await loader.next(g);
      if (!batch) throw new Error(`The ${task.name} loader ran dry; this is a bug`);
      const epoch = Math.floor(step / spe);
      const lr = schedule.at(step);
      model.store.zeroGrad();
      const { loss: lossTensor, extra } = task.forward(model, g, batch, step);
      const local = readScalar(lossTensor);

      // 2. Backward and gradients averaged over the ranks (every rank takes part, whatever its loss, so
      // that the collectives stay matched). Then the guard, on figures every rank shares: the mean loss
      // (NaN when any rank's is) and the norm of the averaged gradients. A non-finite step is never
      // applied; it stops the run or, within optim.skip_nonfinite, is skipped.
      g.backward(lossTensor, sync?.hook(g));
      await sync?.finish();
      const [lossSum] = group.worldSize > 1 ? await group.allReduceNumbers([local], "sum") : [local];
      const loss = lossSum / group.worldSize;
      const gradNorm = opt.checkGradients();
      if (guard.check(step + 1, loss, gradNorm, run.lastCheckpoint, say) === "apply") opt.update(lr);

      // 3. Metrics and logs; the logged loss is the mean over the ranks.
      const logNow = (step + 1) % cfg.train.log_every === 0 || step + 1 === totalSteps;
      const f: StepFigures = {
        step: step + 1,
        totalSteps,
        epoch,
        loss,
        lr,
        gradNorm,
        ...log.add(loss, globalBatch),
        memoryGiB: (persistentMemory().peak + arena.peak) / 2 ** 30,
      };
      const m = task.metrics(f, extra);
      await log.progress(step + 1, totalSteps, f);
      if (logNow) {
        await log.line(task.formatLine(m));
        await log.record(m);
        for (const [tag, v] of task.scalars(m)) if (Number.isFinite(v)) log.tb?.scalar(tag, v, step + 1);
        log.reset();
      }
      await task.afterStep?.(run, batch, extra, m);
      g.reset();

      // 4. Checkpoints: every save_every steps, or at the end of every save_ckpt_freq-th epoch, and at
      // the end; then the task's end of epoch.
      const last = step + 1 === totalSteps;
      const endOfEpoch = (step + 1) % spe === 0;
      const due = (cfg.train.save_every ?? 0) > 0
        ? (step + 1) % cfg.train.save_every! === 0
        : endOfEpoch && (epoch + 1) % cfg.train.save_ckpt_freq === 0;
      if (due || last) await save(step + 1, loss);
      if (endOfEpoch || last) await task.endOfEpoch?.(run, m);
      yield m;

      // 5. An interrupt on any rank (Ctrl-C, or the caller's signal during this step) stops every rank
      // here, with a checkpoint.
      if (await stopVote()) {
        if (!due && !last) await save(step + 1, loss);
        interrupted = true;
        say(
          `interrupted after step ${step + 1}; saved ${run.lastCheckpoint}. Run the same command to resume.`,
        );
        break;
      }
    }
    if (!interrupted) await task.finish?.(run);
  } finally {
    log.close();
    const stats = await loader.close();
    skippedVideos = stats.failedFiles;
    if (skippedVideos > 0) {
      say(`skipped ${skippedVideos} video files that failed to decode (see the messages above)`);
    }
    arena.dispose();
    opt.free();
    model.free();
    await group.close();
  }
  return { steps: totalSteps, output: out, lastCheckpoint: run.lastCheckpoint, interrupted, skippedVideos };
}
