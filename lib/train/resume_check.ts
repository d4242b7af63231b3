/**
 * Resuming is continuing the same run: the configuration the checkpoint was written with must be the one
 * given now, except for keys that only say how long to train, how often to log and save, and where the
 * run executes. A change is named key by key with what to do; the checkpoint is never called corrupt
 * for it, and never to be deleted.
 */
import { RefusedToStart } from "./exit_codes.ts";

/** Keys that may change between the legs of one run. */
const MAY_CHANGE = new Set([
  "train.steps",
  "train.epochs",
  "train.log_every",
  "train.save_every",
  "train.save_ckpt_freq",
  "train.vis_every",
  "train.keep_last",
  "train.tensorboard",
  "train.device",
  "train.output",
  "train.resume",
  "model.dtype",
  "data.workers",
  "data.prefetch",
  "eval.every",
]);

/**
 * Keys a run may change to recover (after a stop on a non-finite step, say): allowed, and each change is
 * said in the log.
 */
const RECOVERY = new Set(["optim.lr", "optim.min_lr", "optim.clip_grad", "optim.skip_nonfinite"]);

export interface ConfigChange {
  key: string;
  saved: unknown;
  now: unknown;
}

function flatten(v: unknown, prefix: string, out: Map<string, unknown>): void {
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, v);
}

/**
 * Keys whose values differ between the checkpoint's config and this run's (changes that may happen
 * silently left out; with `recovery` false the recovery keys are left out too).
 */
export function configChanges(saved: unknown, now: unknown, recovery = true): ConfigChange[] {
  const a = new Map<string, unknown>();
  const b = new Map<string, unknown>();
  flatten(saved, "", a);
  flatten(now, "", b);
  const out: ConfigChange[] = [];
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    if (MAY_CHANGE.has(key) || (!recovery && RECOVERY.has(key))) continue;
    if (JSON.stringify(a.get(key)) !== JSON.stringify(b.get(key))) {
      out.push({ key, saved: a.get(key), now: b.get(key) });
    }
  }
  return out.sort((x, y) => x.key.localeCompare(y.key));
}

const show = (v: unknown) => (v === undefined ? "(absent)" : JSON.stringify(v));

/** The configuration differs from the checkpoint's: the message names the keys and the ways on. */
export class ConfigChangedError extends RefusedToStart {
  constructor(readonly checkpoint: string, readonly changes: ConfigChange[]) {
    super(
      `This run's configuration differs from the one checkpoint ${checkpoint} was written with:\n` +
        changes.map((c) => `  ${c.key}: ${show(c.saved)} in the checkpoint, ${show(c.now)} now`).join("\n") +
        `\nThe checkpoint is intact. To continue that run, give the same values (its configuration is in ` +
        `${checkpoint}/state.json). To train with the new values, give a new output folder (--output DIR), ` +
        `or --no-resume to start over in this one (its checkpoints are kept until newer ones replace them).`,
    );
    this.name = "ConfigChangedError";
  }
}

/**
 * Throws ConfigChangedError when `now` differs from the checkpoint's `saved` config; returns the
 * recovery keys that changed (to be said in the log).
 */
export function requireSameRun(checkpoint: string, saved: unknown, now: unknown): ConfigChange[] {
  const changes = configChanges(saved, now, false);
  if (changes.length > 0) throw new ConfigChangedError(checkpoint, changes);
  return configChanges(saved, now).filter((c) => RECOVERY.has(c.key));
}

/** "optim.lr 0.001 -> 0.0001, ..." for the log. */
export function formatChanges(changes: ConfigChange[]): string {
  return changes.map((c) => `${c.key} ${show(c.saved)} -> ${show(c.now)}`).join(", ");
}
