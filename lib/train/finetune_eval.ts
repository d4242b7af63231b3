/**
 * Evaluation of a classifier: the per-epoch validation (one centre view per video: top-1, top-5 and
 * cross-entropy, pad views left out) and the final multi-view test (every view's logits written to this
 * rank's file, then merged over every rank's file into per-video results and a summary).
 */
import { Graph } from "../autograd.ts";
import type { VideoLoader } from "../data/loader.ts";
import type { Arena } from "../memory.ts";
import type { VideoClassifier } from "../model/classifier.ts";
import { readFloats } from "../tensor.ts";
import {
  appendViews,
  mergeViews,
  readViews,
  softmax,
  type TestSummary,
  topK,
  type ViewOutput,
  writeTestResults,
} from "./tta.ts";

/** Validation figures over the videos of one pass (percent for accuracies). */
export interface EvalMetrics {
  top1: number;
  top5: number;
  loss: number;
  videos: number;
}

/** Runs the loader's one pass through the model without gradients; calls `each` per batch. */
async function forEachBatch(
  model: VideoClassifier,
  loader: VideoLoader,
  arena: Arena,
  each: (
    logits: Float32Array,
    labels: Int32Array,
    keys: { video: number; chunk: number; split: number; pad: boolean }[],
  ) => void | Promise<void>,
): Promise<void> {
  for (;;) {
    const g = new Graph(arena, { grad: false });
    const batch = await loader.next(g);
    if (!batch) {
      g.reset();
      return;
    }
    const { logits } = model.forward(g, batch.video);
    const values = readFloats(logits);
    g.reset();
    await each(values, batch.labels, batch.keys);
  }
}

/** Top-1 / top-5 / mean cross-entropy on hard labels over the non-pad views of a val loader. */
export async function validate(
  model: VideoClassifier,
  loader: VideoLoader,
  arena: Arena,
): Promise<EvalMetrics> {
  const k = model.numClasses;
  let n = 0;
  let c1 = 0;
  let c5 = 0;
  let loss = 0;
  await forEachBatch(model, loader, arena, (logits, labels, keys) => {
    keys.forEach((key, i) => {
      if (key.pad) return;
      const row = logits.subarray(i * k, (i + 1) * k);
      const p = softmax(row);
      const top = topK(row, 5);
      n++;
      if (top[0] === labels[i]) c1++;
      if (top.includes(labels[i])) c5++;
      loss -= Math.log(Math.max(p[labels[i]], 1e-300));
    });
  });
  return { top1: n ? (100 * c1) / n : 0, top5: n ? (100 * c5) / n : 0, loss: n ? loss / n : NaN, videos: n };
}

/** The view file of one rank in a test folder. */
export function viewFile(dir: string, rank: number): string {
  return `${dir}/views_rank${rank}.jsonl`;
}

/** Runs this rank's test views through the model and writes their logits to its view file. */
export async function testViews(
  model: VideoClassifier,
  loader: VideoLoader,
  arena: Arena,
  dir: string,
  rank: number,
): Promise<number> {
  await Deno.mkdir(dir, { recursive: true });
  const path = viewFile(dir, rank);
  await Deno.remove(path).catch(() => {});
  const k = model.numClasses;
  let written = 0;
  await forEachBatch(model, loader, arena, async (logits, labels, keys) => {
    const views: ViewOutput[] = keys.map((key, i) => ({
      video: key.video,
      chunk: key.chunk,
      split: key.split,
      pad: key.pad,
      label: labels[i],
      logits: logits.slice(i * k, (i + 1) * k),
    }));
    await appendViews(path, views);
    written += views.length;
  });
  return written;
}

/**
 * Merges the view files of ranks 0 .. worldSize - 1 and writes test_per_video.csv and
 * test_summary.json into `dir` (rank 0's job).
 */
export async function mergeTest(
  dir: string,
  worldSize: number,
  opts: {
    videos: number;
    viewsPerVideo: number;
    paths?: string[];
    labelNames?: string[];
    extra?: Record<string, unknown>;
  },
): Promise<{ summary: TestSummary; perVideo: string; summaryFile: string }> {
  const files = Array.from({ length: worldSize }, (_, r) => viewFile(dir, r));
  const merged = mergeViews(await readViews(files), {
    videos: opts.videos,
    viewsPerVideo: opts.viewsPerVideo,
  });
  const out = await writeTestResults(dir, merged, {
    paths: opts.paths,
    labelNames: opts.labelNames,
    extra: opts.extra,
  });
  return { summary: merged.summary, perVideo: out.perVideo, summaryFile: out.summary };
}
