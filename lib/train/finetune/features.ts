/**
 * The features a linear probe trains on: each video's centre view (the validation view) through the
 * classifier's encoder, pooled and normalised by fc_norm, from a pretrained checkpoint or from the
 * initialisation of train.seed.
 */
import { Arena } from "../../memory.ts";
import { loadPretrained } from "../../model/pretrained.ts";
import { openTrainingProcess } from "../process.ts";
import { type FinetuneConfig, modelKeys } from "./config.ts";
import { evalLoader, type Split } from "./data.ts";
import { forEachBatch } from "./eval.ts";
import { buildClassifier } from "./model.ts";
import type { VideoLoader } from "../../data/loader.ts";
import type { VideoClassifier } from "../../model/classifier.ts";

export interface VideoFeatures {
  /** (videos, dim) row-major, in the order of the list file. */
  features: Float32Array;
  labels: Int32Array;
  videos: number;
  dim: number;
}

/**
 * Features of every video of each split, in order (one process, the model built and loaded once; the
 * encoder of `ckpt`, or the initialisation).
 */
export async function extractFeatures(
  cfg: FinetuneConfig,
  splits: Split[],
  ckpt?: string,
): Promise<VideoFeatures[]> {
  const proc = await openTrainingProcess(cfg.train.device, cfg.model.dtype);
  if (proc.env.worldSize > 1) throw new Error("Feature extraction runs in one process, not across ranks");
  // The loaders keep their probe cache in train.output.
  await Deno.mkdir(cfg.train.output, { recursive: true });
  const model = buildClassifier(cfg, proc.dtype);
  const arena = new Arena();
  try {
    if (ckpt) {
      const report = await loadPretrained(model, ckpt, {
        modelKeys: modelKeys(cfg),
      });
      const encoderMissing = report.missing.filter((k) => !/^(head|fc_norm)\./.test(k));
      if (encoderMissing.length > 0) {
        throw new Error(`${ckpt} does not hold the whole encoder (missing ${encoderMissing.join(", ")})`);
      }
    }
    const out: VideoFeatures[] = [];
    for (const split of splits) {
      const loader = evalLoader(cfg, "val", split, proc.dtype);
      try {
        out.push(await splitFeatures(model, loader, arena, split.list));
      } finally {
        await loader.close();
      }
    }
    return out;
  } finally {
    arena.dispose();
    model.free();
    await proc.group.close();
  }
}

/** One pass of `loader` through `model`: the features of each video, in the order of the list. */
async function splitFeatures(
  model: VideoClassifier,
  loader: VideoLoader,
  arena: Arena,
  list: string,
): Promise<VideoFeatures> {
  const dim = model.config.embedDim;
  const rows = new Map<number, { f: Float32Array; label: number }>();
  await forEachBatch(model, loader, arena, (f, labels, keys) => {
    keys.forEach((key, i) => {
      if (!key.pad) rows.set(key.video, { f: f.slice(i * dim, (i + 1) * dim), label: labels[i] });
    });
  }, "features");
  const videos = rows.size;
  const features = new Float32Array(videos * dim);
  const labels = new Int32Array(videos);
  for (let v = 0; v < videos; v++) {
    const r = rows.get(v);
    if (!r) throw new Error(`Video ${v} of ${list} gave no features (${videos} videos seen)`);
    features.set(r.f, v * dim);
    labels[v] = r.label;
  }
  return { features, labels, videos, dim };
}
