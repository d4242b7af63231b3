/**
 * Evaluation of a classifier: the per-epoch validation (one centre view per video: top-1, top-5 and
 * cross-entropy over the videos of every rank, pad views left out) and the multi-view test (each rank
 * writes its views' logits to its own file; rank 0 merges every rank's file into per-video results and a
 * summary). `evaluateCheckpoint` is `deno task eval --ckpt`: the test alone.
 */
import { Graph } from "../../autograd.ts";
import { readHeadMap, readLabelNames } from "../../data/labels.ts";
import type { VideoLoader } from "../../data/loader.ts";
import { MOTION_CLASSES } from "../../data/synthetic.ts";
import type { ProcessGroup } from "../../distributed/group.ts";
import { Arena } from "../../memory.ts";
import type { VideoClassifier } from "../../model/classifier.ts";
import { formatReport, loadPretrained, type PretrainedReport } from "../../model/pretrained.ts";
import { readFloats } from "../../tensor.ts";
import { type FinetuneConfig, modelKeys } from "./config.ts";
import { evalLoader, type RankInfo, resolveData, type RunData } from "./data.ts";
import { buildClassifier } from "./model.ts";
import { describeProcess, openTrainingProcess } from "../process.ts";
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

type Keys = { video: number; chunk: number; split: number; pad: boolean }[];

/**
 * Runs the loader's one pass through the model without gradients; calls `each` per batch with the
 * logits (B, classes), or with the features the head reads (B, C) when `output` is "features".
 */
export async function forEachBatch(
  model: VideoClassifier,
  loader: VideoLoader,
  arena: Arena,
  each: (values: Float32Array, labels: Int32Array, keys: Keys) => void | Promise<void>,
  output: "logits" | "features" = "logits",
): Promise<void> {
  for (;;) {
    const g = new Graph(arena, { grad: false });
    const batch = await loader.next(g);
    if (!batch) {
      g.reset();
      return;
    }
    const values = readFloats(model.forward(g, batch.video)[output]);
    g.reset();
    await each(values, batch.labels, batch.keys);
  }
}

/**
 * Top-1 / top-5 / mean cross-entropy on hard labels over the non-pad views of this rank's val loader,
 * summed over the ranks of `group` when given.
 */
export async function validate(
  model: VideoClassifier,
  loader: VideoLoader,
  arena: Arena,
  group?: ProcessGroup,
): Promise<EvalMetrics> {
  const k = model.numClasses;
  let [n, c1, c5, loss] = [0, 0, 0, 0];
  await forEachBatch(model, loader, arena, (logits, labels, keys) => {
    keys.forEach((key, i) => {
      if (key.pad) return;
      const row = logits.subarray(i * k, (i + 1) * k);
      const top = topK(row, 5);
      n++;
      if (top[0] === labels[i]) c1++;
      if (top.includes(labels[i])) c5++;
      loss -= Math.log(Math.max(softmax(row)[labels[i]], 1e-300));
    });
  });
  if (group && group.worldSize > 1) {
    [n, c1, c5, loss] = await group.allReduceNumbers([n, c1, c5, loss], "sum");
  }
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

/** Merges the view files of ranks 0 .. worldSize - 1 and writes test_per_video.csv and test_summary.json. */
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

/** Where a test's results are. */
export interface TestResult {
  summary: TestSummary;
  perVideo: string;
  summaryFile: string;
}

/**
 * The multi-view test of a model on the test split, into <train.output>/test: every rank writes its
 * views, then rank 0 merges them (other ranks get undefined).
 */
export async function runTest(
  cfg: FinetuneConfig,
  model: VideoClassifier,
  data: RunData,
  dtype: "f32" | "bf16",
  arena: Arena,
  ranks: RankInfo,
  group?: ProcessGroup,
  extra: Record<string, unknown> = {},
): Promise<TestResult | undefined> {
  const loader = evalLoader(cfg, "test", data.test, dtype, ranks);
  const dir = `${cfg.train.output}/test`;
  try {
    await testViews(model, loader, arena, dir, ranks.rank);
  } finally {
    await loader.close();
  }
  await group?.barrier();
  if (ranks.rank !== 0) return undefined;
  const labelNames = cfg.data.label_names
    ? readLabelNames(cfg.data.label_names, model.numClasses)
    : cfg.data.source === "shapes"
    ? MOTION_CLASSES.slice(0, model.numClasses)
    : undefined;
  return await mergeTest(dir, ranks.worldSize, {
    videos: loader.entries.length,
    viewsPerVideo: cfg.data.test_chunks * cfg.data.test_crops,
    paths: loader.entries.map((e) => e.path),
    labelNames,
    extra: { chunks: cfg.data.test_chunks, crops: cfg.data.test_crops, ...extra },
  });
}

/** The result line of a test. */
export function formatTest(cfg: FinetuneConfig, t: TestSummary): string {
  return `test (${cfg.data.test_chunks} x ${cfg.data.test_crops} views): top-1 ${t.top1.toFixed(2)}%  top-5 ${
    t.top5.toFixed(2)
  }% over ${t.videos} videos`;
}

/**
 * `deno task eval --ckpt`: the multi-view test alone, on a fine-tuned classifier (a checkpoint folder of
 * ours, a safetensors file or a .pth file); the weights must cover the whole classifier. Rank 0 returns
 * the merged result.
 */
export async function evaluateCheckpoint(
  cfg: FinetuneConfig,
  ckpt: string,
  opts: { print?: boolean } = {},
): Promise<(TestResult & { report: PretrainedReport }) | undefined> {
  const proc = await openTrainingProcess(cfg.train.device, cfg.model.dtype);
  const say = (m: string) => opts.print && proc.lead && console.log(m);
  say(describeProcess(proc));
  await Deno.mkdir(cfg.train.output, { recursive: true });
  const model = buildClassifier(cfg, proc.dtype);
  const arena = new Arena();
  try {
    const report = await loadPretrained(model, ckpt, {
      modelKeys: modelKeys(cfg),
      headMap: cfg.data.head_map ? readHeadMap(cfg.data.head_map, model.numClasses) : undefined,
      headMapSource: cfg.data.head_map || undefined,
    });
    say(formatReport(report));
    if (report.missing.length > 0) {
      throw new Error(
        `${ckpt} does not hold a whole ${model.numClasses}-class classifier (missing ${
          report.missing.join(", ")
        }); test a fine-tuned checkpoint, or check model.size and model.num_classes`,
      );
    }
    const data = await resolveData(cfg, proc.group, say);
    if (!data.test.list) {
      throw new Error("No test list: set data.test_list (V-SWIFT tests on the validation list)");
    }
    const r = await runTest(cfg, model, data, proc.dtype, arena, proc.env, proc.group, { checkpoint: ckpt });
    if (r) say(formatTest(cfg, r.summary));
    return r && { ...r, report };
  } finally {
    arena.dispose();
    model.free();
    await proc.group.close();
  }
}
