/**
 * Typed configuration sections for the command-line tasks: a schema of leaves (integer, number, bool,
 * string, number list) per `section.key`, a YAML file merged over defaults, then `--section.key value`
 * overrides. Unknown keys and bad values are errors naming the key, the value and where it came from.
 * Both lib/train/pretrain/config.ts (pretraining) and lib/train/finetune/config.ts are schemas over these rules.
 */
import { parse as parseYaml } from "yaml";
import type { DeviceChoice } from "../ffi/native.ts";

export type Leaf =
  | { type: "int"; min: number; max?: number }
  | { type: "number"; min: number; max?: number; exclusiveMin?: boolean; exclusiveMax?: boolean }
  | { type: "bool" }
  | { type: "string"; choices?: string[] }
  | {
    type: "numbers";
    length: number;
    min?: number;
    max?: number;
    exclusiveMin?: boolean;
    exclusiveMax?: boolean;
  };

/** Leaves by section and key. */
export type Schema = Record<string, Record<string, Leaf>>;

export const int = (min: number, max?: number): Leaf => ({ type: "int", min, max });
export const num = (min: number, extra: Partial<Extract<Leaf, { type: "number" }>> = {}): Leaf => ({
  type: "number",
  min,
  ...extra,
});
export const bool: Leaf = { type: "bool" };
export const str = (choices?: string[]): Leaf => ({ type: "string", choices });
/** The train.device leaf of both tasks: the devices a run can ask for. */
export const device: Leaf = str(["auto", "host", "cuda", "cuda-sim"] satisfies DeviceChoice[]);
export const numbers = (
  length: number,
  extra: Partial<Extract<Leaf, { type: "numbers" }>> = {},
): Leaf => ({ type: "numbers", length, ...extra });

function describe(leaf: Leaf): string {
  switch (leaf.type) {
    case "int":
      return `an integer >= ${leaf.min}${leaf.max !== undefined ? ` and <= ${leaf.max}` : ""}`;
    case "number":
      return `a number ${leaf.exclusiveMin ? ">" : ">="} ${leaf.min}${
        leaf.max !== undefined ? ` and ${leaf.exclusiveMax ? "<" : "<="} ${leaf.max}` : ""
      }`;
    case "bool":
      return "true or false";
    case "string":
      return leaf.choices ? `one of ${leaf.choices.join(", ")}` : "a string";
    case "numbers":
      return `a list of ${leaf.length} numbers${
        leaf.min !== undefined
          ? ` in ${leaf.exclusiveMin ? "(" : "["}${leaf.min}, ${leaf.max ?? "inf"}${
            leaf.exclusiveMax ? ")" : "]"
          }`
          : ""
      } (on the command line: 0.4,1)`;
  }
}

function fromString(leaf: Leaf, raw: string): unknown {
  switch (leaf.type) {
    case "int":
    case "number":
      return raw.trim() === "" ? NaN : Number(raw);
    case "bool":
      return raw === "true" ? true : raw === "false" ? false : raw;
    case "string":
      return raw;
    case "numbers":
      // "0.4,1" or, as YAML writes it, "[0.4, 1]".
      return raw.trim().replace(/^\[(.*)\]$/, "$1").split(",").map((
        v,
      ) => (v.trim() === "" ? NaN : Number(v)));
  }
}

function check(leaf: Leaf, v: unknown): boolean {
  switch (leaf.type) {
    case "int":
      return Number.isInteger(v) && (v as number) >= leaf.min &&
        (leaf.max === undefined || (v as number) <= leaf.max);
    case "number": {
      if (typeof v !== "number" || !Number.isFinite(v)) return false;
      if (leaf.exclusiveMin ? v <= leaf.min : v < leaf.min) return false;
      return leaf.max === undefined || (leaf.exclusiveMax ? v < leaf.max : v <= leaf.max);
    }
    case "bool":
      return typeof v === "boolean";
    case "string":
      return typeof v === "string" && (!leaf.choices || leaf.choices.includes(v));
    case "numbers":
      return Array.isArray(v) && v.length === leaf.length &&
        v.every((x) =>
          typeof x === "number" && Number.isFinite(x) &&
          (leaf.min === undefined || (leaf.exclusiveMin ? x > leaf.min : x >= leaf.min)) &&
          (leaf.max === undefined || (leaf.exclusiveMax ? x < leaf.max : x <= leaf.max))
        );
  }
}

/** Sets `section.key` after checking it against the schema. */
export function setKey(
  cfg: object,
  schema: Schema,
  path: string,
  value: unknown,
  source: string,
  fromCli: boolean,
): void {
  const [section, key, ...rest] = path.split(".");
  const sec = schema[section];
  if (!sec || !key || rest.length) {
    throw new Error(
      `Unknown config key "${path}" (${source}); sections are ${Object.keys(schema).join(", ")}`,
    );
  }
  const leaf = sec[key];
  if (!leaf) {
    throw new Error(
      `Unknown config key "${path}" (${source}); ${section} has ${Object.keys(sec).join(", ")}`,
    );
  }
  const v = fromCli && typeof value === "string" ? fromString(leaf, value) : value;
  if (!check(leaf, v)) {
    throw new Error(`Config ${path} must be ${describe(leaf)}, got ${JSON.stringify(value)} (${source})`);
  }
  (cfg as Record<string, Record<string, unknown>>)[section][key] = v;
}

/** Merges a parsed YAML document into the config; `source` names the file in errors. */
export function applyYamlDoc(cfg: object, schema: Schema, doc: unknown, source: string): void {
  if (doc === null || doc === undefined) return;
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error(`${source} must hold a mapping of sections`);
  }
  for (const [section, body] of Object.entries(doc as Record<string, unknown>)) {
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new Error(`Config section "${section}" in ${source} must be a mapping`);
    }
    for (const [key, value] of Object.entries(body)) {
      setKey(cfg, schema, `${section}.${key}`, value, source, false);
    }
  }
}

/** Applies `--section.key value` / `--section.key=value` pairs (a bare `--section.flag` means true). */
export function applyCliOverrides(cfg: object, schema: Schema, args: string[]): void {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) {
      throw new Error(`Unexpected argument "${a}"; overrides look like --optim.lr 1e-4`);
    }
    const eq = a.indexOf("=");
    const path = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    let value: string;
    if (eq >= 0) value = a.slice(eq + 1);
    else if (i + 1 < args.length && !args[i + 1].startsWith("--")) value = args[++i];
    else value = "true";
    setKey(cfg, schema, path, value, "command line", true);
  }
}

/** Whether command-line overrides `args` set `key` ("data.list" for --data.list X or --data.list=X). */
export function overrides(args: string[], key: string): boolean {
  return args.some((a) => a === `--${key}` || a.startsWith(`--${key}=`));
}

/** Reads and parses a YAML file, with errors naming it. */
export async function readYamlFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`Cannot read config file ${path}: ${(e as Error).message}`);
  }
  try {
    return parseYaml(text);
  } catch (e) {
    throw new Error(`Config file ${path} is not valid YAML: ${(e as Error).message}`);
  }
}
