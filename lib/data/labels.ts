/**
 * Classification datasets: class counts as V-SWIFT checks them (--data_set / --nb_classes), label names
 * read from the usual files, and the Kinetics-710 head mapping (a 710-class head row-sliced into a
 * Kinetics-400/600/700 one, spec §1.4).
 */
import { MOTION_CLASSES } from "./synthetic.ts";

/** Classes per dataset name (V-SWIFT's table, plus the generated motion dataset). */
export const DATASET_CLASSES: Readonly<Record<string, number>> = {
  "SSV2": 174,
  "Kinetics-400": 400,
  "Kinetics-600": 600,
  "Kinetics-700": 700,
  "Kinetics-710": 710,
  "UCF101": 101,
  "HMDB51": 51,
  "Diving48": 48,
  "MIT": 339,
  "shapes": MOTION_CLASSES.length,
};

const ALIASES: Record<string, string> = {
  ssv2: "SSV2",
  "something-something-v2": "SSV2",
  k400: "Kinetics-400",
  k600: "Kinetics-600",
  k700: "Kinetics-700",
  k710: "Kinetics-710",
  ucf101: "UCF101",
  hmdb51: "HMDB51",
  diving48: "Diving48",
  mit: "MIT",
  "moments-in-time": "MIT",
};

/** The canonical dataset name for a name or alias ("k400" -> "Kinetics-400"); throws for unknown ones. */
export function datasetName(name: string): string {
  if (DATASET_CLASSES[name] !== undefined) return name;
  const hit = ALIASES[name.toLowerCase()] ??
    Object.keys(DATASET_CLASSES).find((k) => k.toLowerCase() === name.toLowerCase());
  if (!hit) {
    throw new RangeError(`Unknown dataset "${name}"; known: ${Object.keys(DATASET_CLASSES).join(", ")}`);
  }
  return hit;
}

/** Classes of a dataset (174 for SSV2, ...). */
export function classCount(name: string): number {
  return DATASET_CLASSES[datasetName(name)];
}

/**
 * Label names from a file: one name per line (label i on line i), a JSON array, or a JSON object
 * mapping names to indices (Something-Something v2's labels file: {"Holding something": "0", ...}).
 */
export function readLabelNames(path: string, classes?: number): string[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new Error(`Cannot read the label names ${path}: ${(e as Error).message}`);
  }
  let names: string[];
  const trimmed = text.trim();
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    const doc = JSON.parse(trimmed);
    if (Array.isArray(doc)) names = doc.map(String);
    else {
      names = [];
      for (const [name, idx] of Object.entries(doc as Record<string, unknown>)) {
        const i = Number(idx);
        if (!Number.isInteger(i) || i < 0) throw new Error(`${path}: label "${name}" has index ${idx}`);
        names[i] = name;
      }
      const hole = names.findIndex((n) => n === undefined);
      if (hole >= 0 || names.length === 0) throw new Error(`${path}: no name for label ${Math.max(hole, 0)}`);
    }
  } else names = trimmed.split(/\r?\n/).map((l) => l.trim());
  if (classes !== undefined && names.length !== classes) {
    throw new Error(`${path} names ${names.length} labels; the model has ${classes} classes`);
  }
  return names;
}

/**
 * A Kinetics-710 to Kinetics-400/600/700 head map: a JSON array whose entry i is the K710 row of class
 * i of the smaller set (V-SWIFT's misc/label_710to{400,600,700}.json). Checked for length and range.
 */
export function readHeadMap(path: string, classes: number, from = 710): number[] {
  let doc: unknown;
  try {
    doc = JSON.parse(Deno.readTextFileSync(path));
  } catch (e) {
    throw new Error(`Cannot read the head map ${path}: ${(e as Error).message}`);
  }
  return checkHeadMap(doc, classes, from, path);
}

/** Validates a head map: `classes` distinct integers in [0, from). */
export function checkHeadMap(doc: unknown, classes: number, from: number, source = "the head map"): number[] {
  if (!Array.isArray(doc) || doc.length !== classes) {
    throw new Error(
      `${source} must be a JSON array of ${classes} row indices, got ${
        Array.isArray(doc) ? `${doc.length} entries` : typeof doc
      }`,
    );
  }
  const seen = new Set<number>();
  return doc.map((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v >= from || seen.has(v)) {
      throw new Error(`${source}: entry ${i} is ${v}; entries must be distinct integers in [0, ${from})`);
    }
    seen.add(v);
    return v;
  });
}

/** The canonical file name of the map from 710 classes to `classes` (400, 600 or 700). */
export function headMapFileName(classes: number): string {
  return `label_710to${classes}.json`;
}
