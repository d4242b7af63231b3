/**
 * Fine-tuning augmentation of the data path: RandAugment's operations against PIL (fixtures written by
 * tests/fixtures/make_randaug_fixtures.py with Debian's python3-pil), its per-clip draws, random erasing
 * boxes, and both hooked into the loader's train mode (pretraining unchanged).
 */
import assert from "node:assert/strict";
import { Graph } from "../lib/autograd.ts";
import { VideoLoader } from "../lib/data/loader.ts";
import {
  applyOp,
  applyRandAugment,
  drawRandAugment,
  parseRandAugment,
  RAND_INCREASING_OPS,
  type RandOp,
} from "../lib/data/rand_augment.ts";
import { randomErasingBox } from "../lib/data/random_erasing.ts";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { Rng } from "../lib/rng.ts";
import { readFloats } from "../lib/tensor.ts";
import { arena, scratchDir } from "./helpers.ts";

const PIL = JSON.parse(
  Deno.readTextFileSync(new URL("./fixtures/randaug/pil_ops.json", import.meta.url)),
) as {
  width: number;
  height: number;
  frames: Record<string, string>;
  cases: { frame: string; op: RandOp; arg: number | null; output: string }[];
};

const decodeBase64 = (b64: string) => Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));

Deno.test("RandAugment: every operation gives PIL's pixels exactly", () => {
  const { width: w, height: h } = PIL;
  assert.equal(PIL.cases.length, 54);
  for (const c of PIL.cases) {
    const img = decodeBase64(PIL.frames[c.frame]);
    applyOp(img, h, w, c.op, c.arg ?? undefined);
    const want = decodeBase64(c.output);
    const bad = img.findIndex((v, i) => v !== want[i]);
    assert.equal(
      bad,
      -1,
      `${c.op}(${c.arg}) on ${c.frame}: byte ${bad} is ${img[bad]}, PIL has ${want[bad]}`,
    );
  }
});

Deno.test("RandAugment: timm's config string and its per-clip draws", () => {
  const cfg = parseRandAugment("rand-m7-n4-mstd0.5-inc1");
  assert.deepEqual(
    [cfg.n, cfg.m, cfg.mstd, cfg.increasing, cfg.prob, cfg.translatePct, cfg.fill],
    [4, 7, 0.5, true, 0.5, 0.45, [128, 128, 128]],
  );
  assert.throws(() => parseRandAugment("rand-m7-x3"), /Unknown RandAugment option "x3"/);
  assert.throws(() => parseRandAugment("augmix-m5"), /starts with "rand"/);
  const rng = new Rng(1);
  let ops = 0;
  let mags = 0;
  const seen = new Set<string>();
  for (let i = 0; i < 3000; i++) {
    for (const s of drawRandAugment(rng, cfg)) {
      ops++;
      mags += s.magnitude;
      seen.add(s.op);
      assert.ok(s.magnitude >= 0 && s.magnitude <= 10);
      const f = s.magnitude / 10;
      if (s.op === "Rotate") assert.ok(Math.abs(Math.abs(s.arg!) - 30 * f) < 1e-12);
      if (s.op === "TranslateXRel") assert.ok(Math.abs(Math.abs(s.arg!) - 0.45 * f) < 1e-12);
      if (s.op === "ContrastIncreasing") assert.ok(Math.abs(Math.abs(s.arg! - 1) - 0.9 * f) < 1e-12);
      if (s.op === "PosterizeIncreasing") assert.equal(s.arg, 4 - Math.trunc(4 * f));
      if (s.op === "SolarizeIncreasing") assert.equal(s.arg, 256 - Math.trunc(256 * f));
    }
  }
  assert.ok(
    Math.abs(ops / 3000 - 2) < 0.08,
    `${ops / 3000} operations per clip (4 drawn, each kept with p 0.5)`,
  );
  assert.ok(Math.abs(mags / ops - 7) < 0.05, `mean magnitude ${mags / ops}`);
  assert.deepEqual([...seen].sort(), [...RAND_INCREASING_OPS].sort());
});

Deno.test("RandAugment: one draw for every frame; per-frame statistics stay per frame", () => {
  const [h, w] = [9, 12];
  const rng = new Rng(4);
  const frame = Uint8Array.from({ length: h * w * 3 }, () => rng.int(256));
  const dark = frame.map((v) => v >> 2);
  const clip = new Uint8Array(3 * h * w * 3);
  clip.set(frame, 0);
  clip.set(dark, h * w * 3);
  clip.set(frame, 2 * h * w * 3);
  const steps = [{ op: "Rotate" as const, magnitude: 7, arg: 17 }, {
    op: "AutoContrast" as const,
    magnitude: 7,
  }];
  applyRandAugment(clip, 3, h, w, steps);
  const f0 = clip.subarray(0, h * w * 3);
  assert.deepEqual(clip.subarray(2 * h * w * 3), f0); // same input, same output
  const alone = dark.slice();
  for (const s of steps) applyOp(alone, h, w, s.op, s.arg);
  assert.deepEqual(clip.subarray(h * w * 3, 2 * h * w * 3), alone); // autocontrast of the dark frame itself
});

Deno.test("random erasing: probability, area and aspect of the box", () => {
  const rng = new Rng(9);
  let erased = 0;
  for (let i = 0; i < 4000; i++) {
    const b = randomErasingBox(rng, 224, 224, { prob: 0.25 });
    if (!b) continue;
    erased++;
    const [eh, ew] = [b.y1 - b.y0, b.x1 - b.x0];
    assert.ok(b.y0 >= 0 && b.x0 >= 0 && b.y1 < 224 + 1 && b.x1 <= 224 && eh < 224 && ew < 224);
    assert.ok((eh * ew) / 224 ** 2 > 0.018 && (eh * ew) / 224 ** 2 < 0.34, `area ${eh * ew}`);
    assert.ok(eh / ew > 0.28 && eh / ew < 3.6, `aspect ${eh / ew}`);
  }
  assert.ok(Math.abs(erased / 4000 - 0.25) < 0.025, `${erased} of 4000 clips erased`);
  assert.equal(randomErasingBox(rng, 224, 224, { prob: 0 }), undefined);
});

const dataDir = await scratchDir("vswift-augment-");
const ds = await ensureSyntheticDataset({
  dir: `${dataDir}/shapes`,
  videos: 4,
  size: 48,
  frames: 20,
  seed: 1,
});

async function firstBatch(
  opts: Partial<ConstructorParameters<typeof VideoLoader>[0]>,
): Promise<Float32Array> {
  const loader = new VideoLoader({
    list: ds.list,
    dataRoot: ds.dataRoot,
    mode: "train",
    batchSize: 2,
    frames: 4,
    inputSize: 32,
    shortSide: 40,
    workers: 2,
    prefetch: 0,
    seed: 5,
    ...opts,
  });
  const g = new Graph(arena);
  const b = (await loader.next(g))!;
  const v = readFloats(b.video);
  g.reset();
  await loader.close();
  return v;
}

Deno.test("loader: RandAugment and erasing change train clips only when asked, reproducibly", async () => {
  const plain = await firstBatch({});
  const aug = await firstBatch({ randAugment: "rand-m9-n4-mstd0.5-inc1-p1" });
  assert.notDeepEqual(aug, plain);
  assert.deepEqual(await firstBatch({ randAugment: "rand-m9-n4-mstd0.5-inc1-p1" }), aug); // same seed, same clips
  // Pretraining ignores both options.
  const pre = { mode: "pretrain" as const, samplingRate: 2 };
  assert.deepEqual(
    await firstBatch({ ...pre, randAugment: "rand-m9-n4-inc1", randomErasing: 1 }),
    await firstBatch(pre),
  );
  // Erasing: the clips differ from the plain ones inside one box, the same in every channel and frame.
  const erased = await firstBatch({ randomErasing: 1 });
  const [c, t, s] = [3, 4, 32];
  let boxes = 0;
  for (let i = 0; i < 2; i++) {
    const rows = new Set<number>();
    const cols = new Set<number>();
    const planes = new Set<number>();
    for (let k = 0; k < c * t * s * s; k++) {
      const at = i * c * t * s * s + k;
      if (erased[at] === plain[at]) continue;
      rows.add(Math.floor(k / s) % s);
      cols.add(k % s);
      planes.add(Math.floor(k / (s * s)));
    }
    if (rows.size === 0) continue;
    boxes++;
    assert.equal(planes.size, c * t, "every channel and frame is erased");
    const span = (x: Set<number>) => Math.max(...x) - Math.min(...x) + 1;
    assert.equal(span(rows), rows.size);
    assert.equal(span(cols), cols.size);
  }
  assert.equal(boxes, 2);
});
