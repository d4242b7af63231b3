/** The training tasks' shared command line: shortcuts, switches, the task's own flags, pass-through. */
import assert from "node:assert/strict";
import { parseTaskArgs, type TaskArgSpec } from "../lib/task_cli.ts";

const spec: TaskArgSpec = {
  config: "configs/default.yaml",
  keys: { "--steps": "--train.steps", "--output": "--train.output" },
  switches: { "--synthetic": ["--data.source", "memory"] },
  own: ["--ckpt"],
  usage: "usage: test",
};

Deno.test("task arguments: shortcuts expand to config keys, the rest passes through in order", () => {
  const a = parseTaskArgs(
    [
      "--steps",
      "20",
      "--optim.lr=1e-4",
      "--synthetic",
      "--output=runs/x",
      "--config",
      "configs/other.yaml",
      "--ckpt",
      "runs/y/checkpoints/step-00000010",
      "--gpus=2",
      "--train.batch_size",
      "4",
    ],
    spec,
  );
  assert.equal(a.configPath, "configs/other.yaml");
  assert.equal(a.gpus, 2);
  assert.deepEqual(a.values, { ckpt: "runs/y/checkpoints/step-00000010" });
  assert.deepEqual(a.overrides, [
    "--train.steps",
    "20",
    "--optim.lr=1e-4",
    "--data.source",
    "memory",
    "--train.output",
    "runs/x",
    "--train.batch_size",
    "4",
  ]);
  const plain = parseTaskArgs([], spec);
  assert.deepEqual([plain.configPath, plain.gpus, plain.overrides, plain.values], [
    "configs/default.yaml",
    0,
    [],
    {},
  ]);
});
