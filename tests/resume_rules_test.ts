/**
 * Flags are never ignored: a configuration change on resume is named key by key with the ways on (never
 * called corruption), and a data list on the command line is what the run trains on.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/train/pretrain/config.ts";
import { loadFinetuneConfig } from "../lib/train/finetune/config.ts";
import { ConfigChangedError, configChanges, requireSameRun } from "../lib/train/resume_check.ts";
import { setAsidePreviousRun, truncateMetrics } from "../lib/train/run_files.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

const saved = {
  model: { size: "mini", dtype: "auto" },
  optim: { lr: 5e-4, betas: [0.9, 0.95] },
  train: { steps: 10, batch_size: 8, log_every: 10, output: "runs/a", finetune: "" },
};

Deno.test("a changed configuration names the keys that differ and how to proceed", () => {
  const now = structuredClone(saved);
  now.model.size = "tiny";
  now.optim.betas = [0.9, 0.999];
  now.train.finetune = "runs/default/checkpoints/step-00000320";
  // Run length, logging and place may change between the legs of one run.
  now.train.steps = 40;
  now.train.log_every = 1;
  now.train.output = "/abs/runs/a";
  now.model.dtype = "bf16";
  assert.deepEqual(configChanges(saved, now).map((c) => c.key), [
    "model.size",
    "optim.betas",
    "train.finetune",
  ]);
  const e = assert.throws(
    () => requireSameRun("runs/a/checkpoints/step-00000010", saved, now),
    ConfigChangedError,
  );
  void e;
  try {
    requireSameRun("runs/a/checkpoints/step-00000010", saved, now);
  } catch (err) {
    const m = (err as Error).message;
    assert.match(m, /model.size: "mini" in the checkpoint, "tiny" now/);
    assert.match(m, /train.finetune: "" in the checkpoint, "runs\/default\/checkpoints\/step-00000320" now/);
    assert.match(m, /The checkpoint is intact/);
    assert.match(m, /new output folder \(--output DIR\)/);
    assert.match(m, /--no-resume/);
    assert.doesNotMatch(m, /[Dd]elete|corrupt/);
  }
  requireSameRun("x", saved, { ...structuredClone(saved), train: { ...saved.train, steps: 99 } });
});

Deno.test("a data list given on the command line switches the source to list", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vswift-list-" });
  try {
    const list = `${dir}/train.csv`;
    await Deno.writeTextFile(list, "a.mp4,0\n");
    // configs/default.yaml trains on generated shapes; --data.list must not be silently ignored.
    const cfg = await loadConfig(`${ROOT}configs/default.yaml`, ["--data.list", list]);
    assert.equal(cfg.data.source, "list");
    assert.equal(cfg.data.list, list);
    // An explicit source still wins.
    const both = await loadConfig(`${ROOT}configs/default.yaml`, [
      `--data.list=${list}`,
      "--data.source",
      "shapes",
    ]);
    assert.equal(both.data.source, "shapes");
    const ft = await loadFinetuneConfig(`${ROOT}configs/finetune_default.yaml`, [
      "--data.train_list",
      list,
      "--data.dataset",
      "k400",
    ]);
    assert.equal(ft.data.source, "list");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics.jsonl is cut back to the resumed step; a previous run is set aside, not deleted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vswift-runfiles-" });
  try {
    const path = `${dir}/metrics.jsonl`;
    const line = (s: number) => JSON.stringify({ step: s, loss: 1 }) + "\n";
    // Steps 1..6 logged, the checkpoint at 4, then a kill -9 mid-line.
    await Deno.writeTextFile(path, [1, 2, 3, 4, 5, 6].map(line).join("") + '{"step": 7, "lo');
    assert.equal(await truncateMetrics(path, 4), 3);
    assert.equal(await Deno.readTextFile(path), [1, 2, 3, 4].map(line).join(""));
    assert.equal(await truncateMetrics(path, 4), 0);
    assert.equal(await truncateMetrics(`${dir}/absent.jsonl`, 4), 0);
    await Deno.mkdir(`${dir}/checkpoints/step-00000004`, { recursive: true });
    const aside = (await setAsidePreviousRun(dir))!;
    assert.match(aside, /previous-\d{4}-/);
    assert.ok((await Deno.stat(`${aside}/checkpoints/step-00000004`)).isDirectory);
    assert.ok((await Deno.stat(`${aside}/metrics.jsonl`)).isFile);
    assert.equal(await setAsidePreviousRun(dir), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
