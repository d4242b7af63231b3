/**
 * PyTorch checkpoints read without Python: the fixtures written by tests/fixtures/make_pth_fixtures.py
 * (torch 1.13: zip and legacy formats, deflated entries, f32/f16/bf16/f64/int/bool, offset, strided and
 * shared storages, argparse namespaces), loading into the classifier by V-SWIFT's rules, the 710-class
 * head mapping, and `deno task convert`.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { decodePth, openPth, type PthTensor, stateDictOf } from "../lib/io/pth.ts";
import { objectState, PY_ATTRS } from "../lib/io/pickle.ts";
import { loadSafetensors, type SafeTensor, toFloats } from "../lib/io/safetensors.ts";
import { crc32, memorySource, ZipReader } from "../lib/io/zip.ts";
import { VideoClassifier } from "../lib/model/classifier.ts";
import { modelConfig } from "../lib/model/config.ts";
import { formatReport, loadIntoClassifier, loadPretrained, vswiftRename } from "../lib/model/pretrained.ts";
import { checkHeadMap, classCount, datasetName } from "../lib/data/labels.ts";
import "./helpers.ts";

const DIR = new URL("./fixtures/pth/", import.meta.url).pathname;
const EXPECTED = JSON.parse(Deno.readTextFileSync(`${DIR}expected.json`)) as {
  files: Record<
    string,
    Record<string, { dtype: string; shape: number[]; sum: number; first: number[]; values?: number[] }>
  >;
};

/** SHA-256 of every tensor's values as torch.load reads them (tests/fixtures/make_pth_digests.py). */
const DIGESTS = JSON.parse(Deno.readTextFileSync(`${DIR}digests.json`)) as {
  files: Record<string, Record<string, string>>;
};

/** The digest make_pth_digests.py takes: the values as little-endian float64, in row-major order. */
function digest(values: ArrayLike<number>): string {
  return createHash("sha256").update(new Uint8Array(Float64Array.from(values).buffer)).digest("hex");
}

const DTYPES: Record<string, string> = {
  float32: "F32",
  float64: "F64",
  float16: "F16",
  bfloat16: "BF16",
  int64: "I64",
  int32: "I32",
  uint8: "U8",
  bool: "BOOL",
};

/** The values of a tensor as float64 numbers (integers exactly while below 2^53). */
function numbers(t: SafeTensor): number[] {
  const b = t.data.slice();
  switch (t.dtype) {
    case "F64":
      return [...new Float64Array(b.buffer)];
    case "I64":
      return [...new BigInt64Array(b.buffer)].map(Number);
    case "I32":
      return [...new Int32Array(b.buffer)];
    case "U8":
    case "BOOL":
      return [...b];
    default:
      return [...toFloats(t)];
  }
}

function checkTensor(file: string, name: string, t: PthTensor): void {
  const e = EXPECTED.files[file][name];
  assert.ok(e, `${file}: ${name} is not in expected.json`);
  assert.equal(t.dtype, DTYPES[e.dtype], `${file}: ${name} dtype`);
  assert.deepEqual(t.shape, e.shape, `${file}: ${name} shape`);
  const v = numbers(t.toSafeTensor());
  const sum = v.reduce((a, b) => a + b, 0);
  assert.ok(
    Math.abs(sum - e.sum) <= 1e-6 * Math.max(1, Math.abs(e.sum)),
    `${file}: ${name} sum ${sum} vs ${e.sum}`,
  );
  assert.deepEqual(v.slice(0, e.first.length), e.first, `${file}: ${name} first values`);
  if (e.values) assert.deepEqual(v, e.values, `${file}: ${name} values`);
  assert.equal(digest(v), DIGESTS.files[file][name], `${file}: ${name} differs from torch.load's values`);
}

Deno.test("pth: every tensor of every fixture reads back as torch.load reads it", () => {
  for (const file of Object.keys(EXPECTED.files)) {
    const ckpt = openPth(`${DIR}${file}`);
    const sd = stateDictOf(ckpt.root, ["model", "module"], file);
    assert.deepEqual([...sd.tensors.keys()].sort(), Object.keys(EXPECTED.files[file]).sort(), file);
    for (const [name, t] of sd.tensors) checkTensor(file, name, t);
    assert.equal(ckpt.format, file.startsWith("legacy") ? "legacy" : "zip", file);
    ckpt.close();
  }
});

Deno.test("pth: storage layouts (offsets, strides, shared storages) and checkpoint metadata", () => {
  const ckpt = openPth(`${DIR}layouts.pth`);
  const sd = stateDictOf(ckpt.root);
  assert.equal(sd.key, undefined); // a bare state dict
  const t = sd.tensors.get("transposed")!;
  assert.equal(t.contiguous, false);
  assert.deepEqual(t.stride, [1, 6]);
  assert.equal(sd.tensors.get("offset_rows")!.offset, 6);
  // Views of one tensor share one storage object.
  assert.equal(sd.tensors.get("offset_rows")!.storage, t.storage);
  assert.equal(sd.tensors.get("strided_cols")!.storage, t.storage);
  assert.deepEqual(sd.tensors.get("scalar")!.shape, []);
  assert.equal(sd.tensors.get("empty")!.toSafeTensor().data.length, 0);
  ckpt.close();

  const pre = openPth(`${DIR}pretrain_vswift.pth`);
  const root = pre.root as Map<string, unknown>;
  assert.equal(stateDictOf(root).key, "model");
  assert.equal(root.get("epoch"), 19);
  assert.deepEqual(objectState(root.get("args")), {
    model: "pretrain_videomae_tiny",
    lr: 1e-3,
    betas: [0.9, 0.95],
    flag: true,
    none: null,
    tag: Uint8Array.from([0, 255, ...new TextEncoder().encode("bytes")]),
    big: 2n ** 70n,
    neg: -5,
    half: 0.5,
  });
  const ema = root.get("model_ema") as Map<string, unknown>;
  assert.deepEqual([...ema.keys()], ["weight", "bias"]);
  assert.ok((ema as unknown as Record<symbol, unknown>)[PY_ATTRS] instanceof Map); // OrderedDict._metadata
  const optimizer = root.get("optimizer") as Map<string, unknown>;
  assert.ok(optimizer.get("param_groups") instanceof Array);
  pre.close();

  assert.equal(stateDictOf(openPth(`${DIR}finetune_module_orig_mod_f16.pth`).root).key, "module");
});

Deno.test("pth: damaged files are refused with the reason", async () => {
  const good = await Deno.readFile(`${DIR}pretrain_vswift.pth`);
  assert.throws(
    () => decodePth(good.subarray(0, good.length - 30), "cut.pth"),
    /cut.pth is not a readable zip archive/,
  );
  // Flip one byte inside a storage: its CRC-32 no longer matches when the storage is read.
  const bad = good.slice();
  const at = bad.indexOf(0x50, 30000); // somewhere in the middle of the tensor data
  bad[at + 1] ^= 0xff;
  assert.throws(() => {
    const c = decodePth(bad, "flipped.pth");
    for (const t of stateDictOf(c.root).tensors.values()) t.toSafeTensor();
  }, /flipped.pth is not a readable zip archive: .* fails its CRC-32 check/);
  assert.throws(() => decodePth(new TextEncoder().encode("hello"), "text.pth"), /Cannot read text.pth/);
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  // The re-packed fixture really holds deflate-compressed entries.
  const zip = new ZipReader(memorySource(await Deno.readFile(`${DIR}deflated.pth`)));
  assert.ok([...zip.entries.values()].every((e) => e.method === 8));
});

/** The fixtures' model: tiny narrowed to 16 wide, 2 frames of 16 x 16. */
function tinyClassifier(numClasses: number): VideoClassifier {
  const cfg = modelConfig("tiny", { embedDim: 16, heads: 2, imgSize: 16, frames: 2, decoderDim: 8 });
  return new VideoClassifier(cfg, { numClasses }).allocate("f32").initialize(0);
}

function masterSum(m: VideoClassifier, name: string): number {
  return m.store.readMaster(m.store.get(name)!).reduce((a, b) => a + b, 0);
}

/** Every loaded parameter holds its source tensor's values, element by element. */
function assertLoadedExactly(
  m: VideoClassifier,
  file: string,
  loaded: string[],
  source: (n: string) => string,
) {
  assert.ok(loaded.length > 0);
  for (const name of loaded) {
    const want = DIGESTS.files[file][source(name)];
    assert.ok(want, `${file} has no ${source(name)}`);
    assert.equal(digest(m.store.readMaster(m.store.get(name)!)), want, `${name} differs from ${file}`);
  }
}

Deno.test("a V-SWIFT pretraining .pth loads its encoder into the classifier; the rest is reported", async () => {
  const m = tinyClassifier(5);
  const r = await loadPretrained(m, `${DIR}pretrain_vswift.pth`);
  assert.equal(r.format, "pth");
  assert.equal(r.key, "model");
  assert.equal(r.loaded.length, 2 + 2 * 13); // patch embedding and blocks
  assert.deepEqual(r.missing, ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]);
  assert.ok(r.unexpected.includes("norm.weight") && r.unexpected.includes("encoder_to_decoder.weight"));
  assert.ok(r.unexpected.includes("decoder.mask_token") && r.unexpected.includes("decoder.head.weight"));
  // The decoder's pos_embed (first in PyTorch's order) loses to encoder.pos_embed, which is then a table.
  assert.deepEqual(r.ignored.map((i) => i.name), ["pos_embed", "pos_embed"]);
  const e = EXPECTED.files["pretrain_vswift.pth"];
  for (const name of ["patch_embed.proj.weight", "blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.bias"]) {
    const want = e[`encoder.${name}`].sum;
    assert.ok(Math.abs(masterSum(m, name) - want) < 1e-4, name);
  }
  assertLoadedExactly(m, "pretrain_vswift.pth", r.loaded, (n) => `encoder.${n}`);
  assert.match(formatReport(r), /loaded 28 tensors from .*pretrain_vswift.pth \(key "model"\)/);
  m.free();
});

Deno.test("_orig_mod. / backbone. / encoder. prefixes are stripped; a head of another size is dropped", async () => {
  const m = tinyClassifier(5);
  const r = await loadPretrained(m, `${DIR}finetune_module_orig_mod_f16.pth`);
  assert.equal(r.key, "module");
  assert.equal(r.loaded.length, m.store.params.length);
  assert.deepEqual([r.missing, r.unexpected], [[], []]);
  const e = EXPECTED.files["finetune_module_orig_mod_f16.pth"];
  assert.ok(Math.abs(masterSum(m, "head.weight") - e["_orig_mod.head.weight"].sum) < 1e-3);
  assert.ok(
    Math.abs(masterSum(m, "blocks.0.norm1.weight") - e["_orig_mod.backbone.blocks.0.norm1.weight"].sum) <
      1e-3,
  );
  assertLoadedExactly(
    m,
    "finetune_module_orig_mod_f16.pth",
    r.loaded,
    (n) => n.startsWith("blocks") ? `_orig_mod.backbone.${n}` : `_orig_mod.${n}`,
  );
  m.free();

  const m2 = tinyClassifier(5);
  const r2 = await loadPretrained(m2, `${DIR}finetune_bare_bf16_encoder.pth`);
  assert.deepEqual(r2.missing, ["head.weight", "head.bias"]);
  assert.deepEqual(r2.ignored.filter((i) => i.name.startsWith("head")).map((i) => i.why), [
    "shape [7, 16] does not fit the model's 5-class head",
    "shape [7] does not fit the model's 5-class head",
  ]);
  m2.free();

  // A safetensors file has no order: the encoder's position table wins whichever comes first.
  const t = (v: number): SafeTensor => ({
    dtype: "F32",
    shape: [1],
    data: new Uint8Array(Float32Array.of(v).buffer),
  });
  for (const names of [["encoder.pos_embed", "pos_embed"], ["pos_embed", "encoder.pos_embed"]]) {
    const r3 = vswiftRename(new Map(names.map((n) => [n, t(n.startsWith("encoder") ? 1 : 2)])));
    assert.deepEqual(toFloats(r3.tensors.get("pos_embed")!), Float32Array.of(1));
    assert.deepEqual(r3.dropped.map((d) => d.name), ["pos_embed"]);
  }
});

Deno.test("a 710-class head is row-sliced into a Kinetics-400 head with the label map, else dropped", () => {
  const rows = (n: number, w: number) => {
    const v = new Float32Array(n * w);
    for (let r = 0; r < n; r++) v.fill(r, r * w, (r + 1) * w);
    return { dtype: "F32" as const, shape: w === 1 ? [n] : [n, w], data: new Uint8Array(v.buffer) };
  };
  const source = new Map<string, SafeTensor>([["head.weight", rows(710, 16)], ["head.bias", rows(710, 1)]]);
  const map = Array.from({ length: 400 }, (_, i) => 709 - 2 * (i % 300) - (i >= 300 ? 1 : 0));
  const m = tinyClassifier(classCount("k400"));
  const r = loadIntoClassifier(m, source, {
    headMap: checkHeadMap(map, 400, 710),
    headMapSource: "label_710to400.json",
  });
  assert.equal(r.headMapped, "label_710to400.json");
  const w = m.store.readMaster(m.store.get("head.weight")!);
  const b = m.store.readMaster(m.store.get("head.bias")!);
  for (const i of [0, 1, 299, 300, 399]) {
    assert.equal(w[i * 16 + 5], map[i]);
    assert.equal(b[i], map[i]);
  }
  // Without the map nothing of this head-only source fits: an error, with the reason.
  assert.throws(
    () => loadIntoClassifier(m, source),
    /matches none of the \d+ tensors[^]*ignored head.weight: a 710-class head needs a label map \(label_710to400.json\)/,
  );
  m.free();
  assert.throws(() => checkHeadMap([1, 1], 2, 710), /entry 1 is 1; entries must be distinct/);
  assert.throws(() => checkHeadMap([0], 400, 710), /array of 400 row indices, got 1 entries/);
  assert.deepEqual(
    ["ssv2", "K700", "Kinetics-710", "HMDB51", "diving48", "MIT"].map((n) => classCount(n)),
    [174, 700, 710, 51, 48, 339],
  );
  assert.equal(datasetName("k600"), "Kinetics-600");
  assert.throws(() => classCount("imagenet"), /Unknown dataset "imagenet"; known: SSV2, Kinetics-400/);
});

Deno.test("deno task convert writes the state dict as safetensors", async () => {
  const out = await Deno.makeTempFile({ suffix: ".safetensors" });
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../tasks/convert.ts", import.meta.url).pathname,
      `${DIR}finetune_module_orig_mod_f16.pth`,
      out,
      "--strip-prefixes",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  assert.match(
    new TextDecoder().decode(r.stdout),
    /33 tensors, .* \(33 F16\) from zip-format .* key "module"/,
  );
  const file = await loadSafetensors(out);
  assert.equal(file.tensors.size, 33);
  const t = file.tensors.get("blocks.1.mlp.fc1.weight")!;
  assert.equal(t.dtype, "F16");
  const e = EXPECTED.files["finetune_module_orig_mod_f16.pth"]["_orig_mod.backbone.blocks.1.mlp.fc1.weight"];
  assert.deepEqual([...toFloats(t).slice(0, 6)], e.first);
  await Deno.remove(out);
});
