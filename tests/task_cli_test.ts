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

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const TASKS = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks as Record<string, string>;

/** Runs a task's script the way its deno.json line does, with `args`. */
async function runTask(name: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const words = TASKS[name].split(/\s+/);
  const script = words.findIndex((w) => w.endsWith(".ts"));
  const o = await new Deno.Command(Deno.execPath(), {
    args: [...words.slice(1, script), "--no-check", `${ROOT}${words[script]}`, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

Deno.test("every task prints its usage for --help and refuses an unknown flag in one line", async () => {
  const names = Object.keys(TASKS).filter((n) => !n.startsWith("build") && n !== "test");
  assert.ok(names.length >= 13, names.join(" "));
  const results = await Promise.all(
    names.map(async (n) => ({
      n,
      help: await runTask(n, ["--help"]),
      bad: await runTask(n, ["--bogus-flag", "1"]),
    })),
  );
  for (const { n, help, bad } of results) {
    assert.equal(help.code, 0, `${n} --help: ${help.err}`);
    assert.match(help.out, /^usage: deno task /, `${n} --help`);
    assert.equal(bad.code, 2, `${n} --bogus-flag: ${bad.err}`);
    const lines = bad.err.trim().split("\n");
    assert.equal(lines.length, 1, `${n} --bogus-flag printed:\n${bad.err}`);
    assert.match(lines[0], /bogus-flag/, `${n}: ${lines[0]}`);
  }
});
