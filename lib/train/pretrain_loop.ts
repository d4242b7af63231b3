/**
 * The VideoMAE pretraining loop, V-SWIFT's recipe: per-step warmup and cosine schedule, AdamW on fp32
 * master weights with bf16 compute, optional gradient clipping, checkpoints that resume the same
 * schedule and data stream, logs, TensorBoard and reconstruction pictures. `deno task pretrain` runs it
 * from the command line; notebooks iterate it (one StepMetrics per step).
 */
import { Graph } from "../autograd.ts";
import { VideoLoader } from "../data/loader.ts";
import { encodePng, writePng } from "../data/png_grid.ts";
import { ensureSyntheticDataset } from "../data/synthetic.ts";
import { GradSync } from "../dist/grad_sync.ts";
import { TensorBoardWriter } from "../io/tensorboard.ts";
import { Arena, persistentMemory } from "../memory.ts";
import { VideoMAEPretrain } from "../model/pretrain.ts";
import { Rng } from "../rng.ts";
import { readFloats, readScalar } from "../tensor.ts";
import { AdamW } from "./adamw.ts";
import { adamWOptions, runSchedule } from "./optim_config.ts";
import {
  type CheckpointState,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
} from "./checkpoint.ts";
import { modelConfigOf, type PretrainConfig } from "./config.ts";
import { describeProcess, openTrainingProcess } from "./process_group.ts";
import { mfu, peakFlops, trainFlopsPerVideo } from "./mfu.ts";
import { reconstructionGrid } from "./reconstruct.ts";
import { checkPretrainMemory } from "./memory_estimate.ts";

export interface StepMetrics {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  /** Mean loss since the last log line (what the log shows: single steps are noisy). */
  lossMean: number;
  lr: number;
  /** Global gradient norm before clipping (read on logging steps only; NaN otherwise). */
  gradNorm: number;
  videosPerSecond: number;
  stepMs: number;
  /** Share of the step time spent waiting for data, in percent. */
  dataWaitPercent: number;
  /** MFU with the FLOPs of the model as trained, on devices with a known peak. */
  mfu?: number;
  /** MFU in V-SWIFT's convention (decoder depth 8 FLOPs). */
  mfuVswift?: number;
  memoryGiB: number;
}

export interface RunSummary {
  steps: number;
  lastCheckpoint?: string;
  interrupted: boolean;
  skippedVideos: number;
  output: string;
}

export interface LoopOptions {
  /** Print log lines and a live progress line (the command line); notebooks leave it off. */
  print?: boolean;
  /** Aborting stops after the current step and saves a checkpoint (Ctrl-C does this in the task). */
  signal?: AbortSignal;
}

/** Runs (or resumes) a pretraining run; yields the metrics of every step. */
export async function* pretrain(
  cfg: PretrainConfig,
  opts: LoopOptions = {},
): AsyncGenerator<StepMetrics, RunSummary> {
  const out = cfg.train.output;
  const ckptDir = `${out}/checkpoints`;

  // Device and process group: one process per GPU (or per host-group member); rank 0 writes everything.
  const proc = await openTrainingProcess(cfg.train.device, cfg.model.dtype);
  const { env, group, lead, dtype } = proc;
  const n = proc.native;
  const device = n.deviceName();
  const say = (m: string) => opts.print && lead && console.log(m);
  say(describeProcess(proc));
  if (lead) await Deno.mkdir(out, { recursive: true });

  // Model and optimiser.
  const mc = modelConfigOf(cfg);
  const declared = new VideoMAEPretrain(mc);
  checkPretrainMemory(declared, cfg, dtype, proc);
  const model = declared.allocate(dtype).initialize(cfg.train.seed);
  const globalBatch = cfg.train.batch_size * group.worldSize;
  const opt = new AdamW(model.store, adamWOptions(cfg.optim, globalBatch));
  say(
    `model: ${mc.name}, ${
      (model.parameterCount / 1e6).toFixed(3)
    }M parameters, ${dtype} compute, fp32 masters`,
  );

  // Data.
  let list = cfg.data.list;
  let root = cfg.data.root;
  if (cfg.data.source === "shapes") {
    // Rank 0 makes the dataset; the others find it complete after the barrier.
    const make = () =>
      ensureSyntheticDataset({
        dir: `${out}/shapes`,
        videos: cfg.data.shapes_videos,
        seed: cfg.train.seed,
        onProgress: (done, total) => done === total && say(`generated ${total} videos in ${out}/shapes`),
      });
    if (lead) await make();
    await group.barrier();
    const ds = await make();
    list = ds.list;
    root = ds.dataRoot;
  }
  const makeLoader = (resume?: unknown) =>
    new VideoLoader({
      mode: "pretrain",
      list: cfg.data.source === "memory" ? undefined : list,
      dataRoot: root || undefined,
      synthetic: cfg.data.source === "memory",
      batchSize: cfg.train.batch_size,
      frames: mc.frames,
      samplingRate: cfg.data.sampling_rate,
      inputSize: mc.imgSize,
      shortSide: cfg.data.short_side > 0 ? cfg.data.short_side : undefined,
      repeats: cfg.data.repeats,
      flip: cfg.data.flip,
      mean: cfg.data.mean,
      std: cfg.data.std,
      seed: cfg.train.seed,
      rank: env.rank,
      worldSize: env.worldSize,
      localRank: env.localRank,
      localWorldSize: env.localWorldSize,
      workers: cfg.data.workers > 0 ? cfg.data.workers : undefined,
      prefetch: cfg.data.prefetch,
      dtype,
      samplesPerEpoch: cfg.data.samples_per_epoch > 0 ? cfg.data.samples_per_epoch : undefined,
      mask: { ratio: cfg.mask.ratio, tubelet: mc.tubelet, patch: mc.patchSize, rule: cfg.mask.rule },
      probeCache: lead ? `${out}/probe_cache.json` : undefined,
      resume: resume as never,
      log: (m) => console.error(m),
    });

  // Resume from the newest checkpoint of this output folder, if any.
  const latest = listCheckpoints(ckptDir).pop();
  let state: CheckpointState | undefined;
  if (latest) {
    state = await loadCheckpoint(latest.path, model, opt);
    say(`resuming from ${latest.path} (step ${state.step})`);
  }
  // Every rank continues its own part of the stream; the checkpoint holds rank 0's position.
  const loader = makeLoader(state ? { ...(state.data as object), rank: env.rank } : undefined);
  // Gradients are averaged in buckets that leave during the backward (a single process skips it).
  const sync = group.worldSize > 1 ? new GradSync(group, model.store) : undefined;
  // The same starting weights everywhere (a fresh init or a checkpoint alike).
  await group.broadcast(model.store.master!, 0);
  model.store.syncCompute();
  const spe = loader.stepsPerEpoch;
  const schedule = runSchedule(cfg.optim, { ...cfg.train, globalBatch, stepsPerEpoch: spe });
  const totalSteps = schedule.totalSteps;
  say(
    `schedule: ${totalSteps} steps (${spe} per epoch, global batch ${globalBatch}), warmup ${schedule.warmupSteps}`,
  );
  const rng = new Rng(cfg.train.seed + 1);
  if (state) rng.setState(state.rng.mask);

  // Figures for the logs.
  const peak = n.backend === "cuda" ? peakFlops(device) : undefined;
  const perVideo = trainFlopsPerVideo(mc, cfg.mask.ratio);
  const tb = lead && cfg.train.tensorboard ? new TensorBoardWriter(`${out}/tensorboard`) : undefined;
  const jsonl = lead
    ? await Deno.open(`${out}/metrics.jsonl`, { write: true, create: true, append: true })
    : undefined;
  const live = opts.print && lead && Deno.stdout.isTerminal();
  const arena = new Arena();
  let lastCheckpoint = latest?.path;
  let interrupted = false;
  let skippedVideos = 0;
  let windowStart = performance.now();
  let windowWait = loader.stats().waitedMs;
  let windowSteps = 0;
  let windowLoss = 0;

  const save = async (step: number, metrics: Record<string, number>) => {
    if (!lead) return;
    lastCheckpoint = await saveCheckpoint(ckptDir, model, opt, {
      version: 1,
      step,
      epoch: Math.floor(step / spe),
      optimizerStep: opt.step,
      config: cfg,
      data: loader.position(),
      rng: { mask: rng.state() },
      metrics,
    });
    await pruneCheckpoints(ckptDir, cfg.train.keep_last);
  };

  try {
    for (let step = state?.step ?? 0; step < totalSteps; step++) {
      // 1. Data: the next batch of clips with their tube masks, already normalised on the device.
      const g = new Graph(arena);
      const batch = await loader.next(g);
      if (!batch) throw new Error("The pretraining loader ran dry; this is a bug");
      const epoch = Math.floor(step / spe);

      // 2. Forward; a non-finite loss stops the run before it can touch the weights.
      const lr = schedule.at(step);
      model.store.zeroGrad();
      const res = model.forward(g, batch.video, {
        mask: batch.mask,
        rng,
        maskRatio: cfg.mask.ratio,
        maskRule: cfg.mask.rule,
      });
      const loss = readScalar(res.loss);
      if (!Number.isFinite(loss)) {
        throw new Error(
          `The loss is ${loss} at step ${step}; stopping. The last good checkpoint is ${
            lastCheckpoint ?? "none (none saved yet)"
          }`,
        );
      }

      // 3. Backward, gradients averaged over the ranks, AdamW (clipping inside when configured).
      g.backward(res.loss, sync?.hook(g));
      await sync?.finish();
      opt.update(lr);

      // 4. Metrics, logs, pictures.
      windowSteps++;
      const logNow = (step + 1) % cfg.train.log_every === 0 || step + 1 === totalSteps;
      const now = performance.now();
      const elapsed = now - windowStart;
      const waited = loader.stats().waitedMs - windowWait;
      const vps = (windowSteps * globalBatch * 1000) / elapsed;
      // The logged loss is the mean over the ranks.
      const [lossSum] = group.worldSize > 1 ? await group.allReduceNumbers([loss], "sum") : [loss];
      const metrics: StepMetrics = {
        step: step + 1,
        totalSteps,
        epoch,
        loss: lossSum / group.worldSize,
        lossMean: (windowLoss += lossSum / group.worldSize) / windowSteps,
        lr,
        gradNorm: logNow ? readScalar(opt.gradNorm) : NaN,
        videosPerSecond: vps,
        stepMs: elapsed / windowSteps,
        dataWaitPercent: (100 * waited) / elapsed,
        mfu: peak ? mfu(vps, perVideo.honest, peak) : undefined,
        mfuVswift: peak ? mfu(vps, perVideo.vswift, peak) : undefined,
        memoryGiB: (persistentMemory().peak + arena.peak) / 2 ** 30,
      };
      if (live) {
        const eta = ((totalSteps - step - 1) * metrics.stepMs) / 1000;
        await Deno.stdout.write(
          new TextEncoder().encode(
            `\rstep ${step + 1}/${totalSteps}  loss ${metrics.lossMean.toFixed(4)}  ${
              vps.toFixed(1)
            } videos/s  ETA ${formatSeconds(eta)}   `,
          ),
        );
      }
      if (logNow) {
        if (live) await Deno.stdout.write(new TextEncoder().encode("\r\x1b[K"));
        say(formatLine(metrics));
        await jsonl?.write(new TextEncoder().encode(JSON.stringify(metrics) + "\n"));
        if (tb) {
          for (const [tag, v] of Object.entries(metrics)) {
            if (typeof v === "number" && Number.isFinite(v) && tag !== "step" && tag !== "totalSteps") {
              tb.scalar(tag, v, step + 1);
            }
          }
        }
        windowStart = performance.now();
        windowWait = loader.stats().waitedMs;
        windowSteps = 0;
        windowLoss = 0;
      }
      if (
        lead && cfg.train.vis_every > 0 && ((step + 1) % cfg.train.vis_every === 0 || step + 1 === totalSteps)
      ) {
        const img = reconstructionGrid({
          video: readFloats(batch.video),
          shape: batch.video.shape,
          pred: readFloats(res.pred),
          mask: res.mask,
          tubelet: mc.tubelet,
          patch: mc.patchSize,
          mean: cfg.data.mean,
          std: cfg.data.std,
        });
        await Deno.mkdir(`${out}/reconstructions`, { recursive: true });
        await writePng(`${out}/reconstructions/step-${String(step + 1).padStart(8, "0")}.png`, img);
        tb?.image("reconstruction", encodePng(img), img.width, img.height, step + 1);
      }
      yield metrics;
      g.reset();

      // 5. Checkpoints: every save_every steps, or at the end of every save_ckpt_freq-th epoch.
      const endOfEpoch = (step + 1) % spe === 0;
      const due = cfg.train.save_every > 0
        ? (step + 1) % cfg.train.save_every === 0
        : endOfEpoch && (epoch + 1) % cfg.train.save_ckpt_freq === 0;
      // Every rank stops after the same step when any of them was interrupted.
      const [stopVotes] = group.worldSize > 1
        ? await group.allReduceNumbers([opts.signal?.aborted ? 1 : 0], "sum")
        : [opts.signal?.aborted ? 1 : 0];
      if (stopVotes > 0) {
        await save(step + 1, { loss });
        interrupted = true;
        say(`interrupted after step ${step + 1}; saved ${lastCheckpoint}. Run the same command to resume.`);
        break;
      }
      if (due || step + 1 === totalSteps) await save(step + 1, { loss });
    }
  } finally {
    tb?.close();
    jsonl?.close();
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
  return { steps: totalSteps, lastCheckpoint, interrupted, skippedVideos, output: out };
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0
    ? `${h}h${String(m).padStart(2, "0")}m`
    : `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

/** One log line: step, epoch, loss, lr, grad norm, videos/s, step time, data wait, MFU, memory. */
export function formatLine(m: StepMetrics): string {
  const parts = [
    `step ${m.step}/${m.totalSteps}`,
    `epoch ${m.epoch}`,
    `loss ${m.lossMean.toFixed(4)}`,
    `lr ${m.lr.toExponential(2)}`,
    `grad_norm ${Number.isFinite(m.gradNorm) ? m.gradNorm.toFixed(3) : "-"}`,
    `${m.videosPerSecond.toFixed(1)} videos/s`,
    `${m.stepMs.toFixed(0)} ms/step`,
    `data wait ${m.dataWaitPercent.toFixed(0)}%`,
  ];
  if (m.mfu !== undefined) {
    parts.push(`MFU ${(100 * m.mfu).toFixed(1)}% (V-SWIFT convention ${(100 * m.mfuVswift!).toFixed(1)}%)`);
  }
  parts.push(`mem ${m.memoryGiB.toFixed(2)} GiB`);
  return parts.join("  ");
}
