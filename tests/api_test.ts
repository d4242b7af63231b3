/** The public API of mod.ts as a notebook uses it. */
import assert from "node:assert/strict";
import {
  createClassifier,
  createPretrainModel,
  Graph,
  loadModel,
  maskFromBoolean,
  parameters,
  readFloats,
  readScalar,
  Rng,
  saveModel,
  uploadVideo,
} from "../mod.ts";
import { arena } from "./helpers.ts";

function video(seed: number, b = 2): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: b * 3 * 4 * 32 * 32 }, () => rng.normal());
}

Deno.test("forward in f32 and bf16 with an explicit mask, backward, parameter listing", async () => {
  const f32 = await createPretrainModel("tiny", { dtype: "f32", seed: 3, device: "host" });
  const bf16 = await createPretrainModel("tiny", { dtype: "bf16", seed: 3, device: "host" });
  const bool = new Uint8Array(2 * 32);
  for (let i = 0; i < 2 * 32; i++) bool[i] = (i * 7) % 4 === 0 ? 0 : 1; // 8 visible tokens per sample
  const mask = maskFromBoolean(bool, 2, 32);
  const data = video(1);
  const losses = [f32, bf16].map((m) => {
    const g = new Graph(arena);
    const x = uploadVideo(g, data, [2, 3, 4, 32, 32], m.dtype);
    const out = m.forward(g, x, { mask });
    assert.deepEqual(out.pred.shape, [2, 24, 384]);
    m.store.zeroGrad();
    g.backward(out.loss);
    const grad = readFloats(m.store.grad!);
    assert.ok(grad.some((v) => v !== 0) && grad.every(Number.isFinite));
    const v = readScalar(out.loss);
    g.reset();
    return v;
  });
  assert.ok(Math.abs(losses[1] - losses[0]) < 2e-2 * losses[0], `bf16 ${losses[1]} vs f32 ${losses[0]}`);
  const list = parameters(f32);
  assert.equal(list[0].name, "encoder.patch_embed.proj.weight");
  assert.equal(list.reduce((s, p) => s + p.numel, 0), f32.parameterCount);
  f32.free();
  bf16.free();
});

Deno.test("the same seed gives the same model; save and load give the same loss", async () => {
  const a = await createPretrainModel("tiny", { seed: 9 });
  const b = await createPretrainModel("tiny", { seed: 9 });
  const c = await createPretrainModel("tiny", { seed: 10 });
  const w = (m: typeof a) => m.store.readMaster(m.store.get("encoder.blocks.1.mlp.fc1.weight")!);
  assert.deepEqual(w(a), w(b));
  assert.notDeepEqual(w(a), w(c));
  const dir = await Deno.makeTempDir();
  await saveModel(`${dir}/a.safetensors`, a);
  await loadModel(`${dir}/a.safetensors`, c);
  const loss = (m: typeof a) => {
    const g = new Graph(arena, { grad: false });
    const v = readScalar(
      m.forward(g, uploadVideo(g, video(2), [2, 3, 4, 32, 32]), { rng: new Rng(4), maskRatio: 0.75 }).loss,
    );
    g.reset();
    return v;
  };
  assert.equal(loss(c), loss(a));
  await Deno.remove(dir, { recursive: true });
  for (const m of [a, b, c]) m.free();
});

Deno.test("classifier: logits for every class, mean pooling over all tokens", async () => {
  const m = await createClassifier("tiny", { numClasses: 7, dropPath: 0.1 }, { seed: 1 });
  const g = new Graph(arena, { grad: false });
  const { logits, loss } = m.forward(g, uploadVideo(g, video(3), [2, 3, 4, 32, 32]));
  assert.deepEqual(logits.shape, [2, 7]);
  assert.equal(loss, undefined);
  // init_scale 0.001 keeps the first logits near zero.
  assert.ok(readFloats(logits).every((v) => Math.abs(v) < 0.05));
  assert.equal(m.blockDropRate(0), 0);
  assert.equal(m.blockDropRate(1), 0.1);
  g.reset();
  m.free();
});
