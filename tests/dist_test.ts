/**
 * Several processes: the host ring all-reduce, a dead rank ending the others with a message that names
 * it, and data-parallel training that matches one process with the whole batch.
 */
import assert from "node:assert/strict";
import { Graph } from "../lib/autograd.ts";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { distEnv, firstSlurmHost } from "../lib/distributed/env.ts";
import { GradSync } from "../lib/distributed/grad_sync.ts";
import { freePort } from "../lib/distributed/launch.ts";
import { newSecret } from "../lib/distributed/secret.ts";
import { ptrAddress } from "../lib/ffi/pointers.ts";
import { loadSafetensors, toFloats } from "../lib/io/safetensors.ts";
import { modelConfig } from "../lib/model/config.ts";
import { VideoMAEPretrain } from "../lib/model/pretrain.ts";
import { Rng } from "../lib/rng.ts";
import { listCheckpoints } from "../lib/train/checkpoint.ts";
import { arena, randn, scratchDir, TINY_PRETRAIN_MODEL_FLAGS } from "./helpers.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const WORKER = `${ROOT}tests/fixtures/dist_worker.ts`;
const PERMS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
  "--allow-net",
];

async function ranks(n: number, args: string[], extraEnv: Record<string, string> = {}) {
  const port = String(freePort());
  const secret = newSecret();
  const procs = Array.from({ length: n }, (_, rank) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", ...PERMS, WORKER, ...args],
      env: {
        RANK: String(rank),
        WORLD_SIZE: String(n),
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: port,
        VSWIFT_DIST_SECRET: secret,
        NO_COLOR: "1",
        ...extraEnv,
      },
      stdout: "piped",
      stderr: "piped",
    }).output());
  return (await Promise.all(procs)).map((o) => ({
    code: o.code,
    out: new TextDecoder().decode(o.stdout),
    err: new TextDecoder().decode(o.stderr),
  }));
}

Deno.test("environment: torchrun and SLURM variables", () => {
  assert.deepEqual(distEnv({}).worldSize, 1);
  const t = distEnv({
    RANK: "5",
    WORLD_SIZE: "8",
    LOCAL_RANK: "1",
    NNODES: "2",
    NODE_RANK: "1",
    MASTER_ADDR: "n0",
    MASTER_PORT: "1234",
  });
  assert.deepEqual([
    t.rank,
    t.worldSize,
    t.localRank,
    t.localWorldSize,
    t.nodeRank,
    t.masterAddr,
    t.masterPort,
  ], [5, 8, 1, 4, 1, "n0", 1234]);
  const s = distEnv({
    SLURM_PROCID: "3",
    SLURM_NTASKS: "4",
    SLURM_LOCALID: "1",
    SLURM_NNODES: "2",
    SLURM_JOB_NODELIST: "gpu[07-08]",
  });
  assert.deepEqual([s.rank, s.worldSize, s.localRank, s.masterAddr], [3, 4, 1, "gpu07"]);
  assert.equal(firstSlurmHost("node12,node13"), "node12");
  assert.throws(() => distEnv({ RANK: "4", WORLD_SIZE: "4" }), /RANK 4 is not below WORLD_SIZE 4/);
});

Deno.test("the host ring all-reduces exactly across 3 processes", async () => {
  const results = await ranks(3, ["sum"]);
  for (const r of results) {
    assert.equal(r.code, 0, r.err);
    const got = JSON.parse(r.out.trim());
    // Ranks contribute x, 2x and 3x.
    assert.deepEqual(got.head, Array.from({ length: 13 }, (_, i) => 6 * i));
    assert.equal(got.tail, 6 * (10_006 % 13));
    assert.deepEqual(got.numbers, [3, 3]);
  }
});

Deno.test("a rank that dies ends the others with a message naming it", async () => {
  const results = await ranks(3, ["die-after-rendezvous"], { VSWIFT_DIST_TIMEOUT: "20" });
  assert.equal(results[1].code, 7);
  for (const r of [results[0], results[2]]) {
    assert.notEqual(r.code, 0);
    assert.match(r.err, /PeerError: .*rank \d\b.*(closed its connection|did it die)/);
  }
  // Rank 2 reads from rank 1 around the ring, so it is the one that sees the death first hand; rank 0
  // may hear of it from rank 1 or from rank 2 going down in turn.
  assert.match(results[2].err, /rank 1\b.*(closed its connection|did it die)/);
});

const dataDir = await scratchDir("vswift-dist-");

async function pretrainRun(out: string, gpus: number, batch: number): Promise<Map<string, Float32Array>> {
  const ds = await ensureSyntheticDataset({
    dir: `${dataDir}/shapes`,
    videos: 16,
    size: 48,
    frames: 24,
    seed: 5,
  });
  const args = [
    "run",
    ...PERMS,
    `${ROOT}tasks/pretrain.ts`,
    ...["--gpus", String(gpus), "--output", out, "--device", "host", "--steps", "6"],
    ...TINY_PRETRAIN_MODEL_FLAGS,
    ...["--model.dtype", "f32", "--mask.ratio", "0.75", "--data.source", "list", "--data.list", ds.list],
    ...["--data.root", ds.dataRoot, "--data.short_side", "36", "--data.workers", "2", "--data.repeats", "1"],
    ...["--optim.lr", "1e-3", "--optim.warmup_steps", "2", "--train.batch_size", String(batch)],
    ...["--train.vis_every", "0", "--train.save_every", "6", "--train.tensorboard", "false"],
  ];
  const o = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(o.code, 0, new TextDecoder().decode(o.stderr) + new TextDecoder().decode(o.stdout));
  const last = listCheckpoints(`${out}/checkpoints`).pop()!;
  assert.equal(last.step, 6);
  const file = await loadSafetensors(`${last.path}/model.safetensors`);
  return new Map([...file.tensors].map(([k, t]) => [k, toFloats(t)]));
}

Deno.test("2 host processes with batch 2 train the same weights as 1 process with batch 4", async () => {
  const one = await pretrainRun(`${dataDir}/one`, 1, 4);
  const two = await pretrainRun(`${dataDir}/two`, 2, 2);
  let worst = 0;
  for (const [name, a] of one) {
    const b = two.get(name)!;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  }
  // Only the order of float sums differs (the mean of two half-batch gradients against one).
  assert.ok(worst < 1e-4, `largest weight difference ${worst}`);
  // A different split that is not the same data would differ by far more: the check is not vacuous.
  const other = await pretrainRun(`${dataDir}/other`, 1, 2);
  let diff = 0;
  for (const [name, a] of one) {
    const b = other.get(name)!;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  assert.ok(diff > 100 * Math.max(worst, 1e-7), `batch 2 alone differs by only ${diff}`);
});

Deno.test("gradient buckets leave during the backward and cover the gradient buffer exactly once", async () => {
  const model = new VideoMAEPretrain(modelConfig("tiny")).allocate("f32").initialize(1);
  const base = ptrAddress(model.store.grad!.ptr);
  let current = -1;
  const calls: { start: number; len: number; at: number }[] = [];
  const group = {
    rank: 0,
    worldSize: 2,
    kind: "host" as const,
    allReduce: (t: { ptr: Deno.PointerValue; numel: number }) => {
      calls.push({ start: (ptrAddress(t.ptr) - base) / 4, len: t.numel, at: current });
      return Promise.resolve();
    },
    broadcast: () => Promise.resolve(),
    allReduceNumbers: (v: number[]) => Promise.resolve(v),
    barrier: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  const sync = new GradSync(group, model.store, 16 << 10);
  const rng = new Rng(2);
  const video = randn(rng, [2, 3, 4, 32, 32]);
  let tapeLength = 0;
  for (let step = 0; step < 2; step++) {
    calls.length = 0;
    const g = new Graph(arena);
    const { loss } = model.forward(g, video, { rng, maskRatio: 0.75 });
    const hook = sync.hook(g);
    g.backward(loss, (i) => {
      current = i;
      tapeLength = i + 1;
      hook(i);
    });
    current = tapeLength;
    await sync.finish();
    g.reset();
    if (step === 0) assert.deepEqual(calls.map((c) => [c.start, c.len]), [[0, model.store.total]]);
  }
  const layout = sync.layout!;
  assert.ok(layout.length > 3, `${layout.length} buckets`);
  const covered = calls.map((c) => [c.start, c.start + c.len]).sort((a, b) => a[0] - b[0]);
  assert.equal(covered[0][0], 0);
  for (let i = 1; i < covered.length; i++) assert.equal(covered[i][0], covered[i - 1][1]);
  assert.equal(covered[covered.length - 1][1], model.store.total);
  // The decoder's buckets (the end of the buffer) leave well before the backward ends.
  const first = calls[0];
  assert.ok(first.at < tapeLength / 2, `first bucket left after closure ${first.at} of ${tapeLength}`);
  assert.equal(first.start + first.len, model.store.total);
  model.free();
});
