/** safetensors files and state dicts: round trips, PyTorch names, and clear refusals. */
import assert from "node:assert/strict";
import {
  decodeSafetensors,
  encodeSafetensors,
  fromFloats,
  loadSafetensors,
  saveSafetensors,
  toFloats,
} from "../lib/io/safetensors.ts";
import { modelConfig } from "../lib/model/config.ts";
import { VideoMAEPretrain } from "../lib/model/pretrain.ts";
import { loadStateDict, stateDict } from "../lib/model/state.ts";
import "./helpers.ts";

Deno.test("safetensors: F32 and BF16 round trip, 8-byte aligned data, metadata", () => {
  const a = Float32Array.from([1, -2.5, 3.25, 1e-3, 7]);
  const tensors = new Map([
    ["w", fromFloats(a, [5])],
    ["h", fromFloats(Float32Array.from([1.5, 3]), [1, 2], "BF16")],
    ["big", fromFloats(new Float32Array(6).fill(0.5), [2, 3])],
  ]);
  const bytes = encodeSafetensors(tensors, { format: "pt" });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + headerLen) % 8, 0);
  const back = decodeSafetensors(bytes);
  assert.deepEqual(back.metadata, { format: "pt" });
  assert.deepEqual([...toFloats(back.tensors.get("w")!)], [...a]);
  assert.deepEqual([...toFloats(back.tensors.get("h")!)], [1.5, 3]);
  assert.deepEqual(back.tensors.get("big")!.shape, [2, 3]);
  // F32 tensors are written before BF16 ones, so every F32 stays 4-byte aligned.
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  assert.ok(header.h.data_offsets[0] >= header.w.data_offsets[1]);
});

Deno.test("safetensors: truncated, corrupt and missing files are refused with the file named", async () => {
  const bytes = encodeSafetensors(new Map([["w", fromFloats(new Float32Array(16), [4, 4])]]));
  assert.throws(
    () => decodeSafetensors(bytes.subarray(0, bytes.length - 5), "ckpt.safetensors"),
    /ckpt.safetensors is truncated or corrupt: tensor w/,
  );
  assert.throws(
    () => decodeSafetensors(bytes.subarray(0, 20), "ckpt.safetensors"),
    /ckpt.safetensors is not a valid safetensors file/,
  );
  const broken = bytes.slice();
  broken[9] = 0x7b; // a second "{" breaks the JSON
  broken[10] = 0x7b;
  assert.throws(() => decodeSafetensors(broken, "ckpt.safetensors"), /corrupt safetensors header/);
  const dir = await Deno.makeTempDir();
  await assert.rejects(loadSafetensors(`${dir}/nope.safetensors`), /nope.safetensors does not exist/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("state dict: PyTorch names, buffers included, save and load restore the weights", async () => {
  const model = new VideoMAEPretrain(modelConfig("tiny")).allocate("f32").initialize(1);
  const sd = stateDict(model);
  assert.deepEqual(sd.get("encoder.patch_embed.proj.weight")!.shape, [32, 3, 2, 8, 8]);
  assert.deepEqual(sd.get("encoder.pos_embed")!.shape, [1, 32, 32]);
  assert.deepEqual(sd.get("pos_embed")!.shape, [1, 32, 16]);
  const dir = await Deno.makeTempDir();
  const path = `${dir}/w.safetensors`;
  await saveSafetensors(path, sd);
  const other = new VideoMAEPretrain(modelConfig("tiny")).allocate("f32").initialize(2);
  const p = other.store.get("decoder.head.weight")!;
  assert.notDeepEqual(
    other.store.readMaster(p),
    model.store.readMaster(model.store.get("decoder.head.weight")!),
  );
  const report = loadStateDict(other, (await loadSafetensors(path)).tensors, { source: path });
  assert.equal(report.loaded.length, model.store.params.length);
  for (const q of model.store.params) {
    assert.deepEqual(other.store.readMaster(other.store.get(q.name)!), model.store.readMaster(q));
  }
  await Deno.remove(dir, { recursive: true });
  model.free();
  other.free();
});

Deno.test("state dict: missing, unexpected and mis-shaped tensors are named", () => {
  const model = new VideoMAEPretrain(modelConfig("tiny")).allocate("f32").initialize(1);
  const sd = stateDict(model);
  const missing = new Map(sd);
  missing.delete("decoder.mask_token");
  assert.throws(
    () => loadStateDict(model, missing, { source: "a.safetensors" }),
    /missing tensors: decoder.mask_token/,
  );
  const extra = new Map(sd);
  extra.set("mask_token", fromFloats(new Float32Array(16), [1, 1, 16]));
  assert.throws(() => loadStateDict(model, extra), /unexpected tensors: mask_token/);
  assert.deepEqual(loadStateDict(model, extra, { strict: false }).unexpected, ["mask_token"]);
  const wrong = new Map(sd);
  wrong.set("decoder.head.bias", fromFloats(new Float32Array(10), [10]));
  assert.throws(
    () => loadStateDict(model, wrong, { strict: false }),
    /decoder.head.bias: \[10\] in the state dict, \[384\] in the model/,
  );
  model.free();
});
