/** Resume rules: a configuration change is named key by key with the ways on, never called corruption. */
import assert from "node:assert/strict";
import { ConfigChangedError, configChanges, requireSameRun } from "../lib/train/resume_check.ts";

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
