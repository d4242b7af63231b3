/**
 * Hostile and oversized inputs are refused before they cost memory or time: zip bombs (by the declared
 * size, the ratio, and a size that lies), checked by the inflated-bytes counter rather than a clock; a
 * FIFO in a data list (refused unopened: no tool started) and a decoder that hangs (killed at its limit);
 * a model too large for the machine (refused from the estimate, before allocating); safetensors with
 * overlapping tensors, and an initialisation source that matches nothing.
 */
import assert from "node:assert/strict";
import { deflateRawSync } from "node:zlib";
import { decodeCounters, decodeFrames, probeVideo } from "../lib/data/ffmpeg.ts";
import { decodePth, stateDictOf } from "../lib/io/pth.ts";
import { crc32, memorySource, zipCounters, ZipReader } from "../lib/io/zip.ts";
import { decodeSafetensors, fromFloats } from "../lib/io/safetensors.ts";
import { VideoClassifier } from "../lib/model/classifier.ts";
import { geometry, modelConfig } from "../lib/model/config.ts";
import { loadIntoClassifier } from "../lib/model/pretrained.ts";
import { VideoMAEPretrain } from "../lib/model/pretrain.ts";
import { estimateTraining, pretrainRuns, requireMemory } from "../lib/train/memory_estimate.ts";
import "./helpers.ts";

interface RawEntry {
  name: string;
  /** Already compressed when method is 8. */
  body: Uint8Array;
  method: 0 | 8;
  /** What the directory declares. */
  size: number;
  crc: number;
}

/** A zip archive with exactly the directory entries given (sizes may lie). */
function zipOf(entries: RawEntry[]): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(8, e.method, true);
    lv.setUint32(14, e.crc, true);
    lv.setUint32(18, e.body.length, true);
    lv.setUint32(22, e.size, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const cd = new Uint8Array(46 + name.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(10, e.method, true);
    cv.setUint32(16, e.crc, true);
    cv.setUint32(20, e.body.length, true);
    cv.setUint32(24, e.size, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    cd.set(name, 46);
    parts.push(local, e.body);
    central.push(cd);
    offset += local.length + e.body.length;
  }
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const all = [...parts, ...central, end];
  const out = new Uint8Array(all.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of all) (out.set(p, at), (at += p.length));
  return out;
}

const ZEROS = 64 << 20;
const bomb = deflateRawSync(new Uint8Array(ZEROS));

Deno.test("a zip bomb is refused by its declared size and ratio before anything is inflated", () => {
  const before = zipCounters.inflatedBytes;
  const honest = new ZipReader(
    memorySource(zipOf([{ name: "x", body: bomb, method: 8, size: ZEROS, crc: 0 }])),
    "bomb.zip",
  );
  assert.throws(() => honest.read("x"), /would inflate \d+ bytes to 67108864 \(over 100x\).*zip bomb/);
  assert.throws(() => honest.read("x", { maxBytes: 1000 }), /declares 67108864 bytes where at most 1000/);
  // A directory that understates the size: inflation stops at the declared size.
  const liar = new ZipReader(
    memorySource(zipOf([{ name: "x", body: bomb, method: 8, size: 4096, crc: 0 }])),
    "liar.zip",
  );
  assert.throws(() => liar.read("x"), /inflates past the 4096 bytes its directory entry declares/);
  assert.equal(zipCounters.inflatedBytes - before, 0);
  // A real deflated entry still reads, and is counted.
  const data = new TextEncoder().encode("tensor bytes ".repeat(100));
  const ok = new ZipReader(
    memorySource(
      zipOf([{ name: "y", body: deflateRawSync(data), method: 8, size: data.length, crc: crc32(data) }]),
    ),
  );
  assert.deepEqual(ok.read("y"), data);
  assert.equal(zipCounters.inflatedBytes - before, data.length);
});

Deno.test("a .pth whose storage entry is a bomb is refused by the storage's own size", async () => {
  const src = new ZipReader(
    memorySource(await Deno.readFile(new URL("./fixtures/pth/deflated.pth", import.meta.url))),
  );
  const names = src.names();
  const entries: RawEntry[] = names.map((n) => {
    const e = src.entries.get(n)!;
    const data = src.read(n);
    if (/\/data\/\d+$/.test(n)) return { name: n, body: bomb, method: 8, size: ZEROS, crc: 0 };
    return { name: n, body: deflateRawSync(data), method: 8, size: e.size, crc: e.crc32 };
  });
  const before = zipCounters.inflatedBytes;
  const ckpt = decodePth(zipOf(entries), "bomb.pth");
  const pickleBytes = zipCounters.inflatedBytes - before;
  assert.throws(() => {
    for (const t of stateDictOf(ckpt.root).tensors.values()) t.toSafeTensor();
  }, /bomb.pth is not a readable zip archive: .*declares 67108864 bytes where at most \d+ are expected/);
  // Only the pickle and the honest storages were inflated: a few kilobytes, not 64 MiB.
  assert.ok(zipCounters.inflatedBytes - before - pickleBytes < 1 << 20);
});

Deno.test("a FIFO in a data list is refused unopened, and a decode that hangs is stopped at its limit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vswift-bounded-" });
  try {
    const fifo = `${dir}/clip.mp4`;
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(mk.success);
    const before = { ...decodeCounters };
    // Opening a FIFO for reading blocks until a writer comes: a probe that tried would hang here.
    await assert.rejects(
      probeVideo(fifo),
      /Could not probe .*clip.mp4: it is a FIFO; data lists may name only regular/,
    );
    await assert.rejects(
      decodeFrames({ path: fifo, info, indices: [0, 1], shortSide: 0 }),
      /Could not decode .*clip.mp4: it is a FIFO/,
    );
    assert.equal(decodeCounters.started - before.started, 0);
    assert.equal(decodeCounters.refused - before.refused, 2);
    // A tool that never answers (a stand-in for ffmpeg stuck on a damaged file) is killed at the limit.
    const stuck = `${dir}/stuck.sh`;
    await Deno.writeTextFile(stuck, "#!/bin/sh\nexec sleep 60\n");
    await Deno.chmod(stuck, 0o755);
    const video = `${dir}/video.mp4`;
    await Deno.writeTextFile(video, "not really a video");
    const saved = ["VSWIFT_FFPROBE", "VSWIFT_FFMPEG", "VSWIFT_DECODE_TIMEOUT"].map((
      k,
    ) => [k, Deno.env.get(k)]);
    Deno.env.set("VSWIFT_FFPROBE", stuck);
    Deno.env.set("VSWIFT_FFMPEG", stuck);
    Deno.env.set("VSWIFT_DECODE_TIMEOUT", "0.3");
    try {
      await assert.rejects(probeVideo(video), /Could not probe .*video.mp4: ffprobe ran longer than 0.3 s/);
      await assert.rejects(
        decodeFrames({ path: video, info, indices: [0, 1], shortSide: 0 }),
        /Could not decode .*video.mp4: ffmpeg ran longer than 0.3 s and was stopped/,
      );
    } finally {
      for (const [k, v] of saved) v === undefined ? Deno.env.delete(k!) : Deno.env.set(k!, v);
    }
    assert.equal(decodeCounters.timedOut - before.timedOut, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const info = { width: 32, height: 32, frames: 8, fps: 25, cfr: true };

Deno.test("a model too large for the machine is refused before allocating, with the figures", async () => {
  // g/14 at V-SWIFT's 16 x 224 x 224 and 60 clips per GPU: about 1.0 B parameters (16 GiB of state)
  // and over 25 GiB of bf16 activations, against a 24 GiB host.
  const c = modelConfig("giant", { decoderDepth: 4 });
  const params = new VideoMAEPretrain(c).parameterCount;
  const { tokens } = geometry(c);
  const need = estimateTraining(params, pretrainRuns(c, 205, tokens), 60, "bf16");
  assert.ok(need.state > 16 * 1024 ** 3 && need.activations > 25 * 1024 ** 3, JSON.stringify(need));
  assert.throws(
    () => requireMemory(need, 24 * 1024 ** 3, { what: "giant", where: "host memory", batch: 60 }),
    /needs at least \d+\.\d GiB \(giant: .* activations for a batch of 60 .* host memory has 24.0 GiB available; lower train.batch_size/,
  );
  // The default run fits easily.
  const mini = modelConfig("mini", { imgSize: 64, frames: 8, patchSize: 8, decoderDepth: 2 });
  const small = estimateTraining(
    new VideoMAEPretrain(mini).parameterCount,
    pretrainRuns(mini, 16, 128),
    8,
    "f32",
  );
  assert.ok(small.state + small.activations < 256 << 20);
  // Through the task: a batch no machine holds is refused before anything is allocated or generated.
  const out = await Deno.makeTempDir({ prefix: "vswift-giant-" });
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../tasks/pretrain.ts", import.meta.url).pathname,
        "--model.size",
        "giant",
        "--model.patch_size",
        "0",
        "--model.input_size",
        "112",
        "--train.batch_size",
        "100000",
        "--output",
        out,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 2, err);
    assert.match(
      err,
      /pretraining failed: The run needs at least [\d.]+ GiB \(giant, 10\d\d\.\dM parameters/,
    );
    assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name).filter((n) => n !== "log.txt"), []);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

/** Safetensors bytes with the header given as is (offsets may overlap). */
function rawSafetensors(header: Record<string, unknown>, dataBytes: number): Uint8Array {
  const text = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + text.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  return out;
}

Deno.test("safetensors whose tensors overlap or leave a gap are refused", () => {
  const t = (a: number, b: number) => ({ dtype: "F32", shape: [(b - a) / 4], data_offsets: [a, b] });
  // Same total size as the data section, so a byte count alone does not see it.
  const overlap = rawSafetensors({ a: t(0, 16), b: t(8, 24), c: t(24, 32) }, 32);
  assert.throws(
    () => decodeSafetensors(overlap, "o.safetensors"),
    /o.safetensors is corrupt: tensor b .*overlaps tensor a/,
  );
  const gap = rawSafetensors({ a: t(0, 8), b: t(16, 32) }, 32);
  assert.throws(() => decodeSafetensors(gap, "g.safetensors"), /data bytes \[8, 16\) belong to no tensor/);
  const ok = decodeSafetensors(rawSafetensors({ a: t(0, 8), e: t(8, 8), b: t(8, 32) }, 32));
  assert.equal(ok.tensors.size, 3);
});

Deno.test("an initialisation source that matches no tensor of the model is an error", () => {
  const cfg = modelConfig("tiny", { embedDim: 16, heads: 2, imgSize: 16, frames: 2, decoderDim: 8 });
  const model = new VideoClassifier(cfg, { numClasses: 3 }).allocate("f32").initialize(0);
  const foreign = new Map([["resnet.conv1.weight", fromFloats(new Float32Array(4), [2, 2])]]);
  assert.throws(
    () => loadIntoClassifier(model, foreign, { source: "resnet.safetensors" }),
    /resnet.safetensors matches none of the \d+ tensors of the tiny classifier: its 1 tensors \(resnet.conv1.weight\)/,
  );
  assert.throws(
    () => loadIntoClassifier(model, new Map(), { source: "empty.safetensors" }),
    /it holds no tensors/,
  );
  // One matching tensor is a (partial) start, reported as such.
  const partial = new Map([["norm.weight", fromFloats(new Float32Array(16).fill(2), [16])]]);
  assert.ok(model.store.get("norm.weight") || model.store.get("fc_norm.weight"));
  const name = model.store.get("norm.weight") ? "norm.weight" : "fc_norm.weight";
  const r = loadIntoClassifier(model, new Map([[name, partial.get("norm.weight")!]]));
  assert.deepEqual(r.loaded, [name]);
});
