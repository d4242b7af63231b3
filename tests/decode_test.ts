/**
 * The in-process decoder against the ffmpeg process: the same bytes for the same request (seeking or
 * not, scaled or not, cropped, yuv420p and rgb24) on generated clips and on the real clips in
 * ../shared/data when present, and the same kind of per-file error for broken files. A worker that
 * keeps its decoder across clips gives the bytes of fresh workers.
 */
import assert from "node:assert/strict";
import { decodeInProcess } from "../lib/data/decode.ts";
import {
  DecodeError,
  decodeFrames,
  type DecodeRequest,
  probeVideo,
  runTool,
  type VideoInfo,
} from "../lib/data/ffmpeg.ts";
import { type NativeDecoder, openDecoder } from "../lib/ffi/decode.ts";
import { K400_CLIPS } from "./helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "vswift_decode_test_" });
const { decoder, why } = await openDecoder();

/**
 * A test pattern clip whose frames all differ: h264 in mp4 (or vp9 in webm), keyframe every 12 frames,
 * 25 fps.
 */
async function makeClip(name: string, size: string, seconds: number, pattern = "testsrc2", vp9 = false) {
  const path = `${tmp}/${name}.${vp9 ? "webm" : "mp4"}`;
  const src = `${pattern}=size=${size}:rate=25`;
  const codec = vp9 ? ["libvpx-vp9", "-deadline", "realtime"] : ["libx264"];
  const args = ["-v", "error", "-y", "-f", "lavfi", "-i", src, "-t", String(seconds), "-c:v", ...codec];
  const r = await runTool("ffmpeg", [...args, "-g", "12", "-pix_fmt", "yuv420p", path]);
  assert.equal(r.code, 0, r.stderr);
  return path;
}

type Variant = Omit<DecodeRequest, "path" | "info">;

const VARIANTS: Variant[] = [
  { indices: [0, 4, 8, 12], shortSide: 0, pixelFormat: "yuv420p" },
  { indices: [20, 24, 28, 33], shortSide: 0, pixelFormat: "yuv420p" }, // keyframe seek
  { indices: [13, 14, 15, 60], shortSide: 128, pixelFormat: "yuv420p" },
  { indices: [9, 10, 11], shortSide: 160, region: { x: 13, y: 7, w: 101, h: 64 }, pixelFormat: "yuv420p" },
  { indices: [40, 50, 60, 70], shortSide: 200, pixelFormat: "rgb24" },
  { indices: [1, 2, 30], shortSide: 0, region: { x: 10, y: 10, w: 50, h: 50 }, pixelFormat: "rgb24" },
];

/** Decodes `v` both ways and checks the bytes are equal; `cfr` false forces decoding from the start. */
async function assertSameFrames(path: string, v: Variant, cfr?: boolean) {
  const probed = await probeVideo(path);
  const info = cfr === undefined ? probed : { ...probed, cfr };
  const req = { path, info, ...v };
  const a = await decodeFrames(req);
  const b = await decodeInProcess(req, true);
  assert.ok(b, `the in-process decoder refused ${path}`);
  const what = `${path} ${JSON.stringify(v)}${cfr === false ? " from the start" : ""}`;
  assert.deepEqual([b.n, b.w, b.h, b.x, b.y, b.format], [a.n, a.w, a.h, a.x, a.y, a.format], what);
  const bytes = a.format === "yuv420p" ? (a.n * a.w * a.h * 3) / 2 : a.n * a.w * a.h * 3;
  let differing = 0;
  for (let i = 0; i < bytes; i++) if (a.data[i] !== b.data[i]) differing++;
  assert.equal(differing, 0, `${what}: ${differing} of ${bytes} bytes differ`);
}

Deno.test({
  name: "in-process decoding gives the ffmpeg process's bytes on generated clips",
  ignore: !decoder,
  fn: async () => {
    const clip = await makeClip("pattern", "320x240", 3);
    for (const v of VARIANTS) await assertSameFrames(clip, v);
    await assertSameFrames(clip, VARIANTS[1], false);
    // Odd sizes: the yuv420p request falls back to rgb24 in both.
    const odd = await makeClip("odd", "198x150", 1);
    await assertSameFrames(odd, { indices: [3, 9, 17], shortSide: 99, pixelFormat: "yuv420p" });
  },
});

const realClips = K400_CLIPS.slice(0, 3);

Deno.test({
  name: "in-process decoding gives the ffmpeg process's bytes on the real clips in ../shared/data",
  ignore: !decoder || realClips.length === 0,
  fn: async () => {
    for (const clip of realClips) {
      await assertSameFrames(clip, VARIANTS[1]);
      await assertSameFrames(clip, VARIANTS[3]);
      await assertSameFrames(clip, { indices: [60, 64, 68, 72], shortSide: 128, pixelFormat: "yuv420p" });
    }
    // One worker through the clips and back, as a loader's worker goes through a dataset.
    const seekTo = [40, 44, 48];
    await assertReuseExact(
      [...realClips, ...realClips].map((clip, i) => [clip, i % 2 ? seekTo : [0, 9], i % 2 === 1]),
    );
  },
});

/** One clip's frames, whole and at native size, from decoder `d` (yuv420p where the size is even). */
async function nativeFrames(
  d: NativeDecoder,
  path: string,
  info: VideoInfo,
  indices: number[],
  seek: boolean,
): Promise<Uint8Array> {
  const { width: w, height: h } = info;
  const yuv = w % 2 === 0 && h % 2 === 0;
  const out = new Uint8Array((indices.length * w * h * (yuv ? 3 : 6)) / 2);
  const { status, message } = await d.decode({
    path,
    indices,
    seek: seek && info.cfr,
    fps: info.fps,
    fullW: w,
    fullH: h,
    region: { x: 0, y: 0, w, h },
    format: yuv ? "yuv420p" : "rgb24",
    out,
  });
  assert.equal(status, indices.length, `${path}: ${message}`);
  return out;
}

/**
 * Decodes the steps one after another on one worker and each on a fresh worker; the bytes must be
 * equal. Returns the one worker's decoder counts.
 */
async function assertReuseExact(
  steps: [string, number[], boolean][],
): Promise<{ opened: number; reused: number }> {
  const one = decoder!.fork();
  try {
    for (const [path, indices, seek] of steps) {
      const info = await probeVideo(path);
      const kept = await nativeFrames(one, path, info, indices, seek);
      const fresh = decoder!.fork();
      const want = await nativeFrames(fresh, path, info, indices, seek).finally(() => fresh.close());
      const what = `${path} ${indices} after ${
        one.stats().opened + one.stats().reused - 1
      } clips on one worker`;
      assert.equal(want.length, kept.length, what);
      assert.ok(want.every((b, i) => b === kept[i]), `${what}: the bytes differ from a fresh worker's`);
    }
    return one.stats();
  } finally {
    one.close();
  }
}

Deno.test({
  name:
    "a worker that keeps its decoder across clips gives the bytes of fresh workers, and reopens on a change",
  ignore: !decoder,
  fn: async () => {
    const a = await makeClip("reuse_a", "320x240", 3);
    const a2 = await makeClip("reuse_a2", "320x240", 2, "testsrc");
    const b = await makeClip("reuse_b", "160x120", 2);
    const c = await makeClip("reuse_c", "160x120", 2, "testsrc2", true);
    const c2 = await makeClip("reuse_c2", "160x120", 2, "testsrc", true);
    const seekTo = [26, 30, 34, 38];
    const stats = await assertReuseExact([
      [a, seekTo, true],
      [a2, [0, 5, 10, 40], false], // same parameters: reused
      [a, [1, 2, 3], false], // reused again
      [b, seekTo, true], // another size: reopened
      [a, seekTo, true], // and back
      [c, [0, 4, 8], false], // vp9: reopened
      [c2, seekTo, true], // reused
      [a, [3, 20, 60], false], // reopened
    ]);
    assert.deepEqual(stats, { workers: 1, opened: 5, reused: 3 });
  },
});

Deno.test({
  name: "broken, truncated and missing files give a DecodeError from both decoders",
  ignore: !decoder,
  fn: async () => {
    const clip = await makeClip("whole", "160x120", 2);
    const info = await probeVideo(clip);
    const bytes = await Deno.readFile(clip);
    const truncated = `${tmp}/truncated.mp4`;
    await Deno.writeFile(truncated, bytes.subarray(0, bytes.length >> 1));
    const garbage = `${tmp}/garbage.mp4`;
    await Deno.writeFile(garbage, bytes.map((b, i) => (i < 64 ? b : (b * 31 + i) & 255)));
    const req = (path: string) => ({ path, info, indices: [2, 20, 40], shortSide: 0 });
    for (const path of [truncated, garbage, `${tmp}/missing.mp4`]) {
      for (const decode of [decodeFrames, (r: DecodeRequest) => decodeInProcess(r, true)]) {
        await assert.rejects(decode(req(path)), (e) => {
          assert.ok(e instanceof DecodeError, `${path}: ${e}`);
          assert.ok(e.message.includes(path), e.message);
          return true;
        });
      }
    }
    // The process is still here and the decoder still works.
    await assertSameFrames(clip, { indices: [2, 20, 40], shortSide: 0 });
  },
});

Deno.test({
  name: "the in-process decoder is available where FFmpeg's -dev packages are installed",
  ignore: !(await Deno.stat("/usr/include/x86_64-linux-gnu/libavformat/avformat.h").then(() =>
    true, () => false)),
  fn: () => assert.ok(decoder, why),
});
