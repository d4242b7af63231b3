/**
 * Synthetic videos: a coloured shape moving over a colour-ramp background, one motion class per label,
 * encoded to mp4 (libx264) by piping raw frames into ffmpeg. Deterministic from the seed, small and quick,
 * so the tests and the default pretraining work without downloaded data.
 */
import { Rng } from "../rng.ts";
import { ffmpegPath, runTool } from "./ffmpeg.ts";
import { mixSeed } from "./seed.ts";

/** The motion of each class, in label order. */
export const MOTION_CLASSES = [
  "left",
  "right",
  "up",
  "down",
  "rotate-cw",
  "grow",
  "bounce",
  "rotate-ccw",
] as const;

export interface SyntheticOptions {
  /** Frame width and height (even; 64-128 keeps tests fast). */
  size?: number;
  frames?: number;
  fps?: number;
  /**
   * `plain` (the labelled clips): a flat shape of 3 kinds over a colour ramp. `varied` (an unlabelled
   * pretraining pool): 5 shape kinds, flat, striped or chequered shapes, ramp, radial or gently waved
   * backgrounds, speeds from 0.5x to 1.6x and sizes from 0.1 to 0.24 of the frame.
   */
  style?: SyntheticStyle;
}

export type SyntheticStyle = "plain" | "varied";

/**
 * Renders video `index` of a dataset with seed `seed`: (frames, size, size, 3) RGB. The class decides the
 * motion; shape, colours, the background and the speed come from the seed. The varied style draws its
 * extra choices after the plain ones, so plain clips stay what they were.
 */
export function renderSyntheticVideo(
  label: number,
  seed: number,
  index: number,
  opts: SyntheticOptions = {},
): Uint8Array {
  const size = opts.size ?? 96;
  const frames = opts.frames ?? 48;
  if (label < 0 || label >= MOTION_CLASSES.length) {
    throw new RangeError(`Synthetic class ${label} is not in [0, ${MOTION_CLASSES.length})`);
  }
  const rng = new Rng(mixSeed(seed, index));
  // Complementary ramp ends, every channel at least 135 levels apart, so that the ramp stands well
  // above the codec's noise inside every patch.
  const bg1 = [0, 1, 2].map(() => (rng.float() < 0.5 ? rng.int(61) : 195 + rng.int(61)));
  const bg2 = bg1.map((v) => 255 - v);
  let fg = [rng.int(256), rng.int(256), rng.int(256)];
  // Keep the shape visible against the background's mean colour.
  const contrast = Math.abs(
    fg[0] + fg[1] + fg[2] - (bg1[0] + bg1[1] + bg1[2] + bg2[0] + bg2[1] + bg2[2]) / 2,
  );
  if (contrast < 150) fg = fg.map((v) => 255 - v);
  // A linear colour ramp across the frame at a random angle: after the per-patch normalisation of the
  // MAE target every background patch looks alike, so a model can learn to fill them in from what it
  // sees.
  const theta = rng.uniform(0, 2 * Math.PI);
  const gx = Math.cos(theta) / (1.5 * size);
  const gy = Math.sin(theta) / (1.5 * size);
  let shape = rng.int(3); // 0 disc, 1 square, 2 triangle (varied: 3 notched ring, 4 cross)
  let r0 = size * rng.uniform(0.12, 0.2);
  const cx0 = size * rng.uniform(0.35, 0.65);
  const cy0 = size * rng.uniform(0.35, 0.65);
  let speed = size * rng.uniform(0.25, 0.4) / frames; // pixels per frame: about a third of the frame
  let texture = 0; // 0 flat, 1 stripes, 2 chequered (in the shape's frame, so they turn and move with it)
  // 0 ramp, 1 radial, 2 a gentle wave. All smooth: under a tube mask, fine background texture is what
  // the reconstruction would spend itself on, and it says nothing about motion.
  let background = 0;
  let wave = [0, 0];
  let centre = [0, 0];
  if (opts.style === "varied") {
    shape = rng.int(5);
    r0 = size * rng.uniform(0.1, 0.24);
    speed *= rng.uniform(0.5, 1.6);
    texture = rng.int(3);
    background = rng.int(3);
    const k = (2 * Math.PI) / (size * rng.uniform(0.8, 2));
    wave = [k * Math.cos(theta), k * Math.sin(theta)];
    centre = [size * rng.uniform(0, 1), size * rng.uniform(0, 1)];
  }
  const fg2 = fg.map((v) => (v > 127 ? v - 90 : v + 90));
  const out = new Uint8Array(frames * size * size * 3);
  for (let f = 0; f < frames; f++) {
    const u = f - (frames - 1) / 2;
    let cx = cx0;
    let cy = cy0;
    let r = r0;
    let angle = 0;
    switch (MOTION_CLASSES[label]) {
      case "left":
        cx -= u * speed;
        break;
      case "right":
        cx += u * speed;
        break;
      case "up":
        cy -= u * speed;
        break;
      case "down":
        cy += u * speed;
        break;
      // A quarter turn over the clip: the square repeats itself every quarter turn, so a half turn
      // sampled at 4 frames (45 degrees apart) would look the same clockwise and anticlockwise.
      case "rotate-cw":
        angle = (f / frames) * Math.PI / 2;
        break;
      case "rotate-ccw":
        angle = -(f / frames) * Math.PI / 2;
        break;
      case "grow":
        r = r0 * (0.6 + (0.9 * f) / frames);
        break;
      case "bounce":
        cy = cy0 + size * 0.25 * Math.abs(Math.sin((3 * Math.PI * f) / frames)) - size * 0.12;
        break;
    }
    const ca = Math.cos(angle);
    const sa = Math.sin(angle);
    const base = f * size * size * 3;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        // Shape coordinates: rotated about the centre, in units of r.
        const dx = (x + 0.5 - cx) / r;
        const dy = (y + 0.5 - cy) / r;
        const px = ca * dx + sa * dy;
        const py = -sa * dx + ca * dy;
        let inside: boolean;
        if (shape === 0) inside = px * px + py * py <= 1 && px > -0.6; // a disc with a flat side (rotation shows)
        else if (shape === 1) inside = Math.abs(px) <= 0.8 && Math.abs(py) <= 0.8;
        else if (shape === 2) inside = py <= 0.8 && py >= -0.9 + 1.7 * Math.abs(px);
        else if (shape === 3) {
          const d2 = px * px + py * py;
          inside = d2 <= 1 && d2 >= 0.3 && !(px > 0.4 && Math.abs(py) < 0.3);
        } else {inside = (Math.abs(px) <= 0.3 && py >= -0.9 && py <= 0.6) ||
            (Math.abs(py) <= 0.3 && Math.abs(px) <= 0.9);}
        const o = base + (y * size + x) * 3;
        if (inside) {
          const odd = texture === 1
            ? Math.floor((px + 2) * 2.5) % 2 === 1
            : texture === 2 && (Math.floor((px + 2) * 2.5) + Math.floor((py + 2) * 2.5)) % 2 === 1;
          const c = odd ? fg2 : fg;
          out[o] = c[0];
          out[o + 1] = c[1];
          out[o + 2] = c[2];
        } else {
          let m: number;
          if (background === 0) m = 0.5 + gx * (x - size / 2) + gy * (y - size / 2);
          else if (background === 1) {
            m = 0.2 + 0.6 * Math.min(1, Math.hypot(x - centre[0], y - centre[1]) / size);
          } else m = 0.5 + 0.25 * Math.sin(wave[0] * x + wave[1] * y);
          // No pixel noise: under a tube mask it is unpredictable, and the per-patch normalised target
          // would turn it into most of the loss.
          for (let c = 0; c < 3; c++) out[o + c] = Math.min(255, bg1[c] * m + bg2[c] * (1 - m));
        }
      }
    }
  }
  return out;
}

/** ffmpeg's arguments up to the output: raw RGB frames on stdin, encoded by one-threaded libx264. */
function x264Args(opts: { width: number; height: number; fps: number; crf?: number }): string[] {
  return [
    ...["-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"],
    ...["-s", `${opts.width}x${opts.height}`, "-r", String(opts.fps), "-i", "pipe:0", "-c:v", "libx264"],
    ...["-preset", "veryfast", "-crf", String(opts.crf ?? 20), "-pix_fmt", "yuv420p", "-threads", "1"],
  ];
}

/** Encodes (frames, size, size, 3) RGB to an H.264 mp4 with ffmpeg. */
export async function encodeMp4(
  path: string,
  rgb: Uint8Array,
  opts: { width: number; height: number; fps: number; crf?: number },
): Promise<void> {
  const r = await runTool(ffmpegPath(), [...x264Args(opts), "-movflags", "+faststart", "-f", "mp4", path], {
    stdin: rgb,
  });
  if (r.code !== 0) throw new Error(`ffmpeg could not encode ${path}: ${r.stderr.trim()}`);
}

/**
 * Encodes `clips` clips of `frames` frames each, laid end to end in `rgb`, to `paths` with one ffmpeg
 * process: a keyframe (IDR) every `frames` frames and the segment muxer cutting there, so each file is
 * a clip that decodes on its own. Starting ffmpeg costs more CPU than encoding a small clip, which makes
 * this several times faster than one process per clip for pools of thousands.
 */
export async function encodeMp4Batch(
  paths: string[],
  rgb: Uint8Array,
  opts: { width: number; height: number; fps: number; frames: number; crf?: number },
): Promise<void> {
  const dir = `${paths[0]}.parts`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  try {
    const { frames, fps } = opts;
    const r = await runTool(ffmpegPath(), [
      ...x264Args(opts),
      ...["-x264-params", `keyint=${frames}:min-keyint=${frames}:scenecut=0`, "-forced-idr", "1"],
      ...["-force_key_frames", `expr:eq(mod(n,${frames}),0)`, "-f", "segment"],
      // Cut at the first keyframe after (frames - 0.5) / fps seconds: exactly every `frames` frames.
      ...["-segment_time", String((frames - 0.5) / fps), "-reset_timestamps", "1", "-segment_format", "mp4"],
      ...["-segment_format_options", "movflags=+faststart", `${dir}/%06d.mp4`],
    ], { stdin: rgb });
    if (r.code !== 0) {
      throw new Error(`ffmpeg could not encode ${paths[0]} and the next clips: ${r.stderr.trim()}`);
    }
    const parts = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    if (parts.length !== paths.length) {
      throw new Error(`ffmpeg cut ${parts.length} clips instead of ${paths.length} (from ${paths[0]})`);
    }
    for (let i = 0; i < paths.length; i++) await Deno.rename(`${dir}/${parts[i]}`, paths[i]);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

export interface SyntheticDatasetOptions extends SyntheticOptions {
  dir: string;
  videos?: number;
  /** Motion classes used (at most MOTION_CLASSES.length); video i has label i mod classes. */
  classes?: number;
  seed?: number;
  /**
   * `clip`: one ffmpeg process per clip (the default; the clips the tests and defaults were measured
   * on). `batch`: one process per 128 clips with a keyframe at each clip's start (encodeMp4Batch), for
   * large pools; the pixels differ slightly from `clip`'s.
   */
  encoding?: "clip" | "batch";
  /** Parallel encodes (the number of cores). */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface SyntheticDataset {
  /** The list file (`path label`, paths relative to dir). */
  list: string;
  dataRoot: string;
  videos: number;
  classes: number;
}

/**
 * Creates (or completes) a synthetic dataset in `dir`: videos/NNNNN.mp4 and list.txt. Idempotent: a
 * folder made with the same options is left as it is; other options start it anew.
 */
export async function ensureSyntheticDataset(opts: SyntheticDatasetOptions): Promise<SyntheticDataset> {
  const videos = opts.videos ?? 64;
  const classes = opts.classes ?? 4;
  const size = opts.size ?? 96;
  const frames = opts.frames ?? 48;
  const fps = opts.fps ?? 16;
  const seed = opts.seed ?? 0;
  const style = opts.style ?? "plain";
  const encoding = opts.encoding ?? "clip";
  if (!(classes >= 1 && classes <= MOTION_CLASSES.length)) {
    throw new RangeError(`classes must be in [1, ${MOTION_CLASSES.length}], got ${classes}`);
  }
  if (size % 2 !== 0 || size < 16) throw new RangeError(`size must be even and >= 16, got ${size}`);
  const dir = opts.dir.replace(/\/+$/, "");
  const list = `${dir}/list.txt`;
  const metaPath = `${dir}/synthetic.json`;
  const meta = JSON.stringify({
    videos,
    classes,
    size,
    frames,
    fps,
    seed,
    version: 6,
    ...(style === "plain" ? {} : { style }),
    ...(encoding === "clip" ? {} : { encoding }),
  });
  const result = { list, dataRoot: dir, videos, classes };
  try {
    if (Deno.readTextFileSync(metaPath) === meta && Deno.statSync(list).isFile) return result;
  } catch {
    // Not made yet, or made with other options.
  }
  await Deno.remove(list).catch(() => {});
  await Deno.remove(metaPath).catch(() => {});
  await Deno.mkdir(`${dir}/videos`, { recursive: true });
  const names = Array.from({ length: videos }, (_, i) => `videos/${String(i).padStart(5, "0")}.mp4`);
  const render = (i: number) => renderSyntheticVideo(i % classes, seed, i, { size, frames, style });
  // Units of work: one clip, or a run of 128 clips for one ffmpeg process.
  const unit = encoding === "batch" ? 128 : 1;
  let next = 0;
  let done = 0;
  const work = async () => {
    while (next < videos) {
      const first = next;
      next = Math.min(videos, next + unit);
      const ids = Array.from({ length: next - first }, (_, k) => first + k);
      if (encoding === "batch") {
        const clipBytes = frames * size * size * 3;
        const rgb = new Uint8Array(ids.length * clipBytes);
        ids.forEach((i, k) => rgb.set(render(i), k * clipBytes));
        await encodeMp4Batch(ids.map((i) => `${dir}/${names[i]}`), rgb, {
          width: size,
          height: size,
          fps,
          frames,
        });
      } else {
        const path = `${dir}/${names[first]}`;
        const tmp = `${path}.tmp.mp4`;
        await encodeMp4(tmp, render(first), { width: size, height: size, fps });
        await Deno.rename(tmp, path);
      }
      for (const _ of ids) opts.onProgress?.(++done, videos);
    }
  };
  const n = Math.max(1, opts.concurrency ?? navigator.hardwareConcurrency ?? 2);
  await Promise.all(Array.from({ length: Math.min(n, videos) }, work));
  await Deno.writeTextFile(list, names.map((p, i) => `${p} ${i % classes}\n`).join(""));
  await Deno.writeTextFile(metaPath, meta);
  return result;
}
