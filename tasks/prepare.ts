/**
 * `deno task prepare --list videos.csv --data-root videos --out prepared`: cuts every video into 3 s chunks
 * with the short side resized to 256 (V-SWIFT's preparation), writing prepared/chunks/ and
 * prepared/list.txt (`source chunk label start end frames`). Parallel, resumable (rerun the same command),
 * with progress on stderr.
 */
import { readList } from "../lib/data/list_file.ts";
import { prepareDataset } from "../lib/data/prepare.ts";
import { parseFlags } from "../lib/task_cli.ts";

const usage =
  "usage: deno task prepare --list LIST --out DIR [--data-root DIR] [--chunk 3] [--short-side 256] " +
  "[--codec libx264] [--format mp4] [--crf 23] [--preset veryfast] [--keyint SECONDS] [--min-seconds S] [--workers N]";
const { values: a } = parseFlags("deno task prepare", usage, {
  options: {
    list: { type: "string" },
    "data-root": { type: "string" },
    out: { type: "string" },
    chunk: { type: "string", default: "3" },
    "short-side": { type: "string", default: "256" },
    codec: { type: "string", default: "libx264" },
    format: { type: "string", default: "mp4" },
    crf: { type: "string", default: "23" },
    preset: { type: "string", default: "veryfast" },
    keyint: { type: "string" },
    "min-seconds": { type: "string" },
    workers: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (a.help || !a.list || !a.out) {
  console.error(usage);
  Deno.exit(a.help ? 0 : 2);
}
const num = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(n > 0)) {
    console.error(`--${name} takes a positive number, got "${v}"`);
    Deno.exit(2);
  }
  return n;
};
const entries = await readList(a.list, a["data-root"]);
const started = performance.now();
const result = await prepareDataset({
  entries,
  out: a.out,
  chunkSeconds: num("chunk", a.chunk),
  shortSide: num("short-side", a["short-side"]),
  codec: a.codec,
  format: a.format,
  crf: num("crf", a.crf),
  preset: a.preset,
  keyframeSeconds: num("keyint", a.keyint),
  minSeconds: a["min-seconds"] === undefined ? undefined : Number(a["min-seconds"]),
  workers: num("workers", a.workers),
  onProgress: (p) => {
    const secs = (performance.now() - started) / 1000;
    const rate = (p.done - p.resumed) / secs;
    const eta = rate > 0 ? (p.total - p.done) / rate : 0;
    const what = p.error ? `FAILED: ${p.error}` : `${p.chunks} chunks`;
    console.error(
      `[${p.done}/${p.total}] ${p.source}: ${what} (${rate.toFixed(2)} videos/s, about ${
        eta.toFixed(0)
      } s left)`,
    );
  },
});
console.log(`${result.chunks} chunks from ${result.videos} videos written to ${result.list}`);
if (result.failed.length > 0) {
  console.log(`${result.failed.length} videos failed (rerun to retry them):`);
  for (const f of result.failed) console.log(`  ${f.source}: ${f.error}`);
  Deno.exit(1);
}
