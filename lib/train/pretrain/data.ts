/**
 * Pretraining data of this rank: the generated moving-shapes dataset (made once, by rank 0), a list file
 * of videos, or one fixed random batch on the device (throughput mode), with V-SWIFT's tube masks.
 */
import { type LoaderPosition, VideoLoader } from "../../data/loader.ts";
import { ensureSyntheticDataset } from "../../data/synthetic.ts";
import type { TrainingProcess } from "../process.ts";
import { modelConfigOf, type PretrainConfig } from "./config.ts";

/** The pretraining loader of this rank; `resume` continues a checkpoint's stream. */
export async function pretrainLoader(
  cfg: PretrainConfig,
  proc: TrainingProcess,
  resume: LoaderPosition | undefined,
  say: (m: string) => void,
): Promise<VideoLoader> {
  const out = cfg.train.output;
  const d = cfg.data;
  const mc = modelConfigOf(cfg);
  let { list, root } = d;
  if (d.source === "shapes") {
    // Rank 0 makes the dataset; the others find it complete after the barrier.
    const make = () =>
      ensureSyntheticDataset({
        dir: `${out}/shapes`,
        videos: d.shapes_videos,
        seed: cfg.train.seed,
        onProgress: (done, total) => done === total && say(`generated ${total} videos in ${out}/shapes`),
      });
    if (proc.lead) await make();
    await proc.group.barrier();
    const ds = await make();
    list = ds.list;
    root = ds.dataRoot;
  }
  const { env } = proc;
  return new VideoLoader({
    mode: "pretrain",
    list: d.source === "memory" ? undefined : list,
    dataRoot: root || undefined,
    synthetic: d.source === "memory",
    batchSize: cfg.train.batch_size,
    frames: mc.frames,
    samplingRate: d.sampling_rate,
    inputSize: mc.imgSize,
    shortSide: d.short_side > 0 ? d.short_side : undefined,
    repeats: d.repeats,
    flip: d.flip,
    mean: d.mean,
    std: d.std,
    seed: cfg.train.seed,
    rank: env.rank,
    worldSize: env.worldSize,
    localRank: env.localRank,
    localWorldSize: env.localWorldSize,
    workers: d.workers > 0 ? d.workers : undefined,
    prefetch: d.prefetch,
    dtype: proc.dtype,
    samplesPerEpoch: d.samples_per_epoch > 0 ? d.samples_per_epoch : undefined,
    mask: { ratio: cfg.mask.ratio, tubelet: mc.tubelet, patch: mc.patchSize, rule: cfg.mask.rule },
    probeCache: proc.lead ? `${out}/probe_cache.json` : undefined,
    resume,
    log: (m) => console.error(m),
  });
}
