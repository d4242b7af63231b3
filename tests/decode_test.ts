/**
 * The in-process decoder against the ffmpeg process: the same bytes for the same request (seeking or
 * not, scaled or not, cropped, yuv420p and rgb24) on generated clips and on the real clips in
 * ../shared/data when present, and the same kind of per-file error for broken files.
 */
import assert from "node:assert/strict";
import { decodeInProcess } from "../lib/data/decode.ts";
import { DecodeError, decodeFrames, type DecodeRequest, probeVideo, runTool } from "../lib/data/ffmpeg.ts";
import { openDecoder } from "../lib/ffi/decode.ts";

const tmp = await Deno.makeTempDir({ prefix: "vswift_decode_test_" });
const { decoder, why } = await openDecoder();

/** A test pattern clip whose frames all differ: h264, keyframe every 12 frames, 25 fps. */
async function makeClip(name: string, size: string, seconds: number): Promise<string> {
  const path = `${tmp}/${name}.mp4`;
  const src = `testsrc2=size=${size}:rate=25`;
  const args = ["-v", "error", "-y", "-f", "lavfi", "-i", src, "-t", String(seconds), "-c:v", "libx264"];
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

const shared = new URL("../../shared/data/k400_sample", import.meta.url).pathname;
const realClips = await Array.fromAsync(Deno.readDir(shared)).then(
  (es) => es.filter((e) => e.name.endsWith(".mp4")).map((e) => `${shared}/${e.name}`).sort().slice(0, 3),
  () => [] as string[],
);

Deno.test({
  name: "in-process decoding gives the ffmpeg process's bytes on the real clips in ../shared/data",
  ignore: !decoder || realClips.length === 0,
  fn: async () => {
    for (const clip of realClips) {
      await assertSameFrames(clip, VARIANTS[1]);
      await assertSameFrames(clip, VARIANTS[3]);
      await assertSameFrames(clip, { indices: [60, 64, 68, 72], shortSide: 128, pixelFormat: "yuv420p" });
    }
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
