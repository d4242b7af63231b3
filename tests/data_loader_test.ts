/**
 * The loader end to end on tiny synthetic mp4s: decoding, determinism, resume, the rank partition,
 * repeated sampling, evaluation views, broken videos; the real Kinetics clips when ../shared/data exists;
 * preparation; PNG grids.
 */
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { decodeFrames, ffmpegPath, probeVideo, runTool } from "../lib/data/ffmpeg.ts";
import { type ListEntry, parseList, readList } from "../lib/data/list_file.ts";
import { type Batch, type LoaderOptions, VideoLoader } from "../lib/data/loader.ts";
import { applyMask, clipFromBatch, encodePng, gridImage } from "../lib/data/png_grid.ts";
import { prepareDataset } from "../lib/data/prepare.ts";
import { ensureSyntheticDataset, renderSyntheticVideo } from "../lib/data/synthetic.ts";
import { maskToBoolean } from "../lib/model/masking.ts";
import { readFloats } from "../lib/tensor.ts";
import { arena, SHARED_DATA } from "./helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "vswift_data_test_" });
const ds = await ensureSyntheticDataset({
  dir: `${tmp}/synth`,
  videos: 12,
  classes: 4,
  size: 64,
  frames: 40,
  fps: 16,
});
const entries = parseList(await Deno.readTextFile(ds.list), { file: ds.list, dataRoot: ds.dataRoot });

const base: LoaderOptions = {
  entries,
  mode: "pretrain",
  batchSize: 4,
  frames: 8,
  samplingRate: 2,
  inputSize: 32,
  shortSide: 48,
  seed: 11,
  workers: 2,
  prefetch: 1,
  // Shared by the loaders of this file: each video is probed once.
  probeCache: `${tmp}/probe_cache.json`,
  log: () => {},
};

/** Runs `steps` batches and returns their pixels, labels and keys. */
async function run(opts: LoaderOptions, steps: number): Promise<{ video: Float32Array; batch: Batch }[]> {
  const loader = new VideoLoader(opts);
  const out = [];
  try {
    for (let i = 0; i < steps; i++) {
      const batch = await loader.next(arena);
      if (!batch) break;
      out.push({ video: readFloats(batch.video), batch });
      arena.reset();
    }
  } finally {
    await loader.close();
  }
  return out;
}

Deno.test("synthetic datasets are deterministic and made once", async () => {
  const again = await ensureSyntheticDataset({
    dir: `${tmp}/synth`,
    videos: 12,
    classes: 4,
    size: 64,
    frames: 40,
    fps: 16,
  });
  assert.deepEqual(again, ds);
  assert.deepEqual(
    renderSyntheticVideo(2, 0, 5, { size: 32, frames: 4 }),
    renderSyntheticVideo(2, 0, 5, { size: 32, frames: 4 }),
  );
  assert.notDeepEqual(
    renderSyntheticVideo(2, 0, 5, { size: 32, frames: 4 }),
    renderSyntheticVideo(3, 0, 5, { size: 32, frames: 4 }),
  );
  assert.deepEqual(entries.map((e) => e.label), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
});

Deno.test("decoding picks the asked frames (with and without input seek), scaled and cropped", async () => {
  const path = entries[3].path;
  const info = await probeVideo(path);
  assert.deepEqual([info.width, info.height, info.frames, info.fps, info.cfr], [64, 64, 40, 16, true]);
  const all =
    (await runTool(ffmpegPath(), ["-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]))
      .stdout;
  const fb = 64 * 64 * 3;
  assert.equal(all.length, 40 * fb);
  for (const indices of [[0, 3, 4, 5, 17], [9, 12, 15, 18, 39]]) {
    const f = await decodeFrames({ path, info, indices, shortSide: 0 });
    assert.deepEqual([f.n, f.h, f.w], [indices.length, 64, 64]);
    indices.forEach((fi, k) =>
      assert.deepEqual(f.data.subarray(k * fb, (k + 1) * fb), all.subarray(fi * fb, (fi + 1) * fb))
    );
    // A region: the same pixels, cut out.
    const r = await decodeFrames({ path, info, indices, shortSide: 0, region: { x: 9, y: 4, w: 20, h: 31 } });
    assert.deepEqual([r.x, r.y, r.w, r.h], [8, 4, 22, 32]);
    const y = 10;
    const row = (d: Uint8Array, k: number, w: number, x0: number, yy: number) =>
      d.subarray(
        ((k * (w === 64 ? 64 : 32) + yy) * w + x0) * 3,
        ((k * (w === 64 ? 64 : 32) + yy) * w + x0 + 22) * 3,
      );
    assert.deepEqual(row(r.data, 2, 22, 0, y - 4), row(all, indices[2], 64, 8, y));
  }
  const scaled = await decodeFrames({ path, info, indices: [1, 2], shortSide: 48 });
  assert.deepEqual([scaled.w, scaled.h], [48, 48]);
  await assert.rejects(
    decodeFrames({ path, info: { ...info, frames: 80 }, indices: [2, 60], shortSide: 0 }),
    /delivered 1 of 2 frames/,
  );
});

Deno.test("a 4-field list entry samples inside its start..end segment", async () => {
  const path = entries[5].path;
  const all =
    (await runTool(ffmpegPath(), ["-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]))
      .stdout;
  const seg: ListEntry = { ...entries[5], start: 20, end: 39 };
  const opts: LoaderOptions = { ...base, entries: [seg], mode: "val", batchSize: 1, frames: 4 };
  const [{ video }] = await run({ ...opts, inputSize: 64, shortSide: 64, pixelFormat: "rgb24" }, 1);
  // Validation takes segment centres: F = 20, seg = 5, frames 2, 7, 12, 17 of the segment.
  const fb = 64 * 64;
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  [22, 27, 32, 37].forEach((frame, f) => {
    for (let c = 0; c < 3; c++) {
      for (const px of [0, 1000, 2080, 4095]) {
        const want = (all[(frame * fb + px) * 3 + c] / 255 - mean[c]) / std[c];
        assert.ok(
          Math.abs(video[(c * 4 + f) * fb + px] - want) < 1e-5,
          `frame ${frame} channel ${c} pixel ${px}`,
        );
      }
    }
  });
});

Deno.test("the loader is deterministic given the seed, whatever the worker count", async () => {
  const a = await run(base, 3);
  const b = await run({ ...base, workers: 1, prefetch: 0 }, 3);
  const c = await run({ ...base, seed: 12 }, 3);
  assert.equal(a.length, 3);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(a[i].video, b[i].video);
    assert.deepEqual(a[i].batch.labels, b[i].batch.labels);
    assert.deepEqual(a[i].batch.video.shape, [4, 3, 8, 32, 32]);
  }
  assert.notDeepEqual(a[0].video, c[0].video);
  // Labels are those of the videos the keys name.
  for (const { batch } of a) {
    batch.keys.forEach((k, i) => assert.equal(batch.labels[i], entries[k.video].label));
  }
});

Deno.test("resuming at step s reproduces the stream, across an epoch boundary", async () => {
  const full = await run(base, 5); // 12 videos / 4 = 3 steps per epoch
  const loader = new VideoLoader(base);
  await loader.next(arena);
  arena.reset();
  await loader.next(arena);
  arena.reset();
  const pos = loader.position();
  assert.deepEqual(JSON.parse(JSON.stringify(pos)), pos);
  await loader.close();
  assert.equal(pos.step, 2);
  const resumed = await run({ ...base, resume: pos }, 3);
  for (let i = 0; i < 3; i++) {
    assert.equal(resumed[i].batch.step, i + 2);
    assert.deepEqual(resumed[i].video, full[i + 2].video);
  }
  assert.equal(full[3].batch.epoch, 1);
  assert.throws(
    () => new VideoLoader({ ...base, seed: 5, resume: pos }),
    /Cannot resume: the saved position has seed 11/,
  );
});

Deno.test("ranks see disjoint parts of one permutation; repeated sampling draws k clips per video", async () => {
  const opts = { ...base, worldSize: 2, batchSize: 2 };
  const r0 = new VideoLoader({ ...opts, rank: 0 });
  const r1 = new VideoLoader({ ...opts, rank: 1 });
  assert.equal(r0.stepsPerEpoch, 3);
  assert.equal(r1.stepsPerEpoch, 3);
  await r0.close();
  await r1.close();
  const v0 = (await run({ ...opts, rank: 0 }, 3)).flatMap((x) => x.batch.keys.map((k) => k.video));
  const v1 = (await run({ ...opts, rank: 1 }, 3)).flatMap((x) => x.batch.keys.map((k) => k.video));
  assert.equal(new Set([...v0, ...v1]).size, 12, "one epoch over two ranks covers every video once");
  const rep = await run({ ...base, repeats: 2, mask: { ratio: 0.75, tubelet: 2, patch: 8 } }, 1);
  const keys = rep[0].batch.keys;
  assert.deepEqual(keys.map((k) => k.clip), [0, 1, 0, 1]);
  assert.equal(keys[0].video, keys[1].video);
  const per = 3 * 8 * 32 * 32;
  assert.notDeepEqual(
    rep[0].video.subarray(0, per),
    rep[0].video.subarray(per, 2 * per),
    "independent clips",
  );
  const m = rep[0].batch.mask!;
  assert.deepEqual([m.b, m.tokens, m.nVisible], [4, 4 * 16, 4 * 4]);
});

Deno.test("limited-storage mode: local ranks split the node's list; an epoch is a sample count", async () => {
  const opts = { ...base, worldSize: 4, batchSize: 2, samplesPerEpoch: 16, localWorldSize: 2 };
  const seen: number[][] = [];
  for (const localRank of [0, 1]) {
    const loader = new VideoLoader({ ...opts, rank: 2 + localRank, localRank });
    assert.equal(loader.stepsPerEpoch, 2); // 16 samples / 4 ranks / 2 per step
    await loader.close();
    const out = await run({ ...opts, rank: 2 + localRank, localRank }, 4); // 3 steps per local data epoch
    seen.push(out.slice(0, 3).flatMap((o) => o.batch.keys.map((k) => k.video)));
    assert.deepEqual(out.map((o) => o.batch.epoch), [0, 0, 1, 1]);
  }
  assert.equal(
    new Set([...seen[0], ...seen[1]]).size,
    12,
    "one local data epoch covers the node's list once",
  );
});

Deno.test("a video that fails to decode is reported, skipped and replaced from the same shard", async () => {
  const broken = `${tmp}/broken.mp4`;
  await Deno.writeTextFile(broken, "this is not a video");
  const list = `${tmp}/with_broken.txt`;
  const lines = (await Deno.readTextFile(ds.list)).trim().split("\n");
  lines.splice(2, 0, `${broken} 3`, `${tmp}/missing.mp4 1`);
  await Deno.writeTextFile(list, lines.join("\n") + "\n");
  const logs: string[] = [];
  const opts = {
    ...base,
    entries: undefined,
    list,
    dataRoot: ds.dataRoot,
    batchSize: 7,
    log: (m: string) => logs.push(m),
  };
  const loader = new VideoLoader(opts);
  assert.equal(loader.stepsPerEpoch, 2);
  const listed = loader.entries;
  const seen: number[] = [];
  // Two epochs: the bad files are asked for again in the second.
  for (let i = 0; i < 4; i++) {
    const b = (await loader.next(arena))!;
    b.keys.forEach((k, j) => {
      assert.equal(b.labels[j], listed[k.video].label, "the label belongs to the decoded video");
      assert.ok(
        !listed[k.video].path.endsWith("broken.mp4") && !listed[k.video].path.endsWith("missing.mp4"),
      );
      seen.push(k.video);
    });
    arena.reset();
  }
  const st = await loader.close();
  assert.ok(st.skipped.length >= 3, `${st.skipped.length} skips`);
  assert.equal(st.failedFiles, 2);
  const broke = st.skipped.find((s) => s.path === broken)!;
  assert.equal(broke.origin, `${list}:3`);
  assert.match(broke.reason, /invalid data|moov atom/i);
  assert.ok(st.skipped.some((s) => s.path.endsWith("missing.mp4") && /No such file/i.test(s.reason)));
  assert.ok(logs.some((l) => l.startsWith(`Skipping ${broken} (${list}:3)`)));
  assert.ok(
    logs.some((l) =>
      new RegExp(`^2 video files failed to decode; a stand-in replaced them ${st.skipped.length} times`).test(
        l,
      )
    ),
    logs.join("\n"),
  );
  assert.equal(logs.filter((l) => l.startsWith(`Skipping ${broken}`)).length, 1, "one report per file");
  assert.equal(seen.length, 28);
});

Deno.test("test mode evaluates every (video, chunk, split) exactly once across ranks", async () => {
  const opts: LoaderOptions = {
    ...base,
    mode: "test",
    worldSize: 2,
    batchSize: 5,
    testChunks: 2,
    testCrops: 3,
    shortSide: 32,
  };
  const views: string[] = [];
  let pads = 0;
  for (const rank of [0, 1]) {
    for (const { batch } of await run({ ...opts, rank }, 100)) {
      batch.keys.forEach((k, i) => {
        assert.equal(batch.labels[i], entries[k.video].label);
        if (k.pad) pads++;
        else views.push(`${k.video}/${k.chunk}/${k.split}`);
      });
    }
  }
  assert.equal(views.length, 12 * 2 * 3);
  assert.equal(new Set(views).size, views.length);
  assert.equal(pads, 80 - 72);
  const val = await run({ ...base, mode: "val", batchSize: 5 }, 100);
  assert.equal(val.length, 3);
  assert.equal(val.flatMap((v) => v.batch.keys).filter((k) => !k.pad).length, 12);
});

Deno.test("YUV420P and RGB24 decoding give the same clips up to chroma interpolation", async () => {
  const opts: LoaderOptions = { ...base, mode: "val", batchSize: 4 };
  const [yuv] = await run({ ...opts, pixelFormat: "yuv420p" }, 1);
  const [rgb] = await run({ ...opts, pixelFormat: "rgb24" }, 1);
  let diff = 0;
  let spread = 0;
  for (let i = 0; i < yuv.video.length; i++) {
    diff += Math.abs(yuv.video[i] - rgb.video[i]);
    spread += Math.abs(rgb.video[i]);
  }
  // ffmpeg upsamples chroma by repetition, the kernel bilinearly: differences only along colour edges.
  assert.ok(diff / yuv.video.length < 0.06, `mean |yuv - rgb| ${diff / yuv.video.length}`);
  assert.ok(spread / rgb.video.length > 0.3);
});

Deno.test("synthetic mode returns one fixed batch without decoding", async () => {
  const s = await run({ ...base, entries: undefined, synthetic: true }, 2);
  assert.deepEqual(s[0].video, s[1].video);
  assert.equal(s[0].batch.video.shape[0], 4);
});

Deno.test({
  name: "the loader decodes the real Kinetics clips in ../shared/data",
  ignore: SHARED_DATA === undefined,
  fn: async () => {
    const list = await readList(`${SHARED_DATA}/k400_sample.csv`, `${SHARED_DATA}/k400_sample`);
    const out = await run({
      ...base,
      entries: list,
      mode: "val",
      batchSize: 5,
      frames: 4,
      inputSize: 64,
      shortSide: 64,
    }, 10);
    assert.equal(out.length, 3);
    const keys = out.flatMap((o) => o.batch.keys);
    assert.deepEqual(keys.map((k) => k.video).sort((a, b) => a - b), [...Array(15).keys()]);
    assert.ok(keys.every((k) => !k.pad));
    for (const o of out) {
      let sum = 0;
      for (const v of o.video) sum += Math.abs(v);
      assert.ok(sum / o.video.length > 0.1, "frames are not blank");
    }
  },
});

Deno.test("prepare cuts videos into chunks with a 6-field list, and resumes", async () => {
  const sub: ListEntry[] = entries.slice(0, 2);
  const out = `${tmp}/prepared`;
  const r = await prepareDataset({ entries: sub, out, chunkSeconds: 1, shortSide: 32, workers: 2 });
  assert.deepEqual(r.failed, []);
  const list = parseList(await Deno.readTextFile(r.list), { dataRoot: out });
  // 40 frames at 16 fps: chunks of 16, 16 and 8 frames (8 = half a chunk is kept).
  assert.equal(list.length, 6);
  assert.deepEqual(list.slice(0, 3).map((e) => [e.sourceStart, e.sourceEnd, e.frames]), [[0, 15, 16], [
    16,
    31,
    16,
  ], [32, 39, 8]]);
  assert.deepEqual(list.map((e) => e.label), [0, 0, 0, 1, 1, 1]);
  const info = await probeVideo(list[1].path);
  assert.deepEqual([info.width, info.height, info.frames], [32, 32, 16]);
  const progress: number[] = [];
  const again = await prepareDataset({
    entries: sub,
    out,
    chunkSeconds: 1,
    shortSide: 32,
    onProgress: (p) => progress.push(p.done),
  });
  assert.equal(again.chunks, 6);
  assert.deepEqual(progress, [], "nothing is redone");
});

Deno.test("PNG grids of clips with their masks", async () => {
  const [b] = (await run({ ...base, mask: { ratio: 0.75, tubelet: 2, patch: 8 } }, 1)).map((x) => x);
  const clip = clipFromBatch(b.video, b.batch.video.shape, 0, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
  const masked = applyMask(clip, maskToBoolean(b.batch.mask!).subarray(0, 64), 2, 8);
  const img = gridImage([clip, masked]);
  assert.deepEqual([img.width, img.height], [8 * 34 + 2, 2 * 34 + 2]);
  const png = decode(encodePng(img));
  assert.deepEqual([png.width, png.height, png.channels], [img.width, img.height, 3]);
});

Deno.test("cleanup", async () => {
  await Deno.remove(tmp, { recursive: true });
});
