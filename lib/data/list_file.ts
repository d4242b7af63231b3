/**
 * Dataset list files. One video per line, in any of four formats (V-SWIFT's three, VideoMAE's one):
 *
 *   path,label                                  (comma: exactly two fields; V-SWIFT's csv)
 *   path label                                  (VideoMAE v1)
 *   path label start_frame end_frame            (V-SWIFT)
 *   source_video path label start_frame end_frame num_frames   (V-SWIFT)
 *
 * Paths are joined with the data root unless absolute. Empty lines and lines starting with # are
 * skipped. In the 4-field format start/end are inclusive frame indices of the segment inside the file
 * and the loader samples from that segment only (V-SWIFT parses and ignores them). In the 6-field format
 * the file is a piece cut from the source video: start/end say where it sits in the source and
 * num_frames is the piece's frame count; the whole file is used. Any other line is an error naming the
 * file and the line.
 */

export interface ListEntry {
  /** The file to decode (joined with the data root). */
  path: string;
  label: number;
  /** The source video the entry was cut from (6-field format), else the path as written. */
  source: string;
  /** First and last frame (inclusive) of the segment inside the file to sample from (4-field format). */
  start?: number;
  end?: number;
  /** Where the file sits in its source video (6-field format), inclusive frame indices. */
  sourceStart?: number;
  sourceEnd?: number;
  /** The file's frame count as the list states it (6-field format). */
  frames?: number;
  /** Where the entry came from, for messages: "file:line". */
  origin: string;
}

export type ListFormat = "csv" | "path-label" | "range" | "source-range";

function joinRoot(root: string | undefined, p: string): string {
  if (!root || p.startsWith("/")) return p;
  return root.endsWith("/") ? root + p : `${root}/${p}`;
}

function parseNonNegativeInt(s: string, what: string, where: string, line: string): number {
  if (!/^\d+$/.test(s)) {
    throw new ListFileError(
      `${where}: ${what} "${s}" is not a non-negative integer in "${line}"; fix the line or remove it`,
    );
  }
  const v = Number(s);
  if (!Number.isSafeInteger(v)) {
    throw new ListFileError(`${where}: ${what} "${s}" is too large in "${line}"`);
  }
  return v;
}

/** A malformed list file line. */
export class ListFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ListFileError";
  }
}

/** Parses one non-empty line; `where` is "file:line" for messages. */
export function parseListLine(line: string, where: string, dataRoot?: string): ListEntry {
  const expected =
    "expected 'path,label', 'path label', 'path label start end' or 'source path label start end frames'";
  const num = (s: string, what: string) => parseNonNegativeInt(s.trim(), what, where, line);
  if (line.includes(",")) {
    const fields = line.split(",");
    if (fields.length !== 2 || fields[0].trim() === "") {
      throw new ListFileError(`${where}: ${fields.length} comma-separated fields in "${line}"; ${expected}`);
    }
    const p = fields[0].trim();
    return { path: joinRoot(dataRoot, p), source: p, label: num(fields[1], "label"), origin: where };
  }
  const f = line.trim().split(/\s+/);
  let e: ListEntry;
  switch (f.length) {
    case 2:
      e = { path: joinRoot(dataRoot, f[0]), source: f[0], label: num(f[1], "label"), origin: where };
      break;
    case 4:
      e = {
        path: joinRoot(dataRoot, f[0]),
        source: f[0],
        label: num(f[1], "label"),
        start: num(f[2], "start frame"),
        end: num(f[3], "end frame"),
        origin: where,
      };
      break;
    case 6:
      e = {
        source: f[0],
        path: joinRoot(dataRoot, f[1]),
        label: num(f[2], "label"),
        sourceStart: num(f[3], "start frame"),
        sourceEnd: num(f[4], "end frame"),
        frames: num(f[5], "frame count"),
        origin: where,
      };
      break;
    default:
      throw new ListFileError(`${where}: ${f.length} space-separated fields in "${line}"; ${expected}`);
  }
  const [a, b] = [e.start ?? e.sourceStart, e.end ?? e.sourceEnd];
  if (a !== undefined && b !== undefined && b < a) {
    throw new ListFileError(`${where}: end frame ${b} is before start frame ${a} in "${line}"`);
  }
  return e;
}

/** Parses the text of a list file. */
export function parseList(text: string, opts: { file?: string; dataRoot?: string } = {}): ListEntry[] {
  const file = opts.file ?? "<list>";
  const out: ListEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue;
    out.push(parseListLine(line, `${file}:${i + 1}`, opts.dataRoot));
  }
  return out;
}

/** Reads and parses a list file; an empty list is an error. */
export async function readList(file: string, dataRoot?: string): Promise<ListEntry[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new ListFileError(`Cannot read the list file ${file}: ${(e as Error).message}`);
  }
  const entries = parseList(text, { file, dataRoot });
  if (entries.length === 0) throw new ListFileError(`The list file ${file} has no entries`);
  return entries;
}

/** Formats an entry as a line of the given format (paths as given, relative to the data root). */
export function formatListLine(
  format: ListFormat,
  e: {
    path: string;
    label: number;
    source?: string;
    start?: number;
    end?: number;
    sourceStart?: number;
    sourceEnd?: number;
    frames?: number;
  },
): string {
  switch (format) {
    case "csv":
      return `${e.path},${e.label}`;
    case "path-label":
      return `${e.path} ${e.label}`;
    case "range":
      return `${e.path} ${e.label} ${e.start ?? 0} ${e.end ?? 0}`;
    case "source-range":
      return `${e.source ?? e.path} ${e.path} ${e.label} ${e.sourceStart ?? 0} ${e.sourceEnd ?? 0} ${
        e.frames ?? 0
      }`;
  }
}
