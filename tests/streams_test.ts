/**
 * The stream every launch of a training step (pretraining, and the classifier with either pooling) is
 * queued on, recorded through the binding: all of them go
 * to the library's compute stream, none to the legacy default stream (which would serialise the
 * backward with the gradient all-reduce on a GPU), and the all-reduce's stream is ordered with the
 * compute stream by event record/wait pairs only.
 */
import assert from "node:assert/strict";
import { Graph } from "../lib/autograd.ts";
import { GradSync } from "../lib/distributed/grad_sync.ts";
import type { ProcessGroup } from "../lib/distributed/group.ts";
import { recordLaunches, STREAM_LAST } from "../lib/ffi/launch_log.ts";
import { native } from "../lib/ffi/native.ts";
import type { Pointer } from "../lib/ffi/pointers.ts";
import { Arena } from "../lib/memory.ts";
import { POOL_KINDS, VideoClassifier } from "../lib/model/classifier.ts";
import { modelConfig } from "../lib/model/config.ts";
import { VideoMAEPretrain } from "../lib/model/pretrain.ts";
import { softmaxCrossEntropy } from "../lib/ops/loss.ts";
import { Rng } from "../lib/rng.ts";
import { writeTensor } from "../lib/tensor.ts";
import { AdamW } from "../lib/train/adamw.ts";
import { pretrainStep } from "../lib/train/pretrain/step.ts";
import "./helpers.ts";

/** An NCCL-kind group that only records which stream each all-reduce was queued on. */
function fakeNccl(streams: Pointer[]): ProcessGroup {
  return {
    rank: 0,
    worldSize: 2,
    kind: "nccl",
    allReduce: (_t, _op, stream) => {
      streams.push(stream ?? native().stream);
      return Promise.resolve();
    },
    broadcast: () => Promise.resolve(),
    allReduceNumbers: (v) => Promise.resolve(v),
    barrier: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

Deno.test("the recorder knows every entry point of vswift.h that takes its stream last", () => {
  const header = Deno.readTextFileSync(new URL("../cuda/vswift.h", import.meta.url));
  const declarations = [...header.matchAll(/^[a-z][\w ]*?\**\b(vs_\w+)\(([^;]*)\);/gm)];
  assert.ok(declarations.length > 50, `only ${declarations.length} entry points found in vswift.h`);
  const streamLast = declarations.filter(([, , params]) => {
    const p = params.split(",");
    return p.length > 1 && /^\s*vs_stream\b/.test(p[p.length - 1]);
  }).map(([, name]) => name);
  assert.deepEqual([...STREAM_LAST].sort(), streamLast.sort());
});

Deno.test("a pretraining step launches nothing on the legacy default stream", async () => {
  const n = native();
  assert.notEqual(n.stream, null, "openNative made no compute stream");
  const cfg = modelConfig("tiny");
  const model = new VideoMAEPretrain(cfg).allocate("f32").initialize(0);
  const opt = new AdamW(model.store, { lr: 1e-3, betas: [0.9, 0.95], clipGrad: 1 });
  const arena = new Arena();
  const rng = new Rng(1);
  const video = arena.alloc([2, 3, cfg.frames, cfg.imgSize, cfg.imgSize], "f32");
  writeTensor(video, Float32Array.from({ length: video.numel }, () => rng.normal()));
  const launches = await recordLaunches(n, () => {
    const g = new Graph(arena);
    pretrainStep(model, opt, g, video, { lr: 1e-3, rng, maskRatio: 0.75 });
    g.reset();
  });
  const queued = launches.filter((l) => l.stream !== undefined);
  const kernels = new Set(queued.map((l) => l.kernel));
  for (const k of ["vs_gemm", "vs_attention_fwd", "vs_attention_bwd", "vs_layernorm_bwd", "vs_adamw"]) {
    assert.ok(kernels.has(k), `${k} was not recorded; the step's launches: ${[...kernels].join(", ")}`);
  }
  const stray = queued.filter((l) => l.stream !== "compute");
  assert.deepEqual(stray.map((l) => `${l.kernel} on the ${l.stream} stream`), []);
  arena.dispose();
  model.free();
});

Deno.test("a classifier step launches nothing on the legacy default stream, with either pooling", async () => {
  const n = native();
  const cfg = modelConfig("tiny");
  const arena = new Arena();
  const rng = new Rng(3);
  const video = arena.alloc([2, 3, cfg.frames, cfg.imgSize, cfg.imgSize], "f32");
  writeTensor(video, Float32Array.from({ length: video.numel }, () => rng.normal()));
  const targets = arena.alloc([2, 4], "f32");
  writeTensor(targets, [1, 0, 0, 0, 0, 0, 1, 0]);
  for (const pool of POOL_KINDS) {
    const model = new VideoClassifier(cfg, { numClasses: 4, dropPath: 0, pool }).allocate("f32").initialize(
      0,
    );
    const launches = await recordLaunches(n, () => {
      const g = new Graph(arena);
      g.backward(softmaxCrossEntropy(g, model.forward(g, video).logits, targets));
      g.reset();
    });
    const queued = launches.filter((l) => l.stream !== undefined);
    if (pool === "max") {
      assert.ok(queued.some((l) => l.kernel === "vs_max_tokens_bwd"), "no max-pooling launch");
    }
    const stray = queued.filter((l) => l.stream !== "compute");
    assert.deepEqual(stray.map((l) => `${pool} pooling: ${l.kernel} on the ${l.stream} stream`), []);
    model.free();
  }
  arena.dispose();
});

Deno.test("bucketed gradient sync: compute and comm streams meet only through events", async () => {
  const n = native();
  const cfg = modelConfig("tiny");
  const model = new VideoMAEPretrain(cfg).allocate("f32").initialize(0);
  const streams: Pointer[] = [];
  // Small buckets, so that several leave while the backward still runs.
  const sync = new GradSync(fakeNccl(streams), model.store, 4096);
  const arena = new Arena();
  const rng = new Rng(2);
  const video = arena.alloc([1, 3, cfg.frames, cfg.imgSize, cfg.imgSize], "f32");
  writeTensor(video, Float32Array.from({ length: video.numel }, () => rng.normal()));
  const step = async () => {
    const g = new Graph(arena);
    model.store.zeroGrad();
    const { loss } = model.forward(g, video, { rng, maskRatio: 0.75 });
    g.backward(loss, sync.hook(g));
    await sync.finish();
    g.reset();
  };
  await step(); // learns the buckets
  const launches = await recordLaunches(n, step);
  const buckets = sync.layout!.length;
  assert.ok(buckets >= 2, `expected several buckets, got ${buckets}`);
  assert.equal(streams.length, buckets + 1, "one whole-buffer all-reduce, then one per bucket");
  const comm = streams[streams.length - 1];
  assert.notEqual(comm, null, "the bucketed all-reduces went to the legacy default stream");
  assert.ok(!Deno.UnsafePointer.equals(comm, n.stream), "the bucketed all-reduces share the compute stream");
  const isEvent = (k: string) => k === "vs_event_record" || k === "vs_stream_wait_event";
  const stray = launches.filter((l) =>
    l.stream !== undefined && l.stream !== "compute" && !isEvent(l.kernel)
  );
  assert.deepEqual(stray.map((l) => `${l.kernel} on the ${l.stream} stream`), []);
  // Each bucket: an event recorded on the compute stream, then the comm stream waits for it; after the
  // last bucket the compute stream waits for the comm stream's event, before AdamW can read gradients.
  const order = launches.filter((l) => isEvent(l.kernel))
    .map((l) => `${l.kernel === "vs_event_record" ? "record" : "wait"}:${l.stream}`);
  const perBucket = Array.from({ length: buckets }, () => ["record:compute", "wait:other"]).flat();
  assert.deepEqual(order.slice(0, 2 * buckets), perBucket);
  assert.deepEqual(order.slice(2 * buckets), ["record:other", "wait:compute"]);
  arena.dispose();
  model.free();
});
