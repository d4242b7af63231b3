/**
 * A run folder across restarts: metrics.jsonl cut back to the checkpoint a run resumes from (a run
 * killed after its last checkpoint logged steps it will now do again), and a previous run set aside,
 * never deleted, when the user asks to start afresh in the same folder (--no-resume).
 */

/**
 * Keeps the lines of `path` (JSON lines with a `step`) up to `step`, written atomically; a torn last line
 * (a kill mid-write) goes too. Returns how many lines were dropped (0 when the file is absent).
 */
export async function truncateMetrics(path: string, step: number): Promise<number> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const kept = lines.filter((l) => {
    try {
      const s = JSON.parse(l).step;
      return Number.isInteger(s) && s <= step;
    } catch {
      return false;
    }
  });
  if (kept.length === lines.length) return 0;
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(tmp, kept.map((l) => l + "\n").join(""));
  await Deno.rename(tmp, path);
  return lines.length - kept.length;
}

/** What a run leaves in its folder that a new run there would mix with its own. */
const RUN_FILES = ["checkpoints", "metrics.jsonl", "tensorboard", "log.txt", "reconstructions", "test"];

/**
 * Moves the previous run's files of `out` into `out/previous-<UTC time>/`. Returns that folder, or
 * undefined when there was nothing to move.
 */
export async function setAsidePreviousRun(out: string): Promise<string | undefined> {
  const present: string[] = [];
  for (const name of RUN_FILES) {
    try {
      await Deno.lstat(`${out}/${name}`);
      present.push(name);
    } catch {
      // not there
    }
  }
  if (present.length === 0) return undefined;
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const dest = `${out}/previous-${stamp}`;
  await Deno.mkdir(dest, { recursive: true });
  for (const name of present) await Deno.rename(`${out}/${name}`, `${dest}/${name}`);
  return dest;
}
