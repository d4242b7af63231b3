/**
 * Starting a fine-tune from saved weights, by V-SWIFT's rules (spec §1.4): a pretraining checkpoint of
 * ours (a checkpoint folder or a safetensors file) or a PyTorch VideoMAE / V-SWIFT .pth file; the state
 * dict is the first of "model" / "module" present; `_orig_mod.` prefixes (torch.compile) go first, then
 * the head is kept, row-sliced (710 classes into 400/600/700) or dropped when its shape differs, then
 * `backbone.` / `encoder.` prefixes go. The load is non-strict: missing and unexpected names are reported.
 */
import { loadSafetensors, type SafeTensor, toFloats } from "../io/safetensors.ts";
import { openPth, stateDictOf, toSafeTensors } from "../io/pth.ts";
import type { VideoClassifier } from "./classifier.ts";

/** What a load did. */
export interface PretrainedReport {
  source: string;
  format: "safetensors" | "pth";
  /** The checkpoint key the state dict came from ("model", "module"), if any. */
  key?: string;
  loaded: string[];
  /** Parameters of the model the source does not provide (they keep their initialisation). */
  missing: string[];
  /** Source tensors that name nothing in the model (decoder, encoder.norm, ...). */
  unexpected: string[];
  /** Source tensors set aside on purpose, with the reason (a head of another size, position tables). */
  ignored: { name: string; why: string }[];
  /** Set when a 710-class head was row-sliced. */
  headMapped?: string;
}

export interface ReadWeightsOptions {
  /** Checkpoint keys tried in order (V-SWIFT's --model_key "model|module"). */
  modelKeys?: readonly string[];
}

/** True for names of PyTorch checkpoint files. */
export function isPthPath(path: string): boolean {
  return /\.(pth|pt|bin|ckpt|tar)$/i.test(path);
}

/**
 * The tensors of a weights file: a checkpoint folder of ours (its model.safetensors), a safetensors file,
 * or a PyTorch checkpoint (zip or legacy format, read without Python).
 */
export async function readWeights(
  path: string,
  opts: ReadWeightsOptions = {},
): Promise<
  { tensors: Map<string, SafeTensor>; format: "safetensors" | "pth"; key?: string; source: string }
> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    throw new Error(`Cannot read the weights ${path}: ${(e as Error).message}`);
  }
  if (stat.isDirectory) {
    const file = `${path.replace(/\/+$/, "")}/model.safetensors`;
    return { tensors: (await loadSafetensors(file)).tensors, format: "safetensors", source: file };
  }
  const head = new Uint8Array(8);
  const f = await Deno.open(path);
  await f.read(head);
  f.close();
  // safetensors starts with a little-endian header length, then "{".
  const isSafetensors = path.endsWith(".safetensors") ||
    (!isPthPath(path) && head[0] !== 0x50 && head[0] !== 0x80);
  if (isSafetensors) {
    return { tensors: (await loadSafetensors(path)).tensors, format: "safetensors", source: path };
  }
  const ckpt = openPth(path);
  try {
    const sd = stateDictOf(ckpt.root, opts.modelKeys ?? ["model", "module"], path);
    return { tensors: toSafeTensors(sd.tensors), format: "pth", key: sd.key, source: path };
  } finally {
    ckpt.close();
  }
}

/** `name` without the first of `prefixes` it starts with. */
function strip(name: string, prefixes: readonly string[]): string {
  for (const p of prefixes) if (name.startsWith(p)) return name.slice(p.length);
  return name;
}

/**
 * Renames a state dict by V-SWIFT's fine-tuning rules, keeping insertion order: `_orig_mod.` anywhere in
 * a name, then a leading `backbone.` or `encoder.`. When two names collide (a pretraining checkpoint's
 * decoder `pos_embed` and `encoder.pos_embed`), the one that had the prefix wins: V-SWIFT keeps the later
 * one, which in PyTorch's state-dict order is the encoder's, but a safetensors file has no order. The
 * loser is returned in `dropped`.
 */
export function vswiftRename(tensors: Map<string, SafeTensor>): {
  tensors: Map<string, SafeTensor>;
  dropped: { name: string; why: string }[];
} {
  const out = new Map<string, SafeTensor>();
  const from = new Map<string, { name: string; prefixed: boolean }>();
  const dropped: { name: string; why: string }[] = [];
  for (const [name, t] of tensors) {
    const bare = name.replaceAll("_orig_mod.", "");
    const renamed = strip(bare, ["backbone.", "encoder."]);
    const prefixed = renamed !== bare;
    const prev = from.get(renamed);
    if (prev !== undefined) {
      if (prev.prefixed && !prefixed) {
        dropped.push({ name, why: `${prev.name} also maps to ${renamed} and wins (the encoder's)` });
        continue;
      }
      dropped.push({ name: prev.name, why: `${name} also maps to ${renamed} and wins` });
      out.delete(renamed);
    }
    out.set(renamed, t);
    from.set(renamed, { name, prefixed });
  }
  return { tensors: out, dropped };
}

export interface LoadPretrainedOptions extends ReadWeightsOptions {
  /**
   * For a 710-class head loaded into a 400/600/700-class model: entry i is the 710-class row of class i
   * (V-SWIFT's misc/label_710to*.json). Without it such a head is dropped.
   */
  headMap?: number[];
  /** Name of the map for the report. */
  headMapSource?: string;
}

/** Loads tensors into the classifier by V-SWIFT's rules (see the module comment). */
export function loadIntoClassifier(
  model: VideoClassifier,
  source: Map<string, SafeTensor>,
  opts: LoadPretrainedOptions & { source?: string; format?: "safetensors" | "pth"; key?: string } = {},
): PretrainedReport {
  const report: PretrainedReport = {
    source: opts.source ?? "the state dict",
    format: opts.format ?? "safetensors",
    key: opts.key,
    loaded: [],
    missing: [],
    unexpected: [],
    ignored: [],
  };
  // 1. torch.compile's prefix, anywhere in the name.
  const noCompile = new Map<string, SafeTensor>();
  for (const [k, t] of source) noCompile.set(k.replaceAll("_orig_mod.", ""), t);
  // 2. The head: kept when its shape fits, row-sliced from 710 classes, or dropped.
  const classes = model.numClasses;
  for (const headName of ["head.weight", "head.bias"]) {
    const t = noCompile.get(headName);
    if (!t || t.shape[0] === classes) continue;
    if (t.shape[0] === 710 && [400, 600, 700].includes(classes) && opts.headMap) {
      noCompile.set(headName, sliceRows(t, opts.headMap, headName));
      report.headMapped = opts.headMapSource ?? "the given head map";
    } else {
      noCompile.delete(headName);
      report.ignored.push({
        name: headName,
        why: t.shape[0] === 710 && [400, 600, 700].includes(classes)
          ? `a 710-class head needs a label map (label_710to${classes}.json) to become a ${classes}-class one`
          : `shape [${t.shape.join(", ")}] does not fit the model's ${classes}-class head`,
      });
    }
  }
  // 3. backbone. / encoder. prefixes.
  const { tensors, dropped } = vswiftRename(noCompile);
  report.ignored.push(...dropped);
  // 4. Non-strict load: shapes must match; position tables are fixed sinusoids recomputed by the model.
  const misshaped: string[] = [];
  for (const [name, t] of tensors) {
    const p = model.store.get(name);
    if (!p) {
      if (name === "pos_embed") {
        report.ignored.push({ name, why: "the position table is a fixed sinusoid the model computes" });
      } else report.unexpected.push(name);
      continue;
    }
    if (t.shape.join() !== p.shape.join()) {
      misshaped.push(`${name}: [${t.shape.join(", ")}] in the source, [${p.shape.join(", ")}] in the model`);
    }
  }
  if (misshaped.length) {
    throw new Error(
      `Cannot load ${report.source} into the ${model.config.name} classifier: mis-shaped tensors:\n  ${
        misshaped.join("\n  ")
      }`,
    );
  }
  // A source that matches nothing is a wrong file, not a start: training on would be from scratch.
  if (!model.store.params.some((p) => tensors.has(p.name))) {
    const names = [...source.keys()];
    const seen = names.length
      ? `its ${names.length} tensors (${names.slice(0, 4).join(", ")}${names.length > 4 ? ", ..." : ""})`
      : "it holds no tensors";
    const ignored = report.ignored.map((i) => `\n  ignored ${i.name}: ${i.why}`).join("");
    throw new Error(
      `${report.source} matches none of the ${model.store.params.length} tensors of the ${model.config.name} ` +
        `classifier: ${seen}; give a VideoMAE / V-SWIFT checkpoint of this model${ignored}`,
    );
  }
  for (const p of model.store.params) {
    const t = tensors.get(p.name);
    if (!t) {
      report.missing.push(p.name);
      continue;
    }
    model.store.setMaster(p, toFloats(t, p.name));
    report.loaded.push(p.name);
  }
  model.store.syncCompute();
  return report;
}

/** Rows `map` of a (710, ...) tensor, in the map's order. */
function sliceRows(t: SafeTensor, map: number[], name: string): SafeTensor {
  const rows = t.shape[0];
  const rowBytes = t.data.length / rows;
  const out = new Uint8Array(map.length * rowBytes);
  map.forEach((r, i) => {
    if (!(r >= 0 && r < rows)) throw new RangeError(`${name}: head map row ${r} is outside [0, ${rows})`);
    out.set(t.data.subarray(r * rowBytes, (r + 1) * rowBytes), i * rowBytes);
  });
  return { dtype: t.dtype, shape: [map.length, ...t.shape.slice(1)], data: out };
}

/** readWeights then loadIntoClassifier. */
export async function loadPretrained(
  model: VideoClassifier,
  path: string,
  opts: LoadPretrainedOptions = {},
): Promise<PretrainedReport> {
  const w = await readWeights(path, opts);
  return loadIntoClassifier(model, w.tensors, { ...opts, source: w.source, format: w.format, key: w.key });
}

/** A few lines for the log: what was loaded, missing, unexpected and ignored. */
export function formatReport(r: PretrainedReport): string {
  const list = (
    a: string[],
  ) => (a.length > 8 ? `${a.slice(0, 8).join(", ")}, ... (${a.length})` : a.join(", "));
  const lines = [
    `loaded ${r.loaded.length} tensors from ${r.source}${r.key ? ` (key "${r.key}")` : ""}`,
  ];
  if (r.headMapped) lines.push(`  head: 710 classes row-sliced with ${r.headMapped}`);
  if (r.missing.length) lines.push(`  missing (kept as initialised): ${list(r.missing)}`);
  if (r.unexpected.length) lines.push(`  unexpected (not used): ${list(r.unexpected)}`);
  for (const i of r.ignored) lines.push(`  ignored ${i.name}: ${i.why}`);
  return lines.join("\n");
}
