/**
 * The command line shared by the training tasks (pretrain, finetune, eval): `--config FILE`, shortcut
 * flags that stand for config keys, `--gpus N` (one process per local GPU), `--section.key value`
 * overrides passed through, and Ctrl-C / SIGTERM turned into an abort signal so the loop can save first.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { distEnv } from "./distributed/env.ts";
import { launchLocal } from "./distributed/launch.ts";
import { exitStatusOf, StoppedBeforeStart } from "./train/exit_codes.ts";

/**
 * The flags of a task that is not a training task (node:util's parseArgs over Deno.args): --help / -h
 * prints `usage` and exits 0; an unknown flag, a missing value or a stray argument is one line on stderr
 * and exit status 2, never a stack trace.
 */
export function parseFlags<T extends Omit<ParseArgsConfig, "args">>(
  task: string,
  usage: string,
  config: T,
  args: string[] = Deno.args,
): ReturnType<typeof parseArgs<T>> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(usage);
    Deno.exit(0);
  }
  try {
    return parseArgs({ ...config, args }) as ReturnType<typeof parseArgs<T>>;
  } catch (e) {
    console.error(
      `${task}: ${(e as Error).message.replace(/\. To specify a positional.*$/, "")} (see --help)`,
    );
    Deno.exit(2);
  }
}

export interface TaskArgSpec {
  /** The config file used without --config. */
  config: string;
  /** Flags with a value that stand for a config key, e.g. `--steps` for `--train.steps`. */
  keys?: Record<string, string>;
  /** Flags without a value that stand for a key and its value, e.g. `--synthetic`. */
  switches?: Record<string, [string, string]>;
  /** Flags with a value the task reads itself (returned in `values`). */
  own?: string[];
  /** Printed by --help. */
  usage: string;
}

export interface TaskArgs {
  configPath: string;
  /** `--section.key value` pairs for the config loader, shortcuts expanded. */
  overrides: string[];
  /** --gpus (0 when absent). */
  gpus: number;
  /** The task's own flags by name (without the dashes). */
  values: Record<string, string>;
}

/** Parses a task's arguments; --help prints the usage and exits, a bad --gpus exits with status 2. */
export function parseTaskArgs(args: string[], spec: TaskArgSpec): TaskArgs {
  const out: TaskArgs = { configPath: spec.config, overrides: [], gpus: 0, values: {} };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf("=");
    const [flag, inline] = a.startsWith("--") && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) {
        console.error(`${flag} needs a value\n${spec.usage}`);
        Deno.exit(2);
      }
      return v;
    };
    if (flag === "--help" || flag === "-h") {
      console.log(spec.usage);
      Deno.exit(0);
    } else if (flag === "--config") out.configPath = value();
    else if (flag === "--gpus") out.gpus = Number(value());
    else if (spec.keys?.[flag]) out.overrides.push(spec.keys[flag], value());
    else if (spec.switches?.[flag]) out.overrides.push(...spec.switches[flag]);
    else if (spec.own?.includes(flag)) out.values[flag.slice(2)] = value();
    else if (flag.startsWith("--") && flag.includes(".")) {
      // The value goes along (a bare --section.flag means true, as the config loader reads it).
      out.overrides.push(a);
      if (inline === undefined && i + 1 < args.length && !args[i + 1].startsWith("--")) {
        out.overrides.push(args[++i]);
      }
    } else {
      // Config keys are --section.key; anything else is a typo, not something to pass on.
      console.error(`Unknown flag ${flag}; flags are those of --help and --section.key config overrides`);
      Deno.exit(2);
    }
  }
  if (!(Number.isInteger(out.gpus) && out.gpus >= 0)) {
    console.error(`--gpus must be a non-negative integer, got ${out.gpus}`);
    Deno.exit(2);
  }
  return out;
}

/** The config a loader promises; a bad file or value prints its message and exits with status 2. */
export async function configOrExit<T>(loading: Promise<T>): Promise<T> {
  try {
    return await loading;
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(2);
  }
}

/**
 * With --gpus N > 1 outside torchrun or srun (no RANK set), runs `script` once per GPU of this machine
 * with the same arguments less --gpus, and exits with the launcher's status; otherwise returns.
 */
export async function launchOnGpus(gpus: number, script: string, args: string[]): Promise<void> {
  if (gpus <= 1 || Deno.env.get("RANK") !== undefined) return;
  const perms = ["ffi", "read", "write", "run", "env", "sys", "net"].map((p) => `--allow-${p}`);
  const rest = args.filter((a, i, all) =>
    a !== "--gpus" && !a.startsWith("--gpus=") && all[i - 1] !== "--gpus"
  );
  Deno.exit(await launchLocal(gpus, ["run", ...perms, script, ...rest]));
}

/**
 * Signals that arrive within this many milliseconds of the first are the same request: a Ctrl-C in a
 * terminal reaches both `deno task` and the trainer, and `deno task` (or the --gpus launcher) forwards
 * its copy, so one keypress or one `kill` of the process group arrives two or three times.
 */
export const SIGNAL_ECHO_MS = 2000;

/**
 * An abort signal raised by the first SIGINT or SIGTERM (batch schedulers stop jobs with SIGTERM), so
 * the loop finishes its step, saves and exits 0. Copies of that signal within SIGNAL_ECHO_MS are the
 * same request; a later Ctrl-C (SIGINT) quits at once with status 130, without saving.
 *
 * `end` marks the run as over without removing the listeners: with none left, the runtime's default
 * action would end the process with status 130 when a signal (a copy of the stopping one, or an impatient
 * second Ctrl-C) lands after the checkpoint is saved. After `end`,
 * copies within SIGNAL_ECHO_MS are ignored and a later signal exits at once with status 0: the run has
 * nothing left to save.
 */
export function interruptSignal(announce: boolean): { signal: AbortSignal; end: () => void } {
  const stop = new AbortController();
  let first = 0;
  let ended = -1;
  const on = (sig: "SIGINT" | "SIGTERM") => () => {
    const now = performance.now();
    if (ended >= 0) {
      if (now - ended > SIGNAL_ECHO_MS) Deno.exit(0);
      return;
    }
    if (stop.signal.aborted) {
      if (sig === "SIGINT" && now - first > SIGNAL_ECHO_MS) Deno.exit(130);
      return;
    }
    first = now;
    if (announce) {
      console.error(
        `\n${sig}: finishing this step and saving a checkpoint (Ctrl-C again after ${
          SIGNAL_ECHO_MS / 1000
        } s to quit at once without saving)`,
      );
    }
    stop.abort();
  };
  Deno.addSignalListener("SIGINT", on("SIGINT"));
  Deno.addSignalListener("SIGTERM", on("SIGTERM"));
  return { signal: stop.signal, end: () => ended = performance.now() };
}

/** How a training run ended, as its task prints it. */
export interface RunEnd {
  output: string;
  lastCheckpoint?: string;
  interrupted: boolean;
}

/**
 * Runs a training loop from the command line: Ctrl-C or SIGTERM stops it after a step with a checkpoint,
 * `onStep` sees every step, rank 0 runs `onEnd` and prints where the run ended; a failure prints the rank
 * and the message ("pretraining failed: ...") and exits with status 1.
 */
export async function runTrainingTask<M, E extends RunEnd>(
  what: string,
  start: (signal: AbortSignal) => AsyncGenerator<M, E>,
  hooks: { onStep?: (m: M) => void; onEnd?: (e: E) => void } = {},
): Promise<void> {
  const dist = distEnv();
  const stop = interruptSignal(dist.rank === 0);
  const run = start(stop.signal);
  try {
    for (;;) {
      const r = await run.next();
      if (!r.done) {
        hooks.onStep?.(r.value);
        continue;
      }
      if (dist.rank !== 0) break;
      const e = r.value;
      hooks.onEnd?.(e);
      console.log(
        `${e.interrupted ? "stopped" : "done"}: ${e.output}${
          e.lastCheckpoint ? `, last checkpoint ${e.lastCheckpoint}` : ""
        }`,
      );
      break;
    }
  } catch (e) {
    const rank = dist.worldSize > 1 ? `rank ${dist.rank}: ` : "";
    if (e instanceof StoppedBeforeStart) console.error(`${rank}${what} ${e.message}`);
    else console.error(`\n${rank}${what} failed: ${(e as Error).message}`);
    Deno.exit(exitStatusOf(e));
  } finally {
    stop.end();
  }
}
