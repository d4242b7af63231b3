/**
 * deno task mutants: plants each known-wrong change of tests/mutants.ts in a scratch copy of the
 * repository, runs the test files that should catch it, and fails if any mutant survives (its tests
 * pass) or no longer applies. The working tree is never touched.
 *
 *   deno task mutants                 every mutant
 *   deno task mutants --only ID,ID    some of them (ids or unique parts of ids)
 *   deno task mutants --jobs N        N mutants at a time, each in its own scratch copy (2)
 *   deno task mutants --list          the list, without running anything
 */
import { parseFlags } from "../lib/task_cli.ts";
import { type Mutant, MUTANTS } from "../tests/mutants.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
/** What a scratch copy leaves out: build products, tools and run outputs (build/ is copied separately). */
const SKIP = new Set([".git", ".tools", "node_modules", "runs", "build", ".carry"]);
/** Per mutant; a hung test counts as caught only if it is reported, so it fails the run instead. */
const TIMEOUT_MS = 5 * 60_000;

const USAGE = "usage: deno task mutants [--only ID,ID] [--jobs N] [--list]";

async function copyTree(src: string, dst: string): Promise<void> {
  await Deno.mkdir(dst, { recursive: true });
  for await (const e of Deno.readDir(src)) {
    if (SKIP.has(e.name)) continue;
    const from = `${src}/${e.name}`;
    const to = `${dst}/${e.name}`;
    if (e.isDirectory) await copyTree(from, to);
    else if (e.isFile) await copyPreservingTime(from, to);
  }
}

/** Copies a file and its modification time (the library's staleness check compares times). */
async function copyPreservingTime(from: string, to: string): Promise<void> {
  await Deno.copyFile(from, to);
  const st = await Deno.stat(from);
  await Deno.utime(to, st.atime ?? new Date(), st.mtime ?? new Date());
}

/**
 * Makes a scratch repository beside a link to ../shared, with the host library and the decoder built
 * there once (copied from build/ with their times when they are up to date), so that a TypeScript
 * mutant builds nothing.
 */
async function scratchRepo(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vswift_mutants_" });
  const repo = `${dir}/repo`;
  await copyTree(ROOT.replace(/\/$/, ""), repo);
  for (const link of ["node_modules", ".tools"]) {
    await Deno.symlink(`${ROOT}${link}`, `${repo}/${link}`).catch(() => {});
  }
  await Deno.symlink(`${ROOT}../shared`, `${dir}/shared`).catch(() => {});
  await Deno.mkdir(`${repo}/build`);
  const built = await Deno.stat(`${ROOT}build`).then((st) => st.isDirectory, () => false);
  for await (const e of built ? Deno.readDir(`${ROOT}build`) : []) {
    if (e.isFile && !e.name.startsWith("libvswift_cuda")) {
      await copyPreservingTime(`${ROOT}build/${e.name}`, `${repo}/build/${e.name}`);
    }
  }
  for (const target of ["host", "decode"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "cuda/build.ts", "--target", target],
      cwd: repo,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success && target === "host") {
      throw new Error(`Building the host library in ${repo} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
  }
  return dir;
}

/** The files of build/ (libraries and their stamps), saved before a native mutant and put back after. */
async function snapshotBuild(repo: string): Promise<() => Promise<void>> {
  const saved = `${repo}/build/unmutated`;
  await Deno.mkdir(saved, { recursive: true });
  const names: string[] = [];
  for await (const e of Deno.readDir(`${repo}/build`)) {
    if (!e.isFile) continue;
    names.push(e.name);
    await copyPreservingTime(`${repo}/build/${e.name}`, `${saved}/${e.name}`);
  }
  return async () => {
    for (const n of names) await Deno.rename(`${saved}/${n}`, `${repo}/build/${n}`);
  };
}

function occurrences(text: string, find: string): number {
  let n = 0;
  for (let at = text.indexOf(find); at >= 0; at = text.indexOf(find, at + 1)) n++;
  return n;
}

type Outcome = "caught" | "survived" | "does not apply" | "timed out" | "no test ran";

async function runMutant(
  repo: string,
  m: Mutant,
): Promise<{ outcome: Outcome; seconds: number; detail: string }> {
  const path = `${repo}/${m.file}`;
  const original = await Deno.readTextFile(path).catch(() => undefined);
  if (original === undefined) {
    return { outcome: "does not apply", seconds: 0, detail: `${m.file} is missing` };
  }
  const count = occurrences(original, m.find);
  if (count !== 1) {
    return { outcome: "does not apply", seconds: 0, detail: `its text occurs ${count} times in ${m.file}` };
  }
  const st = await Deno.stat(path);
  const restoreBuild = m.file.startsWith("cuda/") ? await snapshotBuild(repo) : undefined;
  await Deno.writeTextFile(path, original.replace(m.find, m.replace));
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "--no-check", "--allow-all", ...m.tests],
    cwd: repo,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
  const out = await child.output();
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  // Put the file, its time and (for C) the unmutated libraries back, so the next mutant rebuilds nothing.
  await Deno.writeTextFile(path, original);
  await Deno.utime(path, st.atime ?? new Date(), st.mtime ?? new Date());
  await restoreBuild?.();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (out.signal === "SIGKILL") {
    return { outcome: "timed out", seconds, detail: `over ${TIMEOUT_MS / 1000} s` };
  }
  if (out.success) return { outcome: "survived", seconds, detail: "every test passed" };
  const failed = [...text.matchAll(/^(.+?) \.\.\. FAILED/gm)].map((x) => x[1]);
  if (failed.length === 0) {
    // A build or load error: the mutant broke the code before any test could judge it.
    const error = text.split("\n").find((l) => /error/i.test(l)) ?? text.trim().split("\n")[0];
    return { outcome: "no test ran", seconds, detail: error.trim() };
  }
  return { outcome: "caught", seconds, detail: `failed: ${failed.slice(0, 2).join("; ")}` };
}

if (import.meta.main) {
  const { values } = parseFlags("deno task mutants", USAGE, {
    options: {
      only: { type: "string" },
      list: { type: "boolean", default: false },
      jobs: { type: "string", default: "2" },
    },
  });
  let mutants = MUTANTS;
  if (values.only) {
    const wanted = values.only.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
    mutants = MUTANTS.filter((m) => wanted.some((w) => m.id.toLowerCase().includes(w)));
    if (mutants.length === 0) {
      console.error(`No mutant matches --only ${values.only}; see deno task mutants --list`);
      Deno.exit(2);
    }
  }
  if (values.list) {
    for (const m of mutants) console.log(`${m.id}  (${m.file}; ${m.tests.join(", ")})`);
    Deno.exit(0);
  }
  const jobs = Number(values.jobs);
  if (!(Number.isInteger(jobs) && jobs >= 1)) {
    console.error(`--jobs must be a positive integer, got ${values.jobs}`);
    Deno.exit(2);
  }
  // Each job plants its mutants in a scratch copy of its own; the test files run one mutant at a time.
  const dirs = await Promise.all(Array.from({ length: Math.min(jobs, mutants.length) }, scratchRepo));
  let bad = 0;
  let next = 0;
  let done = 0;
  try {
    await Promise.all(dirs.map(async (dir) => {
      while (next < mutants.length) {
        const m = mutants[next++];
        const r = await runMutant(`${dir}/repo`, m);
        if (r.outcome !== "caught") bad++;
        console.log(
          `[${++done}/${mutants.length}] ${r.outcome.toUpperCase()}: ${m.id} (${m.file}, ${
            r.seconds.toFixed(0)
          } s) - ${r.detail}`,
        );
      }
    }));
  } finally {
    for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log(`mutants: ${mutants.length - bad} of ${mutants.length} caught`);
  if (bad > 0) {
    console.error(
      `${bad} mutants were not caught: the tests named for them must fail with the change in place`,
    );
    Deno.exit(1);
  }
}
