/**
 * Reconstruction pictures from a pretraining checkpoint (`deno task visualize --ckpt`): the model of the
 * checkpoint's config, its weights, clips from its data (or another list), one PNG per clip with the
 * original, masked and reconstructed frames.
 */
import { Graph } from "../../autograd.ts";
import { VideoLoader } from "../../data/loader.ts";
import { writePng } from "../../data/png_grid.ts";
import { type DeviceChoice, openNative } from "../../ffi/native.ts";
import { loadSafetensors } from "../../io/safetensors.ts";
import { Arena } from "../../memory.ts";
import { VideoMAEPretrain } from "../../model/pretrain.ts";
import { loadStateDict } from "../../model/state.ts";
import { readFloats } from "../../tensor.ts";
import { listCheckpoints } from "../checkpoint.ts";
import { applyYaml, defaultConfig, modelConfigOf, type PretrainConfig } from "./config.ts";
import { reconstructionGrid } from "./reconstruct.ts";

export interface VisualizeOptions {
  /** A checkpoint folder (step-*), or a run's output folder (its newest checkpoint is used). */
  ckpt: string;
  out: string;
  clips: number;
  batches: number;
  /** Another list file to draw clips from (default: the run's own data). */
  list?: string;
  dataRoot?: string;
  seed?: number;
  device?: DeviceChoice;
}

function resolveCheckpoint(path: string): string {
  try {
    Deno.statSync(`${path}/state.json`);
    return path;
  } catch {
    const last = listCheckpoints(`${path}/checkpoints`).pop() ?? listCheckpoints(path).pop();
    if (!last) {
      throw new Error(`${path} is neither a checkpoint folder (with state.json) nor a run with checkpoints`);
    }
    return last.path;
  }
}

/** Writes the pictures; returns the paths written. */
export async function writeReconstructions(o: VisualizeOptions): Promise<string[]> {
  const dir = resolveCheckpoint(o.ckpt);
  let state: { config?: unknown; step?: number };
  try {
    state = JSON.parse(await Deno.readTextFile(`${dir}/state.json`));
  } catch (e) {
    throw new Error(`Cannot read ${dir}/state.json: ${(e as Error).message}`);
  }
  const cfg: PretrainConfig = defaultConfig();
  applyYaml(cfg, state.config, `${dir}/state.json`);
  await openNative({ device: o.device ?? "auto", quiet: true });
  const model = new VideoMAEPretrain(modelConfigOf(cfg)).allocate("f32");
  const weights = await loadSafetensors(`${dir}/model.safetensors`);
  loadStateDict(model, weights.tensors, { source: `${dir}/model.safetensors` });
  const mc = model.config;
  let list = o.list;
  let dataRoot = o.dataRoot;
  if (!list) {
    if (cfg.data.source === "memory") {
      throw new Error(`${dir} was trained on random data in memory; pass --data LIST`);
    }
    list = cfg.data.source === "shapes" ? `${cfg.train.output}/shapes/list.txt` : cfg.data.list;
    dataRoot = cfg.data.source === "shapes" ? `${cfg.train.output}/shapes` : cfg.data.root || undefined;
  }
  const loader = new VideoLoader({
    mode: "pretrain",
    list,
    dataRoot,
    batchSize: o.clips,
    frames: mc.frames,
    samplingRate: cfg.data.sampling_rate,
    inputSize: mc.imgSize,
    shortSide: cfg.data.short_side > 0 ? cfg.data.short_side : undefined,
    mean: cfg.data.mean,
    std: cfg.data.std,
    seed: o.seed ?? 0,
    mask: { ratio: cfg.mask.ratio, tubelet: mc.tubelet, patch: mc.patchSize, rule: cfg.mask.rule },
  });
  await Deno.mkdir(o.out, { recursive: true });
  const arena = new Arena();
  const written: string[] = [];
  try {
    for (let i = 0; i < o.batches; i++) {
      const g = new Graph(arena, { grad: false });
      const batch = (await loader.next(g))!;
      const res = model.forward(g, batch.video, { mask: batch.mask });
      const video = readFloats(batch.video);
      const pred = readFloats(res.pred);
      for (let b = 0; b < o.clips; b++) {
        const img = reconstructionGrid({
          video,
          shape: batch.video.shape,
          pred,
          mask: res.mask,
          tubelet: mc.tubelet,
          patch: mc.patchSize,
          mean: cfg.data.mean,
          std: cfg.data.std,
          sample: b,
        });
        const k = batch.keys[b];
        const path = `${o.out}/step${state.step ?? 0}_video${k.video}_clip${k.clip}.png`;
        await writePng(path, img);
        written.push(path);
      }
      g.reset();
    }
  } finally {
    await loader.close();
    arena.dispose();
    model.free();
  }
  return written;
}
