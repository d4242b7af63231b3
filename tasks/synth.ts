/**
 * `deno task synth --out runs/synthetic`: writes a synthetic dataset (moving shapes, one motion class per
 * label, mp4) and its list file `path label`. The same options make the same videos; a folder already made
 * with them is left as it is.
 */
import { ensureSyntheticDataset, MOTION_CLASSES } from "../lib/data/synthetic.ts";
import { parseFlags } from "../lib/task_cli.ts";

const USAGE =
  "usage: deno task synth [--out runs/synthetic] [--videos 64] [--classes 4] [--size 96] [--frames 48] [--fps 16] [--seed 0]";
const { values: a } = parseFlags("deno task synth", USAGE, {
  options: {
    out: { type: "string", default: "runs/synthetic" },
    videos: { type: "string", default: "64" },
    classes: { type: "string", default: "4" },
    size: { type: "string", default: "96" },
    frames: { type: "string", default: "48" },
    fps: { type: "string", default: "16" },
    seed: { type: "string", default: "0" },
  },
});
const n = (k: keyof typeof a) => {
  const v = Number(a[k]);
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${k} takes a non-negative integer, got "${a[k]}"`);
    Deno.exit(2);
  }
  return v;
};
const ds = await ensureSyntheticDataset({
  dir: a.out,
  videos: n("videos"),
  classes: n("classes"),
  size: n("size"),
  frames: n("frames"),
  fps: n("fps"),
  seed: n("seed"),
  onProgress: (d, t) => {
    if (d % 16 === 0 || d === t) console.error(`[${d}/${t}] videos encoded`);
  },
});
console.log(
  `${ds.videos} videos of ${ds.classes} classes (${
    MOTION_CLASSES.slice(0, ds.classes).join(", ")
  }): ${ds.list}`,
);
