/**
 * The fine-tuning recipe's arithmetic: the layer-decay table, mixup / CutMix draws and targets, the
 * device mixing and erasing against TypeScript references, and multi-view merging.
 */
import assert from "node:assert/strict";
import { evalViews } from "../lib/data/shard.ts";
import { allocPersistent, freePersistent } from "../lib/memory.ts";
import { VideoClassifier } from "../lib/model/classifier.ts";
import { modelConfig } from "../lib/model/config.ts";
import { cutmixBatch, eraseNoise, mixupBatch, randomErase } from "../lib/ops/mix.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats, writeTensor } from "../lib/tensor.ts";
import { layerId, layerScales, paramGroups } from "../lib/train/finetune/layer_decay.ts";
import {
  betaDraw,
  boxLam,
  cutmixBox,
  drawMix,
  mixTargets,
  type MixupOptions,
} from "../lib/train/finetune/mixup.ts";
import {
  appendViews,
  mergeViews,
  readViews,
  softmax,
  topK,
  type ViewOutput,
  writeTestResults,
} from "../lib/train/finetune/tta.ts";
import { formatFinetuneLine } from "../lib/train/finetune/metrics.ts";
import "./helpers.ts";

Deno.test("layer decay: V-SWIFT's table for B/16 at 0.75, with its parameter groups", () => {
  const s = layerScales(12, 0.75);
  assert.equal(s.length, 14);
  assert.ok(Math.abs(s[0] - 0.0237573) < 1e-6); // patch embedding: 0.75^13
  for (let k = 0; k < 12; k++) assert.equal(s[k + 1], 0.75 ** (12 - k)); // block k
  assert.equal(s[13], 1); // fc_norm, head
  assert.deepEqual(layerScales(12, 1), new Array(14).fill(1));
  assert.deepEqual(
    [
      "pos_embed",
      "patch_embed.proj.weight",
      "blocks.0.attn.qkv.weight",
      "blocks.11.mlp.fc2.bias",
      "fc_norm.weight",
      "head.bias",
      "norm.weight",
    ]
      .map((n) => layerId(n, 12)),
    [0, 0, 1, 12, 13, 13, 13],
  );
  assert.throws(() => layerId("blocks.12.norm1.weight", 12), /names block 12 of a 12-block model/);

  const model = new VideoClassifier(modelConfig("base"), { numClasses: 174 }); // declared, not allocated
  const groups = paramGroups(model.store.params, 12, 0.75, 0.05);
  assert.equal(groups.length, 28);
  const by = new Map(groups.map((g) => [g.name, g]));
  assert.deepEqual(by.get("layer_0_decay")!.params, ["patch_embed.proj.weight"]);
  assert.deepEqual(by.get("layer_0_no_decay")!.params, ["patch_embed.proj.bias"]);
  assert.deepEqual(by.get("layer_1_decay")!.params, [
    "blocks.0.attn.qkv.weight",
    "blocks.0.attn.proj.weight",
    "blocks.0.mlp.fc1.weight",
    "blocks.0.mlp.fc2.weight",
  ]);
  assert.equal(by.get("layer_1_no_decay")!.params.length, 9); // norms, q/v biases, proj/fc biases
  assert.ok(Math.abs(by.get("layer_5_decay")!.lrScale - 0.75 ** 8) < 1e-15);
  assert.deepEqual(by.get("layer_13_decay")!.params, ["head.weight"]);
  assert.deepEqual(by.get("layer_13_no_decay")!.params, ["fc_norm.weight", "fc_norm.bias", "head.bias"]);
  assert.equal(by.get("layer_13_no_decay")!.weightDecay, 0);
  assert.equal(by.get("layer_13_decay")!.weightDecay, 0.05);
});

const MIX: MixupOptions = { mixup: 0.8, cutmix: 1, prob: 1, switchProb: 0.5, smoothing: 0.1, numClasses: 4 };

Deno.test("mixup targets: smoothed one-hot mixed with the reversed batch", () => {
  const t = mixTargets([0, 2, 3], 4, 0.7, 0.1);
  const [off, on] = [0.025, 0.925];
  const row = (i: number) => [...t.subarray(i * 4, i * 4 + 4)];
  const close = (a: number[], b: number[]) =>
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-6, `${a} vs ${b}`));
  close(row(0), [0.7 * on + 0.3 * off, off, off, 0.7 * off + 0.3 * on]); // partner: sample 2, label 3
  close(row(1), [off, off, on, off]); // the middle sample mixes with itself
  close(row(2), [0.3 * on + 0.7 * off, off, off, 0.7 * on + 0.3 * off]);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(row(i).reduce((a, b) => a + b) - 1) < 1e-6);
  // Without mixing it is label smoothing; without smoothing, one-hot.
  close([...mixTargets([1], 4, 1, 0.1)], [off, on, off, off]);
  close([...mixTargets([1], 4, 1, 0)], [0, 1, 0, 0]);
  assert.throws(() => mixTargets([4], 4, 1, 0.1), /Label 4 of sample 0 is outside \[0, 4\)/);
});

Deno.test("CutMix: the box is clipped to the frame and lambda is recomputed from its area", () => {
  const rng = new Rng(5);
  for (let i = 0; i < 200; i++) {
    const lam = rng.float();
    const b = cutmixBox(rng, 224, 160, lam);
    assert.ok(0 <= b.y0 && b.y0 <= b.y1 && b.y1 <= 224 && 0 <= b.x0 && b.x0 <= b.x1 && b.x1 <= 160);
    // Unclipped boxes are (2 floor(cut / 2)) on a side: at most the cut, at least one pixel less.
    const cutH = Math.floor(224 * Math.sqrt(1 - lam));
    assert.ok(b.y1 - b.y0 <= cutH);
    assert.equal(boxLam(b, 224, 160), 1 - ((b.y1 - b.y0) * (b.x1 - b.x0)) / (224 * 160));
  }
  // A centre in a corner of the frame halves the box on both axes.
  const corner = { int: (n: number) => (n === 224 ? 0 : 159), float: () => 0 } as unknown as Rng;
  assert.deepEqual(cutmixBox(corner, 224, 160, 0.75), { y0: 0, y1: 56, x0: 119, x1: 160 });
  // Draws: CutMix about half the time; mixup lambdas average 1/2 (Beta(a, a)); clipping only shrinks
  // CutMix boxes, so their lambdas average more.
  const r = new Rng(11);
  const lams = { mixup: [] as number[], cutmix: [] as number[] };
  for (let i = 0; i < 2000; i++) {
    const d = drawMix(r, MIX, 32, 32);
    assert.notEqual(d.kind, "none");
    if (d.kind === "cutmix") assert.equal(d.lam, boxLam(d.box!, 32, 32));
    lams[d.kind as "mixup" | "cutmix"].push(d.lam);
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  assert.ok(
    lams.cutmix.length > 900 && lams.cutmix.length < 1100,
    `${lams.cutmix.length} CutMix draws of 2000`,
  );
  assert.ok(Math.abs(mean(lams.mixup) - 0.5) < 0.03, `mean mixup lambda ${mean(lams.mixup)}`);
  assert.ok(mean(lams.cutmix) > 0.55, `mean CutMix lambda ${mean(lams.cutmix)}`);
  let m = 0;
  for (let i = 0; i < 4000; i++) m += betaDraw(r, 0.8, 0.8) ** 2;
  assert.ok(Math.abs(m / 4000 - (0.8 * 1.8) / (1.6 * 2.6)) < 0.01); // E[X^2] of Beta(0.8, 0.8)
  assert.deepEqual(drawMix(r, { ...MIX, prob: 0 }, 32, 32), { kind: "none", lam: 1 });
});

Deno.test("device mixup, CutMix and erasing match TypeScript references", () => {
  const [b, c, t, h, w] = [4, 3, 2, 5, 7];
  const n = b * c * t * h * w;
  const rng = new Rng(3);
  const x = Float32Array.from({ length: n }, () => rng.normal());
  const per = n / b;
  for (const dt of ["f32", "bf16"] as const) {
    const v = allocPersistent([b, c, t, h, w], dt);
    writeTensor(v, x);
    const x0 = readFloats(v); // the values as stored (bf16-rounded)
    mixupBatch(v, 0.3);
    const got = readFloats(v);
    const tol = dt === "f32" ? 1e-6 : 1e-2;
    for (let i = 0; i < n; i++) {
      const s = Math.floor(i / per);
      const want = 0.3 * x0[i] + 0.7 * x0[(b - 1 - s) * per + (i % per)];
      assert.ok(Math.abs(got[i] - want) <= tol * Math.max(1, Math.abs(want)), `${dt} mixup ${i}`);
    }
    writeTensor(v, x);
    cutmixBatch(v, { y0: 1, y1: 4, x0: 2, x1: 7 });
    const cm = readFloats(v);
    for (let i = 0; i < n; i++) {
      const s = Math.floor(i / per);
      const xx = i % w;
      const yy = Math.floor(i / w) % h;
      const inside = yy >= 1 && yy < 4 && xx >= 2 && xx < 7;
      assert.equal(cm[i], inside ? x0[(b - 1 - s) * per + (i % per)] : x0[i], `${dt} cutmix ${i}`);
    }
    freePersistent(v);
  }
  // Erasing: the box of every channel and frame holds the counter-based noise, the rest is untouched.
  const clip = allocPersistent([c, t, h, w], "f32");
  writeTensor(clip, x.subarray(0, per));
  randomErase(clip, { y0: 1, y1: 3, x0: 3, x1: 6 }, 77);
  const er = readFloats(clip);
  let e = 0;
  for (let i = 0; i < per; i++) {
    const xx = i % w;
    const yy = Math.floor(i / w) % h;
    if (yy >= 1 && yy < 3 && xx >= 3 && xx < 6) {
      assert.ok(Math.abs(er[i] - eraseNoise(77, e)) < 1e-6, `erase ${i}`);
      e++;
    } else assert.equal(er[i], x[i]);
  }
  assert.equal(e, c * t * 2 * 3);
  freePersistent(clip);
  // The noise is standard normal.
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < 20000; i++) {
    const z = eraseNoise(9, i);
    s1 += z;
    s2 += z * z;
  }
  assert.ok(Math.abs(s1 / 20000) < 0.03 && Math.abs(s2 / 20000 - 1) < 0.04);
});

Deno.test("view merging: softmax per view, averaged per video; pad and repeated views skipped", async () => {
  assert.deepEqual(topK([0.1, 0.5, 0.5, 0.2], 3), [1, 2, 3]);
  const p = softmax([1000, 1000, 1000 - Math.log(2)]);
  assert.ok(Math.abs(p[0] - 0.4) < 1e-12 && Math.abs(p[2] - 0.2) < 1e-12);
  const views: ViewOutput[] = [
    // Video 0 (label 1): one confident wrong view, one confident right one; the softmax average picks 1
    // although the logits' average would pick 0.
    { video: 0, chunk: 0, split: 0, pad: false, label: 1, logits: [10, 0, 0] },
    { video: 0, chunk: 1, split: 0, pad: false, label: 1, logits: [0, 9.5, 9.4] },
    { video: 0, chunk: 1, split: 0, pad: false, label: 1, logits: [100, 0, 0] }, // repeated: ignored
    { video: 1, chunk: 0, split: 0, pad: false, label: 2, logits: [0, 1, 0] },
    { video: 1, chunk: 0, split: 0, pad: true, label: 2, logits: [0, 0, 50] }, // pad: ignored
  ];
  const m = mergeViews(views, { videos: 3, viewsPerVideo: 2 });
  assert.deepEqual(m.results.map((r) => [r.video, r.views, r.top5[0], r.correct1, r.correct5]), [
    [0, 2, 0, false, true],
    [1, 1, 1, false, true],
  ]);
  const v0 = m.results[0].probs;
  const a = softmax([10, 0, 0]);
  const b = softmax([0, 9.5, 9.4]);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(v0[i] - (a[i] + b[i]) / 2) < 1e-12);
  assert.deepEqual(m.summary, {
    videos: 2,
    views: 3,
    viewsPerVideo: 2,
    top1: 0,
    top5: 100,
    missingVideos: [2],
    incompleteVideos: [1],
    padViews: 1,
    repeatedViews: 1,
  });

  // Three ranks each write their part of a 2 x 3 test of 7 videos: every view once, pads flagged.
  const dir = await Deno.makeTempDir();
  const files: string[] = [];
  for (let r = 0; r < 3; r++) {
    const mine = evalViews(7, 2, 3, 3, r, 4).map((v) => ({
      ...v,
      label: v.video % 3,
      logits: [v.video % 3 === 0 ? 2 : 0, v.video % 3 === 1 ? 2 : 0, v.split === 0 ? 3 : 0],
    }));
    files.push(`${dir}/test_views_rank${r}.jsonl`);
    await appendViews(files[r], mine);
  }
  const all = mergeViews(await readViews(files), { videos: 7, viewsPerVideo: 6 });
  assert.equal(all.summary.views, 42);
  assert.equal(all.summary.padViews, 6); // 3 ranks x 4 x 4 batches = 48 slots for 42 views
  assert.deepEqual([all.summary.missingVideos, all.summary.incompleteVideos, all.summary.repeatedViews], [
    [],
    [],
    0,
  ]);
  assert.ok(all.results.every((r) => r.views === 6));
  const out = await writeTestResults(`${dir}/out`, all, {
    labelNames: ["zero", "one", "two, with a comma"],
    paths: Array.from({ length: 7 }, (_, i) => `v${i}.mp4`),
  });
  const csv = (await Deno.readTextFile(out.perVideo)).trim().split("\n");
  assert.equal(csv.length, 8);
  assert.match(csv[3], /^2,v2.mp4,"two, with a comma",/);
  assert.equal(JSON.parse(await Deno.readTextFile(out.summary)).videos, 7);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("every field of the fine-tuning log line is labelled, the mixing too", () => {
  const m = {
    step: 3,
    totalSteps: 9,
    epoch: 0,
    loss: 1.5,
    lr: 1e-4,
    gradNorm: Number.NaN,
    mix: "none" as const,
    lam: 1,
    videosPerSecond: 10,
    stepMs: 100,
    dataWaitPercent: 5,
    memoryGiB: 0.5,
  };
  const fields = (line: string) => line.split(/ {2,}/);
  const plain = fields(formatFinetuneLine(m));
  assert.ok(plain.includes("mix none"), plain.join(" | "));
  // A field is a label and its value: none of them is a bare word.
  for (const f of plain) assert.match(f, /^\S.* \S+$|^[\d.]+ \S+/, `unlabelled field "${f}"`);
  assert.ok(fields(formatFinetuneLine({ ...m, mix: "cutmix", lam: 0.7 })).includes("mix cutmix lam 0.70"));
});
