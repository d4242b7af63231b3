/**
 * `deno task visualize --data LIST`: PNG grids of the clips the loader samples, each followed by the same
 * clip with its tube mask (masked patches greyed), one image per batch in --out. Without --data it shows
 * the synthetic dataset (made under runs/synthetic if needed). The grid writer is lib/data/png_grid.ts.
 * `--ckpt RUN_OR_CHECKPOINT` instead draws reconstructions of a pretraining checkpoint (original,
 * masked and reconstructed frames of each clip).
 */
import { type DeviceChoice, openNative } from "../lib/ffi/native.ts";
import { Arena } from "../lib/memory.ts";
import { IMAGENET_MEAN, IMAGENET_STD, type LoaderMode, VideoLoader } from "../lib/data/loader.ts";
import { applyMask, type ClipFrames, clipFromBatch, gridImage, writePng } from "../lib/data/png_grid.ts";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { maskToBoolean } from "../lib/model/masking.ts";
import { readFloats } from "../lib/tensor.ts";
import { writeReconstructions } from "../lib/train/pretrain/visualize.ts";
import { parseFlags } from "../lib/task_cli.ts";

const USAGE =
  "usage: deno task visualize [--data LIST] [--data-root DIR] [--out runs/visualize] [--mode pretrain|train|val|test]\n" +
  "  [--clips 4] [--batches 1] [--frames 16] [--sampling-rate 4] [--input-size 224] [--short-side N]\n" +
  "  [--repeats 1] [--mask-ratio 0.9] [--tubelet 2] [--patch 16] [--flip] [--seed 0]\n" +
  "or: deno task visualize --ckpt RUN_OR_CHECKPOINT [--data LIST] [--out DIR] [--clips 4] [--batches 1] [--device auto]\n" +
  "  reconstructions of a pretraining checkpoint: original, masked and reconstructed frames per clip";
const { values: a } = parseFlags("deno task visualize", USAGE, {
  options: {
    data: { type: "string" },
    ckpt: { type: "string" },
    device: { type: "string", default: "auto" },
    "data-root": { type: "string" },
    out: { type: "string", default: "runs/visualize" },
    mode: { type: "string", default: "pretrain" },
    clips: { type: "string", default: "4" },
    batches: { type: "string", default: "1" },
    frames: { type: "string", default: "16" },
    "sampling-rate": { type: "string", default: "4" },
    "input-size": { type: "string", default: "224" },
    "short-side": { type: "string" },
    repeats: { type: "string", default: "1" },
    "mask-ratio": { type: "string", default: "0.9" },
    tubelet: { type: "string", default: "2" },
    patch: { type: "string", default: "16" },
    flip: { type: "boolean", default: false },
    seed: { type: "string", default: "0" },
    help: { type: "boolean", default: false },
  },
});
const int = (k: keyof typeof a) => {
  const v = Number(a[k]);
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${k} takes a non-negative integer, got "${a[k]}"`);
    Deno.exit(2);
  }
  return v;
};
if (a.ckpt) {
  // Reconstruction mode: the checkpoint's own model, config and (unless --data) data.
  try {
    const paths = await writeReconstructions({
      ckpt: a.ckpt,
      out: a.out,
      clips: int("clips"),
      batches: int("batches"),
      list: a.data,
      dataRoot: a["data-root"],
      seed: int("seed"),
      device: a.device as DeviceChoice,
    });
    for (const p of paths) console.log(p);
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(1);
  }
  Deno.exit(0);
}
let list = a.data;
let dataRoot = a["data-root"];
if (!list) {
  const ds = await ensureSyntheticDataset({ dir: "runs/synthetic" });
  list = ds.list;
  dataRoot = ds.dataRoot;
  console.error(`no --data given: showing the synthetic dataset ${list}`);
}
await openNative({ device: "host", quiet: true });
const tubelet = int("tubelet");
const patch = int("patch");
const ratio = Number(a["mask-ratio"]);
const loader = new VideoLoader({
  list,
  dataRoot,
  mode: a.mode as LoaderMode,
  batchSize: int("clips"),
  frames: int("frames"),
  samplingRate: int("sampling-rate"),
  inputSize: int("input-size"),
  shortSide: a["short-side"] ? int("short-side") : undefined,
  repeats: int("repeats"),
  flip: a.flip,
  seed: int("seed"),
  mask: ratio > 0 ? { ratio, tubelet, patch } : undefined,
});
await Deno.mkdir(a.out, { recursive: true });
const arena = new Arena(64 << 20);
try {
  for (let i = 0; i < int("batches"); i++) {
    const batch = await loader.next(arena);
    if (!batch) break;
    const values = readFloats(batch.video);
    const rows: ClipFrames[] = [];
    const masks = batch.mask ? maskToBoolean(batch.mask) : undefined;
    for (let b = 0; b < batch.video.shape[0]; b++) {
      const clip = clipFromBatch(values, batch.video.shape, b, IMAGENET_MEAN, IMAGENET_STD);
      rows.push(clip);
      if (masks && batch.mask) {
        const n = batch.mask.tokens;
        rows.push(applyMask(clip, masks.subarray(b * n, (b + 1) * n), tubelet, patch));
      }
    }
    const path = `${a.out}/batch_${String(batch.step).padStart(3, "0")}.png`;
    await writePng(path, gridImage(rows));
    const what = batch.keys.map((k, j) =>
      `${loader.entries[k.video].source}#${k.clip}${
        a.mode === "test" ? ` c${k.chunk}s${k.split}` : ""
      } (label ${batch.labels[j]})`
    );
    console.log(`${path}: ${what.join(", ")}`);
    arena.reset();
  }
} finally {
  await loader.close();
  arena.dispose();
}
