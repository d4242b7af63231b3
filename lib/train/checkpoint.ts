/**
 * Training checkpoints: a folder per step holding the weights (model.safetensors, PyTorch names), the
 * AdamW moments (optimizer.safetensors) and state.json (step, epoch, config, data position, RNG state).
 * A checkpoint is written into a temporary folder and renamed into place, so a crash never leaves a
 * half-written checkpoint under a real name.
 */
import {
  fromFloats,
  loadSafetensors,
  type SafeTensor,
  saveSafetensors,
  toFloats,
} from "../io/safetensors.ts";
import type { VideoModel } from "../model/base.ts";
import { loadStateDict, stateDict } from "../model/state.ts";
import { readFloats, writeTensor } from "../tensor.ts";
import type { AdamW } from "./adamw.ts";
import { formatChanges, requireSameRun } from "./resume_check.ts";

export interface CheckpointState {
  version: 1;
  step: number;
  epoch: number;
  optimizerStep: number;
  /** The configuration the run was started with. */
  config: unknown;
  /** The data loader's position, to continue the same stream. */
  data: unknown;
  /** RNG states by name. */
  rng: Record<string, (number | null)[]>;
  /** Last logged figures, for humans. */
  metrics: Record<string, number>;
}

const PREFIX = "step-";

function stepDir(dir: string, step: number): string {
  return `${dir}/${PREFIX}${String(step).padStart(8, "0")}`;
}

/** Writes a checkpoint for `state.step` into `dir`, atomically; returns its folder. */
export async function saveCheckpoint(
  dir: string,
  model: VideoModel,
  opt: AdamW,
  state: CheckpointState,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const final = stepDir(dir, state.step);
  const tmp = `${final}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp);
  const moments = new Map<string, SafeTensor>();
  for (const p of model.store.params) {
    moments.set(`exp_avg.${p.name}`, fromFloats(readFloats(opt.m.sub(p.offset, p.shape)), [...p.shape]));
    moments.set(`exp_avg_sq.${p.name}`, fromFloats(readFloats(opt.v.sub(p.offset, p.shape)), [...p.shape]));
  }
  await saveSafetensors(`${tmp}/model.safetensors`, stateDict(model), { format: "pt" });
  await saveSafetensors(`${tmp}/optimizer.safetensors`, moments);
  await Deno.writeTextFile(`${tmp}/state.json`, JSON.stringify(state, null, 1));
  await Deno.remove(final, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, final);
  return final;
}

/** Complete checkpoint folders in `dir`, oldest first. */
export function listCheckpoints(dir: string): { step: number; path: string }[] {
  const out: { step: number; path: string }[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      const m = e.isDirectory && e.name.match(/^step-(\d+)$/);
      if (m) out.push({ step: Number(m[1]), path: `${dir}/${e.name}` });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.step - b.step);
}

/** Removes all but the newest `keep` checkpoints and any temporary folder a crash left behind. */
export async function pruneCheckpoints(dir: string, keep: number): Promise<void> {
  const all = listCheckpoints(dir);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) {
    await Deno.remove(c.path, { recursive: true });
  }
  for (const e of Deno.readDirSync(dir)) {
    if (e.isDirectory && /^step-\d+\.tmp-\d+$/.test(e.name)) {
      const pid = Number(e.name.split("tmp-")[1]);
      if (pid !== Deno.pid) await Deno.remove(`${dir}/${e.name}`, { recursive: true }).catch(() => {});
    }
  }
}

/**
 * Restores weights and AdamW moments from a checkpoint folder and returns its state. With `config`, a
 * configuration that differs from the checkpoint's is refused first, naming the keys (ConfigChangedError).
 * Anything missing, truncated or of the wrong shape is refused with the folder named.
 */
export async function loadCheckpoint(
  path: string,
  model: VideoModel,
  opt: AdamW,
  opts: { config?: unknown; say?: (m: string) => void } = {},
): Promise<CheckpointState> {
  const refuse = (why: string) =>
    new Error(
      `Checkpoint ${path} is corrupt or incomplete: ${why}. Move it out of its folder to resume from an ` +
        `earlier checkpoint, or give a new output folder to start afresh.`,
    );
  let state: CheckpointState;
  try {
    state = JSON.parse(await Deno.readTextFile(`${path}/state.json`));
  } catch (e) {
    throw refuse(`state.json cannot be read (${(e as Error).message})`);
  }
  if (state?.version !== 1 || !Number.isInteger(state.step) || !Number.isInteger(state.optimizerStep)) {
    throw refuse("state.json lacks a version 1 step and optimizer step");
  }
  // A changed configuration, not damage, is the likely reason for tensors that do not fit: say so first.
  if (opts.config !== undefined) {
    const recovery = requireSameRun(path, state.config, opts.config);
    if (recovery.length > 0) opts.say?.(`resuming with ${formatChanges(recovery)}`);
  }
  let weights, moments;
  try {
    weights = await loadSafetensors(`${path}/model.safetensors`);
    moments = await loadSafetensors(`${path}/optimizer.safetensors`);
  } catch (e) {
    throw refuse((e as Error).message);
  }
  try {
    loadStateDict(model, weights.tensors, { source: `${path}/model.safetensors` });
  } catch (e) {
    throw refuse((e as Error).message);
  }
  for (const p of model.store.params) {
    for (const [kind, buf] of [["exp_avg", opt.m], ["exp_avg_sq", opt.v]] as const) {
      const t = moments.tensors.get(`${kind}.${p.name}`);
      if (!t || t.shape.join() !== p.shape.join()) {
        throw refuse(`optimizer.safetensors lacks ${kind}.${p.name} of shape [${p.shape}]`);
      }
      writeTensor(buf.sub(p.offset, p.shape), toFloats(t, `${kind}.${p.name}`));
    }
  }
  opt.step = state.optimizerStep;
  return state;
}
