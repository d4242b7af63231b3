/**
 * The loader delivers the frames the sampling rules name, checked from the pixels themselves: a
 * generated video whose frame i is a flat grey of level 20 + 4 i (so any crop or resize of it keeps the
 * level, and the level gives the source frame back), and the real Kinetics clips of ../shared/data
 * against ffmpeg's own full decode.
 */
import assert from "node:assert/strict";
import { ffmpegPath, probeVideo, runTool, scaledSize } from "../lib/data/ffmpeg.ts";
import { type ListEntry, readList } from "../lib/data/list_file.ts";
import { IMAGENET_MEAN, IMAGENET_STD, type LoaderOptions, VideoLoader } from "../lib/data/loader.ts";
import { encodeMp4 } from "../lib/data/synthetic.ts";
import { readFloats } from "../lib/tensor.ts";
import { arena, SHARED_DATA } from "./helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "vswift_frames_test_" });
const FRAMES = 48;
const SIZE = 48;
const level = (i: number) => 20 + 4 * i;

async function greyRamp(path: string): Promise<ListEntry> {
  const rgb = new Uint8Array(FRAMES * SIZE * SIZE * 3);
  for (let i = 0; i < FRAMES; i++) rgb.fill(level(i), i * SIZE * SIZE * 3, (i + 1) * SIZE * SIZE * 3);
  await encodeMp4(path, rgb, { width: SIZE, height: SIZE, fps: 16, crf: 0 });
  return { path, label: 0, origin: `${path}:1` } as ListEntry;
}

/** Every clip of `steps` batches as its source frame indices, read back from the grey levels. */
async function deliveredFrames(opts: LoaderOptions, steps: number): Promise<number[][]> {
  const loader = new VideoLoader(opts);
  const clips: number[][] = [];
  try {
    for (let s = 0; s < steps; s++) {
      const batch = await loader.next(arena);
      assert.ok(batch);
      const v = readFloats(batch.video);
      const [b, c, t, h, w] = batch.video.shape;
      for (let k = 0; k < b; k++) {
        const frames: number[] = [];
        for (let f = 0; f < t; f++) {
          // Undo the normalisation channel by channel: every channel of every pixel must give one grey.
          const greys: number[] = [];
          for (let ch = 0; ch < c; ch++) {
            const at = (((k * c + ch) * t + f) * h) * w;
            for (const px of [0, (h >> 1) * w + (w >> 1), h * w - 1]) {
              greys.push((v[at + px] * IMAGENET_STD[ch] + IMAGENET_MEAN[ch]) * 255);
            }
          }
          const index = Math.round((greys[0] - 20) / 4) + 0; // + 0 turns -0 into 0
          for (const g of greys) {
            assert.ok(
              Math.abs(g - level(index)) < 1.5,
              `clip ${k} frame ${f}: grey ${g} is not ${level(index)}`,
            );
          }
          frames.push(index);
        }
        clips.push(frames);
      }
      arena.reset();
    }
  } finally {
    await loader.close();
  }
  return clips;
}

const ramp = await greyRamp(`${tmp}/ramp.mp4`);
const base: LoaderOptions = {
  // One video listed four times: a batch of 4 needs 4 entries.
  entries: [0, 1, 2, 3].map((i) => ({ ...ramp, origin: `ramp ${i}` })),
  mode: "pretrain",
  batchSize: 4,
  frames: 6,
  samplingRate: 3,
  inputSize: 32,
  shortSide: SIZE,
  seed: 3,
  workers: 2,
  prefetch: 1,
  log: () => {},
};

Deno.test("pretraining: n frames at the sampling rate from a start in [0, F - n s], repeated sampling too", async () => {
  for (const repeats of [1, 2]) {
    const clips = await deliveredFrames({ ...base, repeats }, 4);
    assert.equal(clips.length, 16);
    const starts = new Set<number>();
    for (const c of clips) {
      // V-SWIFT's rule with F = 48, n = 6, s = 3: A = F - n s + 1 = 31 > 1, start ~ U{0 .. 30}.
      assert.ok(c[0] >= 0 && c[0] <= FRAMES - 6 * 3, `start ${c[0]}`);
      assert.deepEqual(c, c.map((_, i) => c[0] + 3 * i), `clip ${c} is not a stride-3 run`);
      starts.add(c[0]);
    }
    assert.ok(starts.size >= 4, `only ${starts.size} distinct starts in 16 clips`);
  }
});

Deno.test("pretraining: short videos follow V-SWIFT's fallbacks and v1's clamped stride", async () => {
  // F = 48 with n = 6 and s = 9: A = -5, F > n: n indices drawn with replacement from [0, F), sorted.
  for (const c of await deliveredFrames({ ...base, samplingRate: 9 }, 2)) {
    assert.deepEqual(c, [...c].sort((a, b) => a - b));
    assert.ok(c.every((i) => i >= 0 && i < FRAMES));
    assert.ok(new Set(c.map((i, k) => i - 9 * k)).size > 1, `clip ${c} looks like a stride-9 run`);
  }
  // v1: start 0 and stride 9, clamped to the last frame.
  for (const c of await deliveredFrames({ ...base, samplingRate: 9, temporalRule: "v1" }, 1)) {
    assert.deepEqual(c, [0, 9, 18, 27, 36, 45]);
  }
});

Deno.test("validation: segment centres i seg + floor(seg / 2)", async () => {
  const clips = await deliveredFrames({ ...base, mode: "val", batchSize: 1, frames: 5 }, 1);
  // seg = floor(48 / 5) = 9: frames 4, 13, 22, 31, 40.
  assert.deepEqual(clips, [[4, 13, 22, 31, 40]]);
});

function halfEven(x: number): number {
  const f = Math.floor(x);
  return x - f !== 0.5 ? Math.round(x) : f % 2 === 0 ? f : f + 1;
}

Deno.test({
  name: "real Kinetics clips: each delivered frame is the source frame at its segment centre",
  ignore: SHARED_DATA === undefined,
  fn: async () => {
    const list = (await readList(`${SHARED_DATA}/k400_sample.csv`, `${SHARED_DATA}/k400_sample`)).slice(0, 4);
    const size = 64;
    const n = 4;
    const loader = new VideoLoader({
      ...base,
      entries: list,
      mode: "val",
      batchSize: 1,
      frames: n,
      inputSize: size,
      shortSide: size,
      pixelFormat: "rgb24",
    });
    try {
      for (let v = 0; v < list.length; v++) {
        const batch = await loader.next(arena);
        assert.ok(batch);
        const entry = list[batch.keys[0].video];
        const clip = readFloats(batch.video);
        arena.reset();
        // ffmpeg's own decode of every frame at the same scale, and the centre crop cut here.
        const info = await probeVideo(entry.path);
        const { w, h } = scaledSize(info.width, info.height, size);
        const all = (await runTool(ffmpegPath(), [
          ...["-v", "error", "-i", entry.path, "-vf", `scale=${w}:${h}:flags=bilinear`],
          ...["-pix_fmt", "rgb24", "-f", "rawvideo", "-"],
        ])).stdout;
        const frames = all.length / (w * h * 3);
        // torchvision's CenterCrop: int(round((w - size) / 2)) with Python's half-to-even round.
        const x0 = halfEven((w - size) / 2);
        const y0 = halfEven((h - size) / 2);
        const distance = (f: number, src: number) => {
          let d = 0;
          for (let y = 0; y < size; y += 3) {
            for (let x = 0; x < size; x += 3) {
              for (let c = 0; c < 3; c++) {
                const got = (clip[((c * n + f) * size + y) * size + x] * IMAGENET_STD[c] + IMAGENET_MEAN[c]) *
                  255;
                d += Math.abs(got - all[((src * h + y0 + y) * w + x0 + x) * 3 + c]);
              }
            }
          }
          return d;
        };
        const seg = Math.floor(frames / n);
        for (let f = 0; f < n; f++) {
          const want = f * seg + Math.floor(seg / 2);
          // The expected frame matches (up to rounding), and better than its neighbours do.
          const here = distance(f, want);
          const pixels = Math.ceil(size / 3) ** 2 * 3;
          assert.ok(
            here / pixels < 0.5,
            `${entry.path} frame ${f}: mean |diff| ${here / pixels} at source ${want}`,
          );
          for (const other of [want - 1, want + 1]) {
            if (other < 0 || other >= frames) continue;
            const there = distance(f, other);
            if (there / pixels > 1) assert.ok(here < there, `${entry.path} frame ${f} looks like ${other}`);
          }
        }
      }
    } finally {
      await loader.close();
    }
  },
});

Deno.test("cleanup", async () => {
  await Deno.remove(tmp, { recursive: true });
});
