/**
 * The VideoMAE pretraining loop, V-SWIFT's recipe: per-step warmup and cosine schedule, AdamW on fp32
 * master weights with bf16 compute, optional gradient clipping, checkpoints that resume the same
 * schedule and data stream, logs, TensorBoard and reconstruction pictures. `deno task pretrain` runs it
 * from the command line; notebooks iterate it (one StepMetrics per step). The loop itself (process,
 * resume, guard, logs, checkpoints, stop) is lib/train/loop.ts; this file is what pretraining puts in it.
 */
import { encodePng, writePng } from "../../data/png_grid.ts";
import { type PretrainOutput, VideoMAEPretrain } from "../../model/pretrain.ts";
import { Rng } from "../../rng.ts";
import { readFloats } from "../../tensor.ts";
import { AdamW } from "../adamw.ts";
import { type LoopOptions, trainLoop } from "../loop.ts";
import { adamWOptions } from "../optim_config.ts";
import { modelConfigOf, type PretrainConfig } from "./config.ts";
import { pretrainLoader } from "./data.ts";
import { formatLine, type RunSummary, type StepMetrics } from "./metrics.ts";
import { mfu, peakFlops, trainFlopsPerVideo } from "./mfu.ts";
import { reconstructionGrid } from "./reconstruct.ts";
import { checkPretrainMemory } from "../memory_estimate.ts";

export type { LoopOptions } from "../loop.ts";
export { formatLine, type RunSummary, type StepMetrics } from "./metrics.ts";

/** Runs (or resumes) a pretraining run; yields the metrics of every step. */
export async function* pretrain(
  cfg: PretrainConfig,
  opts: LoopOptions = {},
): AsyncGenerator<StepMetrics, RunSummary> {
  const mc = modelConfigOf(cfg);
  // The tube-mask stream; its state travels in checkpoints.
  const rng = new Rng(cfg.train.seed + 1);
  let peak: number | undefined;
  const perVideo = trainFlopsPerVideo(mc, cfg.mask.ratio);

  return yield* trainLoop<VideoMAEPretrain, PretrainOutput, StepMetrics>(cfg, opts, {
    name: "pretraining",
    progress: true,
    build(proc, globalBatch, say) {
      peak = proc.native.backend === "cuda" ? peakFlops(proc.native.deviceName()) : undefined;
      const declared = new VideoMAEPretrain(mc);
      checkPretrainMemory(declared, cfg, proc.dtype, proc);
      const model = declared.allocate(proc.dtype).initialize(cfg.train.seed);
      const opt = new AdamW(model.store, adamWOptions(cfg.optim, globalBatch));
      say(
        `model: ${mc.name}, ${
          (model.parameterCount / 1e6).toFixed(3)
        }M parameters, ${proc.dtype} compute, fp32 masters`,
      );
      return { model, opt };
    },
    data: (proc, resume, say) => pretrainLoader(cfg, proc, resume, say),
    rngState: () => ({ mask: rng.state() }),
    restore: (state) => rng.setState(state.rng.mask),
    forward(model, g, batch) {
      const res = model.forward(g, batch.video, {
        mask: batch.mask,
        rng,
        maskRatio: cfg.mask.ratio,
        maskRule: cfg.mask.rule,
      });
      return { loss: res.loss, extra: res };
    },
    metrics: (f) => ({
      step: f.step,
      totalSteps: f.totalSteps,
      epoch: f.epoch,
      loss: f.loss,
      lossMean: f.lossMean,
      lr: f.lr,
      gradNorm: f.gradNorm,
      videosPerSecond: f.videosPerSecond,
      stepMs: f.stepMs,
      dataWaitPercent: f.dataWaitPercent,
      mfu: peak ? mfu(f.videosPerSecond, perVideo.honest, peak) : undefined,
      mfuVswift: peak ? mfu(f.videosPerSecond, perVideo.vswift, peak) : undefined,
      memoryGiB: f.memoryGiB,
    }),
    formatLine,
    scalars: (m) =>
      Object.entries(m).filter(([tag, v]) => typeof v === "number" && tag !== "step" && tag !== "totalSteps"),
    // Reconstruction pictures every vis_every steps and at the end.
    async afterStep(run, batch, res, m) {
      const every = cfg.train.vis_every;
      if (!run.proc.lead || every <= 0 || (m.step % every !== 0 && m.step !== m.totalSteps)) return;
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
      await Deno.mkdir(`${run.out}/reconstructions`, { recursive: true });
      await writePng(`${run.out}/reconstructions/step-${String(m.step).padStart(8, "0")}.png`, img);
      run.log.tb?.image("reconstruction", encodePng(img), img.width, img.height, m.step);
    },
  });
}
