/**
 * The in-process probe against ffprobe: equal VideoInfo on the real clips in ../shared/data (when
 * present), on generated clips, on containers without a frame count (webm, mkv: packets counted) and
 * on a variable frame rate clip; per-file DecodeErrors for broken, truncated, missing and non-video
 * files without taking the process down; and VSWIFT_DECODER choosing the prober as it chooses the
 * decoder.
 */
import assert from "node:assert/strict";
import { DecodeError, probeVideo, runTool } from "../lib/data/ffmpeg.ts";
import { ProbeCache, probeClip, probeCounts, probeInProcess } from "../lib/data/probe.ts";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { openDecoder } from "../lib/ffi/decode.ts";
import { K400_CLIPS, scratchDir } from "./helpers.ts";

const tmp = await scratchDir("vswift_probe_test_");
const { decoder } = await openDecoder();

/** An ffmpeg encode of a test pattern into `name`; `args` go before the output. */
async function encode(name: string, args: string[]): Promise<string> {
  const path = `${tmp}/${name}`;
  const src = ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25"];
  const r = await runTool("ffmpeg", [...src, ...args, path]);
  assert.equal(r.code, 0, r.stderr);
  return path;
}

async function assertSameProbe(path: string) {
  const a = await probeVideo(path);
  const b = await probeInProcess(path, true);
  assert.deepEqual(b, a, path);
}

Deno.test({
  name: "the in-process probe equals ffprobe on generated clips",
  ignore: !decoder,
  fn: async () => {
    const ds = await ensureSyntheticDataset({
      dir: `${tmp}/synth`,
      videos: 3,
      classes: 3,
      size: 64,
      frames: 24,
    });
    for await (const e of Deno.readDir(`${ds.dataRoot}/videos`)) {
      await assertSameProbe(`${ds.dataRoot}/videos/${e.name}`);
    }
  },
});

Deno.test({
  name: "the in-process probe counts packets where the container has no frame count, as ffprobe does",
  ignore: !decoder,
  fn: async () => {
    const webm = await encode("clip.webm", [
      "-frames:v",
      "23",
      "-c:v",
      "libvpx-vp9",
      "-deadline",
      "realtime",
    ]);
    const mkv = await encode("clip.mkv", ["-frames:v", "31", "-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    for (const [path, frames] of [[webm, 23], [mkv, 31]] as const) {
      const s = await runTool("ffprobe", [
        "-v",
        "error",
        "-show_entries",
        "stream=nb_frames",
        "-of",
        "csv",
        path,
      ]);
      assert.match(new TextDecoder().decode(s.stdout), /N\/A/, `${path} should have no frame count`);
      await assertSameProbe(path);
      assert.equal((await probeInProcess(path, true))!.frames, frames);
    }
  },
});

Deno.test({
  name: "the in-process probe reads a variable frame rate as ffprobe does (not constant, average fps)",
  ignore: !decoder,
  fn: async () => {
    const vfr = await encode("vfr.mp4", [
      ...["-frames:v", "50", "-vf", "setpts='(N/25+gte(N\\,25)*(N-25)/50)/TB'", "-fps_mode", "passthrough"],
      ...["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    ]);
    const info = await probeInProcess(vfr, true);
    assert.equal(info!.cfr, false);
    assert.ok(info!.fps > 20 && info!.fps < 25, `fps ${info!.fps}`);
    await assertSameProbe(vfr);
  },
});

const realClips = K400_CLIPS;

Deno.test({
  name: "the in-process probe equals ffprobe on the real clips in ../shared/data",
  ignore: !decoder || realClips.length === 0,
  fn: async () => {
    for (const clip of realClips) await assertSameProbe(clip);
  },
});

Deno.test({
  name: "broken, truncated, missing and non-video files give a DecodeError naming the file from both probes",
  ignore: !decoder,
  fn: async () => {
    const clip = await encode("whole.mp4", ["-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    const bytes = await Deno.readFile(clip);
    const truncated = `${tmp}/truncated.mp4`;
    await Deno.writeFile(truncated, bytes.subarray(0, bytes.length >> 1));
    const garbage = `${tmp}/garbage.mp4`;
    await Deno.writeFile(garbage, bytes.map((b, i) => (b * 31 + i) & 255));
    const empty = `${tmp}/empty.mp4`;
    await Deno.writeFile(empty, new Uint8Array());
    const audio = `${tmp}/audio.wav`;
    const r = await runTool("ffmpeg", ["-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=0.2", audio]);
    assert.equal(r.code, 0, r.stderr);
    // Opening a FIFO blocks until a writer comes: both refuse it unopened.
    const fifo = `${tmp}/fifo.mp4`;
    assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
    const probes = [probeVideo, (p: string) => probeInProcess(p, true)];
    for (const path of [truncated, garbage, empty, audio, `${tmp}/missing.mp4`, tmp, fifo]) {
      const messages: string[] = [];
      for (const probe of probes) {
        await assert.rejects(probe(path), (e) => {
          assert.ok(e instanceof DecodeError, `${path}: ${e}`);
          assert.ok(e.message.startsWith(`Could not probe ${path}: `), e.message);
          messages.push(e.message);
          return true;
        });
      }
      if (path === audio) assert.deepEqual(messages.map((m) => m.endsWith("no video stream")), [true, true]);
      if (path === fifo) assert.deepEqual(messages.map((m) => m.includes("it is a FIFO")), [true, true]);
    }
    // The process is still here and the probe still works.
    await assertSameProbe(clip);
  },
});

Deno.test({
  name: "VSWIFT_DECODER chooses the prober, and the probe cache uses the in-process one by default",
  ignore: !decoder,
  fn: async () => {
    const clip = await encode("choice.mp4", ["-frames:v", "12", "-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    const before = { ...probeCounts };
    const a = await probeClip(clip, undefined, "ffmpeg");
    const b = await probeClip(clip, undefined, "inprocess");
    const c = await probeClip(clip, undefined, "auto");
    assert.deepEqual([b, c], [a, a]);
    assert.deepEqual(probeCounts, { ffprobe: before.ffprobe + 1, inprocess: before.inprocess + 2 });
    const saved = Deno.env.get("VSWIFT_DECODER");
    Deno.env.set("VSWIFT_DECODER", "ffmpeg");
    try {
      await new ProbeCache().get(clip);
      assert.equal(probeCounts.ffprobe, before.ffprobe + 2);
    } finally {
      if (saved === undefined) Deno.env.delete("VSWIFT_DECODER");
      else Deno.env.set("VSWIFT_DECODER", saved);
    }
    await new ProbeCache().get(clip);
    assert.equal(probeCounts.inprocess, before.inprocess + (saved === "ffmpeg" ? 2 : 3));
  },
});
