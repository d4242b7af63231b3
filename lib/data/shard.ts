/**
 * Which videos each rank sees. Training: one permutation per epoch from (seed, epoch), shared by every
 * rank, dealt out step by step in disjoint slices with the tail dropped so that every rank takes the
 * same number of steps (V-SWIFT seeds the permutation with seed + rank, so its "shards" overlap: spec §9.3).
 * Limited-storage mode: each node shuffles its own local list among its local ranks and an epoch is a
 * configured number of samples. Evaluation: every (video, chunk, split) view exactly once across ranks,
 * padded with flagged duplicates so that every rank has the same number of batches.
 */
import { rngFor, STREAM } from "./seed.ts";

/** The permutation of epoch `epoch`, the same on every rank. */
export function epochPermutation(n: number, seed: number, epoch: number, node = 0): Int32Array {
  return rngFor(STREAM.permutation, seed, epoch, node).permutation(n);
}

/** The layout of one rank's part of an epoch. */
export interface ShardPlan {
  /** Videos of the list this plan shuffles (the whole list, or the node's local list). */
  videos: number;
  /** Ranks that share the permutation and their position among them. */
  shards: number;
  shard: number;
  /** Videos per step on one rank (batch size / repeats). */
  perStep: number;
  /** Steps per data epoch: floor(videos / shards / perStep). */
  steps: number;
}

export function shardPlan(videos: number, shards: number, shard: number, perStep: number): ShardPlan {
  if (!(Number.isInteger(shards) && shards >= 1 && Number.isInteger(shard) && shard >= 0 && shard < shards)) {
    throw new RangeError(`Rank ${shard} is not in [0, ${shards})`);
  }
  const steps = Math.floor(videos / shards / perStep);
  if (steps < 1) {
    throw new RangeError(
      `${videos} videos over ${shards} ranks give no full step of ${perStep} videos per rank; ` +
        `use a smaller batch or more videos`,
    );
  }
  return { videos, shards, shard, perStep, steps };
}

/** Position in the epoch's permutation of this rank's first video at `step`. */
export function stepStart(plan: ShardPlan, step: number): number {
  return (step * plan.shards + plan.shard) * plan.perStep;
}

/**
 * The list indices of this rank's videos at (epoch, step). Step s of the whole run takes the next
 * shards x perStep videos of the permutation and rank r the r-th slice of them, so W ranks with batch b
 * see exactly the videos that one process with batch W x b sees, step for step.
 */
export function stepVideos(plan: ShardPlan, perm: Int32Array, step: number): Int32Array {
  const begin = stepStart(plan, step);
  return perm.subarray(begin, begin + plan.perStep);
}

/** This rank's whole part of an epoch (for replacement draws "from the same shard"). */
export function rankPart(plan: ShardPlan, perm: Int32Array): Int32Array {
  const out = new Int32Array(plan.steps * plan.perStep);
  for (let s = 0; s < plan.steps; s++) out.set(stepVideos(plan, perm, s), s * plan.perStep);
  return out;
}

/** One evaluation view. `pad` marks duplicates added to even out the ranks (to be ignored when merging). */
export interface View {
  video: number;
  chunk: number;
  split: number;
  pad: boolean;
}

/**
 * Every (video, chunk, split) view, video-major (so a rank decodes each video once for all its views),
 * padded to a multiple of ranks x batch with flagged copies of the first views; rank r takes the r-th
 * contiguous part.
 */
export function evalViews(
  videos: number,
  chunks: number,
  splits: number,
  worldSize: number,
  rank: number,
  batchSize: number,
): View[] {
  if (!(rank >= 0 && rank < worldSize)) throw new RangeError(`Rank ${rank} is not in [0, ${worldSize})`);
  const total = videos * chunks * splits;
  if (total === 0) throw new RangeError("Evaluation needs at least one video");
  const unit = worldSize * batchSize;
  const padded = Math.ceil(total / unit) * unit;
  const perRank = padded / worldSize;
  const out: View[] = [];
  for (let i = rank * perRank; i < (rank + 1) * perRank; i++) {
    const j = i % total;
    const video = Math.floor(j / (chunks * splits));
    const chunk = Math.floor(j / splits) % chunks;
    out.push({ video, chunk, split: j % splits, pad: i >= total });
  }
  return out;
}
