/**
 * The data of a fine-tuning run: the configured list files, or the generated motion dataset (a labelled
 * train split and a held-out split from another seed, used for validation and test), and the loaders
 * of each mode for this rank.
 */
import { type LoaderPosition, VideoLoader } from "../../data/loader.ts";
import { ensureSyntheticDataset } from "../../data/synthetic.ts";
import type { ProcessGroup } from "../../distributed/group.ts";
import { type FinetuneConfig, headClasses } from "./config.ts";
import { finetuneModelConfig } from "./model.ts";

/** A list file and the folder its relative paths start from ("" = as written). */
export interface Split {
  list: string;
  root: string;
}

/** Data of a run. */
export interface RunData {
  train: Split;
  val: Split;
  test: Split;
}

/** This process's place in the run. */
export interface RankInfo {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
}

/**
 * The splits of a configuration. For source "shapes", rank 0 generates the dataset (once; later runs
 * find it complete) while the other ranks wait at a barrier.
 */
export async function resolveData(
  cfg: FinetuneConfig,
  group?: ProcessGroup,
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
  const make = () =>
    Promise.all([
      ensureSyntheticDataset({
        ...common,
        dir: `${dir}/train`,
        videos: cfg.data.shapes_train_videos,
        seed: cfg.train.seed,
      }),
      // The held-out split comes from another seed: other shapes, colours, speeds and positions.
      ensureSyntheticDataset({
        ...common,
        dir: `${dir}/eval`,
        videos: cfg.data.shapes_eval_videos,
        seed: cfg.train.seed + 1000,
      }),
    ]);
  if (group && group.worldSize > 1) {
    if (group.rank === 0) await make();
    await group.barrier();
  }
  const [train, heldOut] = await make();
  say(
    `data: generated motion clips in ${dir} (${train.videos} train, ${heldOut.videos} held out, ${train.classes} classes)`,
  );
  const evalSplit = { list: heldOut.list, root: heldOut.dataRoot };
  return { train: { list: train.list, root: train.dataRoot }, val: evalSplit, test: evalSplit };
}

const single: RankInfo = { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1 };

/** The training loader of this rank (RandAugment, random resized crop and erasing as configured). */
export function trainLoader(
  cfg: FinetuneConfig,
  split: Split,
  dtype: "f32" | "bf16",
  ranks: RankInfo = single,
  resume?: LoaderPosition,
): VideoLoader {
  const m = finetuneModelConfig(cfg);
  return new VideoLoader({
    mode: "train",
    list: split.list,
    dataRoot: split.root || undefined,
    batchSize: cfg.train.batch_size,
    frames: m.frames,
    inputSize: m.imgSize,
    shortSide: cfg.data.short_side > 0 ? cfg.data.short_side : undefined,
    repeats: cfg.data.repeats,
    flip: cfg.data.flip,
    cropScale: [cfg.data.crop_scale[0], cfg.data.crop_scale[1]],
    mean: cfg.data.mean,
    std: cfg.data.std,
    seed: cfg.train.seed,
    rank: ranks.rank,
    worldSize: ranks.worldSize,
    localRank: ranks.localRank,
    localWorldSize: ranks.localWorldSize,
    workers: cfg.data.workers > 0 ? cfg.data.workers : undefined,
    prefetch: cfg.data.prefetch,
    dtype,
    randAugment: cfg.data.rand_augment || undefined,
    randomErasing: cfg.data.reprob,
    probeCache: ranks.rank === 0 ? `${cfg.train.output}/probe_cache.json` : undefined,
    resume,
    log: (msg) => console.error(msg),
  });
}

/**
 * A validation (mode "val": one centre view per video) or test (mode "test": S x K views) loader of
 * this rank; across ranks every view is taken exactly once, pads flagged.
 */
export function evalLoader(
  cfg: FinetuneConfig,
  mode: "val" | "test",
  split: Split,
  dtype: "f32" | "bf16",
  ranks: RankInfo = single,
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
    rank: ranks.rank,
    worldSize: ranks.worldSize,
    workers: cfg.data.workers > 0 ? cfg.data.workers : undefined,
    prefetch: cfg.data.prefetch,
    dtype,
    testChunks: cfg.data.test_chunks,
    testCrops: cfg.data.test_crops,
    probeCache: ranks.rank === 0 ? `${cfg.train.output}/probe_cache.json` : undefined,
    log: (msg) => console.error(msg),
  });
}
