/**
 * Reads back the per-video file of a multi-view test (`test/test_per_video.csv` under a fine-tuning run,
 * written by lib/train/finetune/tta.ts): one row per video with its label, prediction and top-5.
 */
import { TEST_CSV_HEADER } from "../train/finetune/tta.ts";

export interface TestRow {
  video: number;
  path: string;
  /** Class names as written (numbers when the run had no names). */
  label: string;
  prediction: string;
  correct1: boolean;
  correct5: boolean;
  views: number;
  top5: string[];
  top5Probs: number[];
}

/** Splits one CSV line, with double-quoted fields and "" inside them. */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') cur += line[++i];
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Parses a test_per_video.csv text; `source` names it in errors. */
export function parseTestResults(text: string, source = "test_per_video.csv"): TestRow[] {
  const lines = text.split("\n").filter((l) => l.length > 0);
  if (lines[0] !== TEST_CSV_HEADER) {
    throw new Error(
      `${source} does not start with the header "${TEST_CSV_HEADER}" (got "${lines[0] ?? ""}")`,
    );
  }
  return lines.slice(1).map((line, i) => {
    const f = splitCsvLine(line);
    if (f.length !== 9) throw new Error(`${source} line ${i + 2} has ${f.length} fields, expected 9`);
    return {
      video: Number(f[0]),
      path: f[1],
      label: f[2],
      prediction: f[3],
      correct1: f[4] === "1",
      correct5: f[5] === "1",
      views: Number(f[6]),
      top5: f[7].split(" | "),
      top5Probs: f[8].split(" ").map(Number),
    };
  });
}

/** Reads a test_per_video.csv file (a fine-tuning run's `<output>/test/test_per_video.csv`). */
export async function readTestResults(path: string): Promise<TestRow[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`Cannot read the test results ${path}: ${(e as Error).message}`);
  }
  return parseTestResults(text, path);
}
