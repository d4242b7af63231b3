/** Temporal sampling rules, crop boxes against hand-computed values, and the shard partition. */
import assert from "node:assert/strict";
import { epochPermutation, evalViews, rankPart, shardPlan, stepVideos } from "../lib/data/shard.ts";
import {
  centerCrop,
  fixedOffsets,
  multiScaleCrop,
  multiScalePairs,
  randomResizedCrop,
  roundHalfEven,
  testCrop,
} from "../lib/data/spatial.ts";
import {
  pretrainIndices,
  segmentTestIndices,
  segmentTrainIndices,
  segmentValIndices,
  unionFrames,
} from "../lib/data/temporal.ts";
import { Rng } from "../lib/rng.ts";

const range = (n: number, f = (i: number) => i) => Array.from({ length: n }, (_, i) => f(i));

Deno.test("pretraining temporal sampling follows V-SWIFT's three branches and v1's rule", () => {
  const rng = new Rng(3);
  const starts = new Set<number>();
  for (let i = 0; i < 400; i++) {
    const idx = pretrainIndices(100, 16, 4, rng); // span 64, A = 37
    assert.deepEqual(idx, range(16, (k) => idx[0] + 4 * k));
    assert.ok(idx[0] >= 0 && idx[0] <= 36);
    starts.add(idx[0]);
  }
  assert.equal(starts.size, 37, "every start 0..36 is drawn");
  // F == span: A = 1 takes the random branch (sorted, with replacement).
  let sawRepeat = false;
  for (let i = 0; i < 200; i++) {
    const idx = pretrainIndices(20, 16, 1, rng); // span 16 < F = 20 > n: A = 5 > 1 (strided)
    assert.deepEqual(idx, range(16, (k) => idx[0] + k));
    const r = pretrainIndices(64, 16, 4, rng);
    assert.deepEqual(r, [...r].sort((a, b) => a - b));
    assert.ok(r.every((v) => v >= 0 && v < 64));
    if (new Set(r).size < 16) sawRepeat = true;
  }
  assert.ok(sawRepeat, "the random branch draws with replacement");
  // F <= n: frame 0 repeated at the front.
  assert.deepEqual(pretrainIndices(10, 16, 4, rng), [0, 0, 0, 0, 0, 0, ...range(10)]);
  // v1: A >= 1 strides from a random start; A <= 0 strides from 0 and clamps to the last frame.
  assert.deepEqual(pretrainIndices(64, 16, 4, rng, "v1"), range(16, (k) => 4 * k));
  assert.deepEqual(pretrainIndices(40, 16, 4, rng, "v1"), [
    ...range(10, (k) => 4 * k),
    39,
    39,
    39,
    39,
    39,
    39,
  ]);
});

Deno.test("fine-tuning segment sampling: train, val and the test chunks", () => {
  const rng = new Rng(4);
  for (let i = 0; i < 100; i++) {
    const idx = segmentTrainIndices(50, 16, rng); // seg 3
    idx.forEach((v, k) => assert.ok(v >= 3 * k && v <= 3 * k + 2));
  }
  assert.deepEqual(segmentTrainIndices(10, 16, rng), [0, 0, 0, 0, 0, 0, ...range(10)]);
  assert.deepEqual(segmentValIndices(50, 16), range(16, (k) => 3 * k + 1));
  assert.deepEqual(segmentValIndices(7, 16), [...range(9, () => 0), ...range(7)]);
  // tick = 50 / 16 = 3.125; chunk c of 2 starts at c * tick / 2.
  assert.deepEqual(segmentTestIndices(50, 16, 0, 2), range(16, (x) => Math.floor(x * 3.125)));
  assert.deepEqual(segmentTestIndices(50, 16, 1, 2), range(16, (x) => Math.floor(1.5625 + x * 3.125)));
  assert.deepEqual(segmentTestIndices(50, 16, 1, 2).slice(0, 4), [1, 4, 7, 10]);
  const u = unionFrames([[4, 8, 8, 12], [2, 8]]);
  assert.deepEqual(u.frames, [2, 4, 8, 12]);
  assert.deepEqual([...u.positions[0]], [1, 2, 2, 3]);
  assert.deepEqual([...u.positions[1]], [0, 2]);
});

Deno.test("multi-scale crop: pairs, the 3 px snap and the 13 offsets, computed by hand", () => {
  // 340 x 256: base 256, sizes int(256 s) = 256, 224, 192, 168.
  assert.deepEqual(multiScalePairs(340, 256, 224), [
    [256, 256],
    [224, 256],
    [256, 224],
    [224, 224],
    [192, 224],
    [224, 192],
    [192, 192],
    [168, 192],
    [192, 168],
    [168, 168],
  ]);
  // ws = (340 - 168) // 4 = 43, hs = (256 - 168) // 4 = 22.
  assert.deepEqual(fixedOffsets(340, 256, 168, 168), [
    [0, 0],
    [172, 0],
    [0, 88],
    [172, 88],
    [86, 44],
    [0, 44],
    [172, 44],
    [86, 88],
    [86, 0],
    [43, 22],
    [129, 22],
    [43, 66],
    [129, 66],
  ]);
  // Snap: int(258 * .875) = 225 -> 224; int(260 * .875) = 227 stays (3 px away); int(257 * .875) = 224.
  assert.equal(multiScalePairs(258, 258, 224)[3][0], 224);
  assert.equal(multiScalePairs(260, 300, 224)[3][0], 227);
  assert.deepEqual(multiScalePairs(320, 320, 224).map((p) => p[0]).slice(0, 4), [320, 280, 320, 280]);
  assert.equal(Math.floor(320 * 0.66), 211);
  // Draws cover every pair and every offset, and stay inside the frame.
  const rng = new Rng(8);
  const seenSizes = new Set<string>();
  const seenOffsets = new Set<string>();
  for (let i = 0; i < 3000; i++) {
    const b = multiScaleCrop(340, 256, 224, rng);
    seenSizes.add(`${b.w}x${b.h}`);
    const offs = fixedOffsets(340, 256, b.w, b.h).map(([x, y]) => `${x},${y}`);
    const at = offs.indexOf(`${b.x},${b.y}`);
    assert.ok(at >= 0, `offset ${b.x},${b.y} of ${b.w}x${b.h} is one of the 13`);
    seenOffsets.add(`${b.w}x${b.h}:${at}`);
    assert.ok(b.x + b.w <= 340 && b.y + b.h <= 256);
  }
  assert.equal(seenSizes.size, 10);
  assert.equal(new Set([...seenOffsets].map((s) => s.split(":")[1])).size, 13);
});

/** An Rng stand-in that returns scripted uniform fractions and integers. */
function scripted(us: number[], ints: number[]): Rng {
  return {
    uniform: (lo: number, hi: number) => lo + (hi - lo) * us.shift()!,
    int: (n: number) => {
      const v = ints.shift()!;
      assert.ok(v < n);
      return v;
    },
    float: () => us.shift()!,
  } as unknown as Rng;
}

Deno.test("random resized crop: a hand-computed draw and the centre fallback", () => {
  // 320 x 240: area 76800 x (0.08 + 0.92 x 0.5) = 41472, aspect exp(0) = 1: w = h = round(203.65) = 204.
  assert.deepEqual(randomResizedCrop(320, 240, scripted([0.5, 0.5], [10, 100])), {
    x: 100,
    y: 10,
    w: 204,
    h: 204,
  });
  // 1000 x 100: every try is too tall; the fallback clamps the ratio to 4/3: h = 100, w = round(133.3) = 133.
  const us = range(20, (i) => (i % 2 === 0 ? 1 : 1));
  assert.deepEqual(randomResizedCrop(1000, 100, scripted(us, [])), { x: 433, y: 0, w: 133, h: 100 });
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(3.5), 4);
  const rng = new Rng(2);
  for (let i = 0; i < 500; i++) {
    const b = randomResizedCrop(320, 240, rng);
    assert.ok(b.x >= 0 && b.y >= 0 && b.x + b.w <= 320 && b.y + b.h <= 240 && b.w > 0 && b.h > 0);
  }
});

Deno.test("centre and test crops", () => {
  assert.deepEqual(centerCrop(398, 224, 224), { x: 87, y: 0, w: 224, h: 224 });
  assert.deepEqual(centerCrop(224, 300, 224), { x: 0, y: 38, w: 224, h: 224 });
  assert.throws(() => centerCrop(200, 300, 224), /does not fit/);
  // Three squares along the long side: offsets int(k (398 - 224) / 2) = 0, 87, 174.
  assert.deepEqual([0, 1, 2].map((k) => testCrop(398, 224, k, 3).x), [0, 87, 174]);
  assert.deepEqual(testCrop(224, 400, 2, 3), { x: 0, y: 176, w: 224, h: 224 });
  assert.deepEqual(testCrop(398, 224, 0, 1), { x: 87, y: 0, w: 224, h: 224 });
});

Deno.test("shards: one permutation per epoch, disjoint equal parts, the tail dropped", () => {
  const n = 103;
  const world = 4;
  const perStep = 5; // 103 / 4 = 25.75 -> 5 steps of 5 videos per rank, 3 videos dropped
  const perm = epochPermutation(n, 7, 0);
  assert.deepEqual([...perm].sort((a, b) => a - b), range(n));
  assert.notDeepEqual([...perm], [...epochPermutation(n, 7, 1)]);
  assert.deepEqual([...perm], [...epochPermutation(n, 7, 0)], "the same on every rank");
  const seen = new Set<number>();
  for (let r = 0; r < world; r++) {
    const plan = shardPlan(n, world, r, perStep);
    assert.equal(plan.steps, 5);
    const part = [...rankPart(plan, perm)];
    const steps = range(plan.steps).flatMap((s) => [...stepVideos(plan, perm, s)]);
    assert.deepEqual(steps, part);
    for (const v of part) {
      assert.ok(!seen.has(v), `video ${v} is on two ranks`);
      seen.add(v);
    }
  }
  assert.equal(seen.size, 100);
  assert.deepEqual([...seen].sort((a, b) => a - b), [...perm.slice(0, 100)].sort((a, b) => a - b));
  assert.throws(() => shardPlan(3, 4, 0, 1), /no full step/);
});

Deno.test("evaluation views: every (video, chunk, split) exactly once across ranks, pads flagged", () => {
  const [videos, chunks, splits, world, batch] = [7, 2, 3, 3, 4];
  const all = range(world).map((r) => evalViews(videos, chunks, splits, world, r, batch));
  const len = all[0].length;
  assert.ok(all.every((v) => v.length === len && len % batch === 0));
  const real = all.flat().filter((v) => !v.pad).map((v) => `${v.video}/${v.chunk}/${v.split}`);
  assert.equal(real.length, videos * chunks * splits);
  assert.equal(new Set(real).size, real.length);
  assert.equal(all.flat().filter((v) => v.pad).length, world * len - videos * chunks * splits);
});
