/**
 * Pretraining: configuration, schedule, TensorBoard files, and the loop itself on generated clips
 * (the loss falls; an interrupted run resumes to the same weights; a broken checkpoint is refused).
 */
import assert from "node:assert/strict";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { crc32c, readEvents, TensorBoardWriter } from "../lib/io/tensorboard.ts";
import { loadSafetensors, toFloats } from "../lib/io/safetensors.ts";
import {
  applyOverrides,
  defaultConfig,
  loadConfig,
  type PretrainConfig,
} from "../lib/train/pretrain/config.ts";
import { listCheckpoints } from "../lib/train/checkpoint.ts";
import { NonFiniteStepError } from "../lib/train/nonfinite.ts";
import { pretrain, type StepMetrics } from "../mod.ts";
import { CosineSchedule } from "../lib/train/schedule.ts";
import { writeReconstructions } from "../lib/train/pretrain/visualize.ts";
import { finalWeights, scratchDir, TINY_PRETRAIN_MODEL_FLAGS } from "./helpers.ts";

Deno.test("config: YAML over defaults, command-line overrides, errors that name the key", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.yaml`;
  await Deno.writeTextFile(path, "optim:\n  lr: 2.0e-4\n  betas: [0.9, 0.98]\ndata:\n  source: memory\n");
  const cfg = await loadConfig(path, ["--train.batch_size", "12", "--optim.clip_grad=0.05", "--data.flip"]);
  assert.equal(cfg.optim.lr, 2e-4);
  assert.deepEqual(cfg.optim.betas, [0.9, 0.98]);
  assert.equal(cfg.train.batch_size, 12);
  assert.equal(cfg.optim.clip_grad, 0.05);
  assert.equal(cfg.data.flip, true);
  assert.equal(cfg.optim.weight_decay, 0.05); // V-SWIFT's default stays
  await assert.rejects(
    loadConfig(path, ["--optim.lrr", "1"]),
    /Unknown config key "optim.lrr" \(command line\); optim has lr, min_lr/,
  );
  await assert.rejects(
    loadConfig(path, ["--train.batch_size", "0"]),
    /train.batch_size must be an integer >= 1, got "0" \(command line\)/,
  );
  await assert.rejects(loadConfig(path, ["--mask.ratio", "1.5"]), /mask.ratio must be a number >= 0 and < 1/);
  await assert.rejects(
    loadConfig(path, ["--model.dtype", "fp8"]),
    /model.dtype must be one of auto, bf16, f32/,
  );
  await Deno.writeTextFile(path, "optim:\n  learning_rate: 1\n");
  await assert.rejects(
    loadConfig(path),
    new RegExp(`Unknown config key "optim.learning_rate" \\(${path}\\)`),
  );
  await assert.rejects(loadConfig(`${dir}/missing.yaml`), /Cannot read config file .*missing.yaml/);
  await assert.rejects(loadConfig(undefined), /No data: set data.list/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("every shipped pretraining config loads", async () => {
  for (const e of Deno.readDirSync(new URL("../configs/", import.meta.url))) {
    if (e.name.includes("finetune")) continue; // fine-tuning configs have their own schema and test
    const cfg = await loadConfig(new URL(`../configs/${e.name}`, import.meta.url).pathname, [
      "--data.source",
      "memory",
    ]);
    assert.ok(cfg.train.batch_size >= 1, e.name);
  }
});

Deno.test("schedule: warmup from exactly 0 to the base lr, then cosine to min_lr", () => {
  const s = new CosineSchedule(1e-3, 1e-5, 5, 25);
  assert.equal(s.at(0), 0);
  assert.equal(s.at(4), 1e-3); // numpy linspace includes the end point
  assert.ok(Math.abs(s.at(2) - 5e-4) < 1e-15);
  assert.equal(s.at(5), 1e-3); // cos(0) starts the cosine at base
  assert.ok(Math.abs(s.at(15) - (1e-5 + 0.5 * (1e-3 - 1e-5))) < 1e-12); // halfway through the cosine
  assert.ok(s.at(24) > 1e-5 && s.at(24) < 2e-5);
  // V-SWIFT SSv2 ViT-B: 82 steps per epoch, 40 warmup epochs of 1200.
  const v = new CosineSchedule(1e-3, 1e-5, 40 * 82, 1200 * 82);
  assert.ok(Math.abs(v.at(3279) - 1e-3) < 1e-15);
});

Deno.test("TensorBoard: CRC32C, scalars and a PNG read back from the event file", async () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  const dir = await Deno.makeTempDir();
  const w = new TensorBoardWriter(dir);
  w.scalar("loss", 0.75, 10);
  w.image("reconstruction", Uint8Array.from([137, 80, 78, 71]), 4, 2, 10);
  w.close();
  const events = readEvents(await Deno.readFile(w.path));
  assert.equal(events[0].fileVersion, "brain.Event:2");
  assert.deepEqual(events[1].scalars, [{ tag: "loss", value: 0.75 }]);
  assert.equal(events[1].step, 10);
  assert.deepEqual([events[2].images[0].tag, events[2].images[0].width, events[2].images[0].height], [
    "reconstruction",
    4,
    2,
  ]);
  assert.match(w.path, /events\.out\.tfevents\.\d+\./);
  await Deno.remove(dir, { recursive: true });
});

const dataDir = await scratchDir("vswift-pretrain-");
const dataset = await ensureSyntheticDataset({
  dir: `${dataDir}/shapes`,
  videos: 8,
  size: 48,
  frames: 24,
  seed: 3,
});

function tinyConfig(output: string, overrides: string[] = []): PretrainConfig {
  const cfg = defaultConfig();
  applyOverrides(cfg, [
    ...TINY_PRETRAIN_MODEL_FLAGS,
    ...[
      "--mask.ratio",
      "0.75",
      "--data.source",
      "list",
      "--data.list",
      dataset.list,
      "--data.root",
      dataset.dataRoot,
    ],
    ...["--data.short_side", "36", "--data.workers", "2", "--data.sampling_rate", "2", "--data.repeats", "2"],
    ...["--optim.lr", "2e-3", "--optim.warmup_steps", "2", "--train.batch_size", "4", "--train.steps", "12"],
    ...[
      "--train.output",
      output,
      "--train.save_every",
      "4",
      "--train.vis_every",
      "12",
      "--train.log_every",
      "4",
    ],
    ...["--train.device", "host", "--model.dtype", "f32"],
    ...overrides,
  ]);
  return cfg;
}

async function run(
  cfg: PretrainConfig,
  signal?: AbortSignal,
  stopAfter?: () => void,
): Promise<StepMetrics[]> {
  const steps: StepMetrics[] = [];
  const it = pretrain(cfg, { signal });
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    steps.push(r.value);
    if (steps.length === 5) stopAfter?.();
  }
  return steps;
}

Deno.test("the tiny model pretrains on generated clips: loss falls; logs, TensorBoard and a PNG are written", async () => {
  const out = `${dataDir}/run-a`;
  const steps = await run(tinyConfig(out, ["--train.steps", "24"]));
  assert.equal(steps.length, 24);
  const mean = (a: StepMetrics[]) => a.reduce((s, m) => s + m.loss, 0) / a.length;
  assert.ok(
    mean(steps.slice(-4)) < 0.95 * mean(steps.slice(0, 4)),
    `loss ${mean(steps.slice(0, 4))} -> ${mean(steps.slice(-4))}`,
  );
  assert.ok(steps.every((m) => Number.isFinite(m.loss) && m.videosPerSecond > 0));
  const lines = (await Deno.readTextFile(`${out}/metrics.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.equal(lines.length, 6);
  assert.ok(lines.every((l) => Number.isFinite(l.gradNorm)));
  const tb = [...Deno.readDirSync(`${out}/tensorboard`)].map((e) => e.name);
  assert.equal(tb.length, 1);
  const events = readEvents(await Deno.readFile(`${out}/tensorboard/${tb[0]}`));
  assert.ok(events.some((e) => e.scalars.some((s) => s.tag === "loss")));
  assert.ok(events.some((e) => e.images.length === 1));
  const png = await Deno.readFile(`${out}/reconstructions/step-00000024.png`);
  assert.deepEqual([...png.subarray(1, 4)], [80, 78, 71]); // "PNG"
  assert.deepEqual(listCheckpoints(`${out}/checkpoints`).map((c) => c.step), [16, 20, 24]); // every 4, the last 3 kept
  // `deno task visualize --ckpt`: the checkpoint's own model and data, one picture per clip.
  const pics = await writeReconstructions({
    ckpt: out,
    out: `${out}/vis`,
    clips: 2,
    batches: 1,
    device: "host",
  });
  assert.equal(pics.length, 2);
  for (const p of pics) assert.deepEqual([...(await Deno.readFile(p)).subarray(1, 4)], [80, 78, 71]);
});

Deno.test("an interrupted run resumes to the same weights as an uninterrupted one", async () => {
  const whole = `${dataDir}/run-whole`;
  await run(tinyConfig(whole));
  const parts = `${dataDir}/run-parts`;
  const stop = new AbortController();
  const first = await run(tinyConfig(parts), stop.signal, () => stop.abort());
  assert.equal(first.length, 5); // stopped after the step during which the signal came
  assert.deepEqual(listCheckpoints(`${parts}/checkpoints`).map((c) => c.step), [4, 5]);
  const rest = await run(tinyConfig(parts));
  assert.deepEqual(rest.map((m) => m.step), [6, 7, 8, 9, 10, 11, 12]);
  const a = await finalWeights(whole);
  const b = await finalWeights(parts);
  assert.equal(a.size, b.size);
  for (const [name, v] of a) assert.deepEqual(b.get(name), v, name);
});

Deno.test("a corrupt or partial checkpoint is refused with a clear message", async () => {
  const out = `${dataDir}/run-corrupt`;
  await run(tinyConfig(out, ["--train.steps", "4"]));
  const last = listCheckpoints(`${out}/checkpoints`).pop()!;
  const weights = await Deno.readFile(`${last.path}/model.safetensors`);
  await Deno.writeFile(`${last.path}/model.safetensors`, weights.subarray(0, weights.length - 100));
  await assert.rejects(
    run(tinyConfig(out, ["--train.steps", "8"])),
    new RegExp(`Checkpoint ${last.path} is corrupt or incomplete: .*truncated or corrupt`),
  );
  await Deno.writeFile(`${last.path}/model.safetensors`, weights);
  await Deno.remove(`${last.path}/state.json`);
  await assert.rejects(
    run(tinyConfig(out, ["--train.steps", "8"])),
    /is corrupt or incomplete: state.json cannot be read/,
  );
  // A temporary folder left by a crash mid-save is never taken for a checkpoint.
  await Deno.writeTextFile(`${last.path}/state.json`, "{}");
  await Deno.rename(last.path, `${last.path}.tmp-99999`);
  assert.deepEqual(listCheckpoints(`${out}/checkpoints`), []);
});

/** The reproduction: lr 1e8 with no warmup overflows within a few steps. */
const WILD = ["--optim.lr", "1e8", "--optim.min_lr", "0", "--optim.warmup_steps", "0"];

Deno.test("a non-finite step is never applied nor saved: the run stops naming it and a good checkpoint", async () => {
  const out = `${dataDir}/run-nan`;
  const wild = [...WILD, "--train.steps", "8"];
  const saveAll = ["--train.save_every", "1", "--train.log_every", "1", "--train.keep_last", "8"];
  let err: Error | undefined;
  await run(tinyConfig(out, [...wild, ...saveAll])).catch((e) => (err = e));
  assert.ok(err instanceof NonFiniteStepError, String(err));
  const named = err.message.match(/The last good checkpoint is (\S+?)\./)?.[1];
  assert.match(
    err.message,
    /(step \d+ has loss \S+ and gradient norm \S+|weights hold non-finite values after step \d+)/,
  );
  // Every checkpoint written holds finite weights and moments, and the named one is the newest.
  const saved = listCheckpoints(`${out}/checkpoints`);
  assert.ok(saved.length >= 1 && saved.length < 8, `saved ${saved.map((c) => c.step)}`);
  assert.equal(named, saved[saved.length - 1].path);
  for (const c of saved) {
    for (const f of ["model", "optimizer"]) {
      const file = await loadSafetensors(`${c.path}/${f}.safetensors`);
      for (const [name, t] of file.tensors) {
        assert.ok(toFloats(t).every(Number.isFinite), `${c.path} ${name}`);
      }
    }
  }
  // It loads: the same command resumes from it, and the guard stops at the same place again rather than
  // save anything past it (these weights were wrecked by finite but absurd updates before the first
  // non-finite step; the run says so instead of writing NaNs).
  const last = saved[saved.length - 1];
  await assert.rejects(
    run(tinyConfig(out, [...wild, ...saveAll])),
    new RegExp(`step ${last.step + 1} has loss .* The last good checkpoint is ${last.path}\\.`),
  );
  assert.deepEqual(listCheckpoints(`${out}/checkpoints`).map((c) => c.step), saved.map((c) => c.step));
});

Deno.test("skip_nonfinite skips bad steps up to its limit in a row, then stops", async () => {
  const out = `${dataDir}/run-skip`;
  const wild = [...WILD, "--train.steps", "12"];
  const steps: StepMetrics[] = [];
  const it = pretrain(tinyConfig(out, [...wild, "--optim.skip_nonfinite", "2", "--train.save_every", "0"]));
  await assert.rejects(async () => {
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      steps.push(r.value);
    }
  }, /\(3 in a row; optim.skip_nonfinite is 2\); stopping before the update/);
  // The two skipped steps were reported as steps (their loss or gradient not finite).
  const bad = steps.filter((m) => !(Number.isFinite(m.loss) && Number.isFinite(m.gradNorm)));
  assert.equal(bad.length, 2);
});

Deno.test("resume rules: --resume needs a checkpoint, --no-resume sets the old run aside, metrics.jsonl is cut back", async () => {
  const out = `${dataDir}/run-rules`;
  await assert.rejects(
    run(tinyConfig(out, ["--train.resume", "always"])),
    /--resume: .* holds no checkpoint/,
  );
  // 6 steps, logged each, a checkpoint at 4 and 6; then as if killed after logging 5 and 6 but before
  // saving 6 (the final checkpoint set aside), resume: steps 5 and 6 are logged once, not twice.
  const six = ["--train.steps", "6", "--train.save_every", "4", "--train.log_every", "1"];
  await run(tinyConfig(out, six));
  await Deno.rename(`${out}/checkpoints/step-00000006`, `${dataDir}/step-6-aside`);
  const again = await run(tinyConfig(out, six));
  assert.deepEqual(again.map((m) => m.step), [5, 6]);
  const logged = (await Deno.readTextFile(`${out}/metrics.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l).step
  );
  assert.deepEqual(logged, [1, 2, 3, 4, 5, 6]);
  // A different model on the same folder is refused with the key named, and nothing is touched.
  await assert.rejects(
    run(tinyConfig(out, [...six, "--model.decoder_depth", "2"])),
    /model.decoder_depth: 1 in the checkpoint, 2 now[^]*The checkpoint is intact/,
  );
  // --no-resume starts afresh; the previous run is kept aside.
  const fresh = await run(tinyConfig(out, [...six, "--train.resume", "never", "--model.decoder_depth", "2"]));
  assert.equal(fresh[0].step, 1);
  const aside = [...Deno.readDirSync(out)].map((e) => e.name).filter((n) => n.startsWith("previous-"));
  assert.equal(aside.length, 1);
  assert.ok(listCheckpoints(`${out}/${aside[0]}/checkpoints`).length > 0);
});
