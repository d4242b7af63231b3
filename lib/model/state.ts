/** Moving weights between a model and PyTorch-named tensors (safetensors files). */
import { fromFloats, type SafeTensor, toFloats } from "../io/safetensors.ts";
import type { VideoModel } from "./base.ts";

/**
 * The model's state dict with V-SWIFT's names: every parameter's f32 master value, plus the position
 * buffers V-SWIFT registers (so PyTorch's strict load_state_dict accepts the file).
 */
export function stateDict(
  model: VideoModel,
  opts: { dtype?: "F32" | "BF16"; buffers?: boolean } = {},
): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  for (const p of model.store.params) {
    out.set(p.name, fromFloats(model.store.readMaster(p), [...p.shape], opts.dtype));
  }
  if (opts.buffers ?? true) {
    for (const b of model.buffers()) out.set(b.name, fromFloats(b.values, b.shape, opts.dtype));
  }
  return out;
}

export interface LoadReport {
  loaded: string[];
  /** Parameters with no tensor in the source. */
  missing: string[];
  /** Source tensors that name no parameter or buffer. */
  unexpected: string[];
}

/**
 * Copies tensors into the model's parameters. Shapes must match exactly. With `strict` (the default)
 * missing and unexpected names are errors too; without it they are only reported. Position buffers
 * are fixed tables: they are accepted when their shape matches and otherwise ignored.
 */
export function loadStateDict(
  model: VideoModel,
  tensors: Map<string, SafeTensor>,
  opts: { strict?: boolean; source?: string } = {},
): LoadReport {
  const strict = opts.strict ?? true;
  const source = opts.source ?? "the state dict";
  const buffers = new Map(model.buffers().map((b) => [b.name, b.shape]));
  const report: LoadReport = { loaded: [], missing: [], unexpected: [] };
  const misshaped: string[] = [];
  for (const p of model.store.params) {
    const t = tensors.get(p.name);
    if (!t) {
      report.missing.push(p.name);
      continue;
    }
    if (t.shape.join() !== p.shape.join()) {
      misshaped.push(`${p.name}: [${t.shape.join(", ")}] in ${source}, [${p.shape.join(", ")}] in the model`);
    }
  }
  for (const [name, t] of tensors) {
    if (model.store.get(name)) continue;
    const shape = buffers.get(name);
    if (shape) {
      if (shape.join() !== t.shape.join()) {
        misshaped.push(`${name}: [${t.shape.join(", ")}] in ${source}, [${shape.join(", ")}] in the model`);
      }
      continue;
    }
    report.unexpected.push(name);
  }
  const problems: string[] = [];
  if (misshaped.length) problems.push(`mis-shaped tensors:\n  ${misshaped.join("\n  ")}`);
  if (strict && report.missing.length) problems.push(`missing tensors: ${report.missing.join(", ")}`);
  if (strict && report.unexpected.length) {
    problems.push(`unexpected tensors: ${report.unexpected.join(", ")}`);
  }
  if (problems.length) {
    throw new Error(`Cannot load ${source} into the ${model.config.name} model: ${problems.join("; ")}`);
  }
  for (const p of model.store.params) {
    const t = tensors.get(p.name);
    if (!t) continue;
    model.store.setMaster(p, toFloats(t, p.name));
    report.loaded.push(p.name);
  }
  model.store.syncCompute();
  return report;
}
