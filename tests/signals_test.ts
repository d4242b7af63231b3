/**
 * Stopping a run the ways users and schedulers do, through `deno task pretrain` as users run it: Ctrl-C
 * typed into a real pseudo-terminal (util-linux `script`; the terminal signals the whole foreground
 * process group: deno task, the trainer, and any decoder sharing the group) and SIGTERM to the process
 * group (what SLURM and Kubernetes send). Each must finish the step, save, exit 0 without replacing a
 * clip, and resume to the same weights as a run that was never stopped.
 */
import assert from "node:assert/strict";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { listCheckpoints } from "../lib/train/checkpoint.ts";
import { finalWeights, scratchDir, TINY_PRETRAIN_MODEL_FLAGS } from "./helpers.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const dir = await scratchDir("vswift-signals-");

const dataset = await ensureSyntheticDataset({
  dir: `${dir}/shapes`,
  videos: 12,
  size: 40,
  frames: 16,
  seed: 4,
});
const STEPS = 10;

function args(output: string): string[] {
  return [
    ...TINY_PRETRAIN_MODEL_FLAGS,
    ...["--mask.ratio", "0.75", "--data.source", "list", "--data.list", dataset.list, "--data.root"],
    ...[dataset.dataRoot, "--data.short_side", "36", "--data.workers", "2", "--data.sampling_rate", "2"],
    ...["--data.repeats", "2", "--optim.lr", "2e-3", "--optim.warmup_steps", "2", "--train.batch_size", "4"],
    ...["--train.steps", String(STEPS), "--train.save_every", "5", "--train.vis_every", "0"],
    ...["--train.log_every", "1", "--train.device", "host", "--model.dtype", "f32", "--output", output],
  ];
}

const deno = Deno.execPath();
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Reads `child`'s stdout until `pattern` shows, calls `act`, then collects the rest. */
async function actWhen(child: Deno.ChildProcess, pattern: RegExp, act: () => Promise<void> | void) {
  let text = "";
  let acted = false;
  const dec = new TextDecoder();
  for await (const chunk of child.stdout) {
    text += dec.decode(chunk, { stream: true });
    if (!acted && pattern.test(text)) {
      acted = true;
      await act();
    }
  }
  const status = await child.status;
  return { code: status.code, text, acted };
}

async function plainRun(output: string, extra: string[] = [], code = 0): Promise<string> {
  const o = await new Deno.Command(deno, {
    args: ["task", "-q", "pretrain", ...args(output), ...extra],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
  assert.equal(o.code, code, text);
  return text;
}

const whole = `${dir}/whole`;
let wholeWeights: Map<string, Float32Array> | undefined;
async function reference(): Promise<Map<string, Float32Array>> {
  if (!wholeWeights) {
    const text = await plainRun(whole);
    // The first lines say what the run starts from.
    assert.match(text.split("\n").slice(0, 4).join("\n"), /starting from a fresh initialisation/);
    wholeWeights = await finalWeights(whole);
  }
  return wholeWeights;
}

async function resumesToReference(output: string, text: string): Promise<void> {
  assert.doesNotMatch(text, /Skipping|failed to decode|replaced/, "a decoder was hit by the signal");
  const saved = listCheckpoints(`${output}/checkpoints`).map((c) => c.step);
  const stoppedAt = saved[saved.length - 1];
  assert.ok(stoppedAt >= 3 && stoppedAt < STEPS, `checkpoints ${saved}`);
  assert.match(text, new RegExp(`interrupted after step ${stoppedAt}; saved`));
  const rest = await plainRun(output);
  assert.match(rest, new RegExp(`resuming from .*step-0*${stoppedAt} \\(step ${stoppedAt}\\)`));
  const a = await reference();
  const b = await finalWeights(output);
  assert.equal(a.size, b.size);
  for (const [name, v] of a) assert.deepEqual(b.get(name), v, name);
}

Deno.test("Ctrl-C in a terminal: the step finishes, a checkpoint is saved, exit 0, resume is exact", async () => {
  const out = `${dir}/pty`;
  // script runs the command through `$SHELL -c`. A non-interactive dash that stays as the parent also
  // catches the ^C and, once deno task has exited 0, kills itself with SIGINT (status 130); a user's
  // interactive shell does not, so `exec` keeps the shell out of what is tested, and SHELL is pinned
  // so that every machine runs the same path (CI's script ran /bin/sh, a bash login here did not).
  const command = `exec ${[deno, "task", "-q", "pretrain", ...args(out)].map(quote).join(" ")}`;
  // script gives the command a real terminal; a ^C written to it is the keypress.
  const child = new Deno.Command("script", {
    args: ["-qfec", command, "/dev/null"],
    env: { SHELL: "/bin/sh" },
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const r = await actWhen(child, /step 3\/10/, () => writer.write(new Uint8Array([3])));
  await writer.close().catch(() => {});
  await child.stderr.cancel();
  assert.ok(r.acted, r.text);
  assert.equal(r.code, 0, r.text);
  await resumesToReference(out, r.text);
});

Deno.test("SIGTERM to the process group: the step finishes, a checkpoint is saved, exit 0, resume is exact", async () => {
  const out = `${dir}/pgroup`;
  // A session and process group of its own, as a scheduler's job step has.
  const child = new Deno.Command(deno, {
    args: ["task", "-q", "pretrain", ...args(out)],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
    detached: true,
  }).spawn();
  const r = await actWhen(child, /step 3\/10/, () => Deno.kill(-child.pid, "SIGTERM"));
  assert.ok(r.acted, r.text);
  assert.equal(r.code, 0, r.text);
  await resumesToReference(out, r.text);
});

Deno.test("exit statuses: 3 for a stop on a non-finite step, 2 for a run refused before it starts", async () => {
  const out = `${dir}/nonfinite`;
  const wild = [
    "--optim.lr",
    "1e8",
    "--optim.min_lr",
    "0",
    "--optim.warmup_steps",
    "0",
    "--train.save_every",
    "1",
  ];
  const text = await plainRun(out, wild, 3);
  assert.match(text, /pretraining failed: (step \d+ has loss|The weights hold non-finite values)/);
  const refused = await plainRun(out, [...wild, "--model.decoder_depth", "2"], 2);
  assert.match(refused, /model.decoder_depth: 1 in the checkpoint, 2 now/);
});

Deno.test("SIGTERM while the ranks meet ends the rank at once with status 0 (nothing to save)", async () => {
  // This test plays a rank 0 that accepts and then says nothing, so rank 1 waits in the rendezvous.
  const master = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const child = new Deno.Command(deno, {
    args: ["run", "-A", `${ROOT}tasks/pretrain.ts`, ...args(`${dir}/rank1`)],
    cwd: ROOT,
    env: {
      RANK: "1",
      WORLD_SIZE: "2",
      MASTER_ADDR: "127.0.0.1",
      MASTER_PORT: String((master.addr as Deno.NetAddr).port),
      VSWIFT_DIST_SECRET: "a-secret-for-this-test-only",
      VSWIFT_DIST_HANDSHAKE_TIMEOUT: "120",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const conn = await master.accept();
  child.kill("SIGTERM");
  const o = await child.output();
  conn.close();
  master.close();
  const err = new TextDecoder().decode(o.stderr);
  assert.equal(o.code, 0, err);
  assert.match(err, /stopped by a signal during the rendezvous, before the first step: nothing to save/);
});

Deno.test("a copy of the stopping signal that arrives after the run ended leaves the exit status 0", async () => {
  // deno task forwards its copy of a Ctrl-C; on a loaded machine it can land after the checkpoint is saved.
  const script = `
    import { interruptSignal } from ${JSON.stringify(`${ROOT}lib/task_cli.ts`)};
    const stop = interruptSignal(false);
    console.log("running");
    await new Promise((r) => stop.signal.addEventListener("abort", r));
    stop.end();
    console.log("ended");
    await new Promise((r) => setTimeout(r, 1500));
    console.log("exited by itself");
  `;
  const child = new Deno.Command(deno, {
    args: ["eval", script],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await child.stderr.cancel();
  // The first SIGINT stops the run; the second plays the copy that comes after the end.
  let text = "";
  let sent = 0;
  for await (const chunk of child.stdout) {
    text += new TextDecoder().decode(chunk);
    if (sent === 0 && /running/.test(text)) sent = (child.kill("SIGINT"), 1);
    if (sent === 1 && /ended/.test(text)) sent = (child.kill("SIGINT"), 2);
  }
  const { code } = await child.status;
  assert.equal(sent, 2, text);
  assert.equal(code, 0, text);
  assert.match(text, /exited by itself/);
});
