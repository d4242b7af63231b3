/**
 * `deno task notebook`: executes examples/quickstart.ipynb headless on Deno's Jupyter kernel and checks
 * the result (CI runs it through `./vswift notebook`, which installs jupyter-nbconvert and
 * python3-nbclient when missing). The kernel is registered with `deno jupyter --install` into a temporary
 * data folder (XDG_DATA_HOME), so a user's own kernelspecs are left alone and the kernel is this
 * checkout's Deno. By default the notebook runs twice in one kernel (its cells, then all of them again),
 * in quick mode (VSWIFT_NOTEBOOK_QUICK=1: a few steps), and the executed copy lands in
 * runs/notebook_check/. Fails when a cell did not run or failed, an expected image is missing, or a
 * training cell's memory after differs from before.
 */
import { dirname, resolve } from "node:path";
import { parseFlags } from "../lib/task_cli.ts";
import { checkExecutedNotebook, type NotebookJson, type OutputExpectations } from "../lib/notebook/check.ts";

const USAGE = `usage: deno task notebook [--notebook FILE] [--out FILE] [--timeout SECONDS] [--once] [--full]
  --notebook  the notebook (examples/quickstart.ipynb)
  --out       the executed copy (runs/notebook_check/<name>.executed.ipynb)
  --timeout   the whole execution's limit in seconds (900); a cell's limit is the same
  --once      run the notebook once, not twice in the same kernel
  --full      the notebook's own step counts instead of VSWIFT_NOTEBOOK_QUICK=1`;

const { values: a } = parseFlags("deno task notebook", USAGE, {
  options: {
    notebook: { type: "string", default: "examples/quickstart.ipynb" },
    out: { type: "string" },
    timeout: { type: "string", default: "900" },
    once: { type: "boolean", default: false },
    full: { type: "boolean", default: false },
  },
});
const limit = Number(a.timeout);
if (!(limit > 0)) {
  console.error(`--timeout takes a positive number of seconds, got "${a.timeout}"\n${USAGE}`);
  Deno.exit(2);
}

/** What examples/quickstart.ipynb must show, by cell id. */
const QUICKSTART: OutputExpectations = {
  data: { "image/png": 1 },
  pretrain: { "image/svg+xml": 1, "image/png": 1 },
  reconstruction: { "image/png": 1 },
  finetune: { "image/svg+xml": 1 },
  losses: { "image/svg+xml": 1 },
  confusion: { "image/svg+xml": 1 },
  clips: { "image/png": 4, "text/markdown": 4 },
};

async function run(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { ok: r.success, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, out: (e as Error).message };
  }
}

const nbPath = resolve(a.notebook);
const name = nbPath.split("/").pop()!.replace(/\.ipynb$/, "");
const outPath = resolve(a.out ?? `runs/notebook_check/${name}.executed.ipynb`);
const source: NotebookJson = JSON.parse(await Deno.readTextFile(nbPath));

const nbconvert = await run("jupyter", ["nbconvert", "--version"]);
if (!nbconvert.ok) {
  console.error(
    `jupyter nbconvert is not usable (${nbconvert.out.trim()}); install jupyter-nbconvert and python3-nbclient ` +
      "(apt-get install jupyter-nbconvert python3-nbclient, or run ./vswift notebook)",
  );
  Deno.exit(1);
}

const tmp = await Deno.makeTempDir({ prefix: "vswift_notebook_" });
// The executed notebook's kernel starts in the notebook's folder, so the copy to execute sits beside it.
const input = `${dirname(nbPath)}/.${name}.check.ipynb`;
try {
  const install = await run(Deno.execPath(), ["jupyter", "--install", "--force"], { XDG_DATA_HOME: tmp });
  if (!install.ok) throw new Error(`deno jupyter --install failed: ${install.out.trim()}`);

  // Twice in one kernel: the same cells again with their ids suffixed, so both passes are checked.
  const cells = a.once
    ? source.cells
    : [...source.cells, ...source.cells.map((c) => ({ ...c, id: `${c.id}-again` }))];
  await Deno.writeTextFile(input, JSON.stringify({ ...source, cells }, null, 1));
  await Deno.mkdir(dirname(outPath), { recursive: true });

  const env: Record<string, string> = {
    JUPYTER_PATH: [`${tmp}/jupyter`, Deno.env.get("JUPYTER_PATH")].filter(Boolean).join(":"),
    VSWIFT_QUIET: "1",
  };
  if (!a.full) env.VSWIFT_NOTEBOOK_QUICK = "1";
  const t0 = performance.now();
  console.log(
    `notebook: executing ${a.notebook}${a.once ? "" : " twice in one kernel"}${
      a.full ? "" : " (VSWIFT_NOTEBOOK_QUICK=1)"
    }, limit ${limit} s`,
  );
  const child = new Deno.Command("jupyter", {
    args: [
      "nbconvert",
      "--to",
      "notebook",
      "--execute",
      `--ExecutePreprocessor.timeout=${Math.ceil(limit)}`,
      "--ExecutePreprocessor.kernel_name=deno",
      "--output",
      outPath,
      input,
    ],
    env,
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // Past the limit: SIGINT first, so that nbclient shuts its kernel down, then SIGKILL.
  let timedOut = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGINT");
    killTimer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  }, limit * 1000);
  const status = await child.status;
  clearTimeout(timer);
  // nbconvert that ends on the SIGINT leaves no process to kill.
  clearTimeout(killTimer);
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  if (timedOut) throw new Error(`the notebook did not finish within ${limit} s`);

  let executed: NotebookJson;
  try {
    executed = JSON.parse(await Deno.readTextFile(outPath));
  } catch (e) {
    throw new Error(
      `nbconvert exited with ${status.code} and left no executed notebook at ${outPath}: ${
        (e as Error).message
      }`,
    );
  }
  const expect: OutputExpectations = {};
  for (const [id, mimes] of Object.entries(QUICKSTART)) {
    if (!source.cells.some((c) => c.id === id)) continue;
    expect[id] = mimes;
    if (!a.once) expect[`${id}-again`] = mimes;
  }
  const problems = checkExecutedNotebook(executed, expect);
  if (!status.success && problems.length === 0) problems.push(`nbconvert exited with ${status.code}`);
  if (problems.length > 0) {
    throw new Error(`the executed notebook (${outPath}) has problems:\n  ${problems.join("\n  ")}`);
  }
  const images = executed.cells.flatMap((c) => c.outputs ?? [])
    .filter((o) => Object.keys(o.data ?? {}).some((k) => k.startsWith("image/"))).length;
  console.log(`notebook: ok in ${seconds} s: every cell ran without an error, ${images} images; ${outPath}`);
} catch (e) {
  console.error(`notebook check failed: ${(e as Error).message}`);
  Deno.exitCode = 1;
} finally {
  await Deno.remove(input).catch(() => {});
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
