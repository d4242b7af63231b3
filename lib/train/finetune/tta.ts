/**
 * Multi-view testing (spec §3.5): each of S temporal x K spatial views of a video gives logits; the
 * softmax of each view is averaged per video, and top-1 / top-5 are taken on the average. Views come
 * from every rank (each rank writes its own file); pad views (duplicates that even out the ranks) and
 * repeated views are skipped, so every view of every video counts exactly once.
 */

/** One evaluated view. */
export interface ViewOutput {
  video: number;
  chunk: number;
  split: number;
  /** A duplicate added to even out the ranks, or a stand-in for a video that failed to decode. */
  pad: boolean;
  label: number;
  logits: ArrayLike<number>;
}

/** One video's merged result. */
export interface VideoResult {
  video: number;
  label: number;
  /** Views averaged. */
  views: number;
  /** Mean of the views' softmax. */
  probs: Float64Array;
  /** Classes by decreasing probability, the first five. */
  top5: number[];
  correct1: boolean;
  correct5: boolean;
}

export interface TestSummary {
  /** Videos with at least one view. */
  videos: number;
  /** Views merged (pad and repeated views excluded). */
  views: number;
  /** Views per video asked for (S x K). */
  viewsPerVideo: number;
  /** Percent. */
  top1: number;
  top5: number;
  /** Videos of the list without any view (a video that failed to decode everywhere). */
  missingVideos: number[];
  /** Videos with fewer than S x K views. */
  incompleteVideos: number[];
  padViews: number;
  repeatedViews: number;
}

/** softmax in float64, shifted by the maximum. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]);
  const out = new Float64Array(logits.length);
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += out[i] = Math.exp(logits[i] - m);
  for (let i = 0; i < out.length; i++) out[i] /= s;
  return out;
}

/** The k largest classes in decreasing order (ties: lower index first, as torch.topk on CPU). */
export function topK(scores: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: scores.length }, (_, i) => i);
  idx.sort((a, b) => scores[b] - scores[a] || a - b);
  return idx.slice(0, Math.min(k, idx.length));
}

/**
 * Merges views into per-video results. `videos` is the number of videos of the test list (to report
 * those without any view); `viewsPerVideo` is S x K.
 */
export function mergeViews(
  views: Iterable<ViewOutput>,
  opts: { videos?: number; viewsPerVideo: number },
): { results: VideoResult[]; summary: TestSummary } {
  const sums = new Map<number, { label: number; probs: Float64Array; views: number; seen: Set<string> }>();
  let padViews = 0;
  let repeatedViews = 0;
  let merged = 0;
  for (const v of views) {
    if (v.pad) {
      padViews++;
      continue;
    }
    let acc = sums.get(v.video);
    if (!acc) {
      acc = { label: v.label, probs: new Float64Array(v.logits.length), views: 0, seen: new Set() };
      sums.set(v.video, acc);
    }
    if (acc.label !== v.label) {
      throw new Error(`Video ${v.video} has views labelled ${acc.label} and ${v.label}`);
    }
    if (v.logits.length !== acc.probs.length) {
      throw new Error(`Video ${v.video} has views with ${acc.probs.length} and ${v.logits.length} classes`);
    }
    const key = `${v.chunk}:${v.split}`;
    if (acc.seen.has(key)) {
      repeatedViews++;
      continue;
    }
    acc.seen.add(key);
    const p = softmax(v.logits);
    for (let i = 0; i < p.length; i++) acc.probs[i] += p[i];
    acc.views++;
    merged++;
  }
  const results: VideoResult[] = [];
  for (const [video, acc] of [...sums].sort((a, b) => a[0] - b[0])) {
    for (let i = 0; i < acc.probs.length; i++) acc.probs[i] /= acc.views;
    const top5 = topK(acc.probs, 5);
    results.push({
      video,
      label: acc.label,
      views: acc.views,
      probs: acc.probs,
      top5,
      correct1: top5[0] === acc.label,
      correct5: top5.includes(acc.label),
    });
  }
  const n = results.length;
  const missing: number[] = [];
  if (opts.videos !== undefined) { for (let v = 0; v < opts.videos; v++) if (!sums.has(v)) missing.push(v); }
  const summary: TestSummary = {
    videos: n,
    views: merged,
    viewsPerVideo: opts.viewsPerVideo,
    top1: n ? (100 * results.filter((r) => r.correct1).length) / n : 0,
    top5: n ? (100 * results.filter((r) => r.correct5).length) / n : 0,
    missingVideos: missing,
    incompleteVideos: results.filter((r) => r.views < opts.viewsPerVideo).map((r) => r.video),
    padViews,
    repeatedViews,
  };
  return { results, summary };
}

/** Appends views to a rank's JSON-lines file (one view per line). */
export async function appendViews(path: string, views: ViewOutput[]): Promise<void> {
  const text = views.map((v) => JSON.stringify({ ...v, logits: Array.from(v.logits, (x) => Math.fround(x)) }))
    .join("\n");
  if (text) await Deno.writeTextFile(path, text + "\n", { append: true });
}

/** Reads the views of every rank's file. */
export async function readViews(paths: string[]): Promise<ViewOutput[]> {
  const out: ViewOutput[] = [];
  for (const p of paths) {
    const text = await Deno.readTextFile(p);
    for (const [i, line] of text.split("\n").entries()) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line));
      } catch (e) {
        throw new Error(`${p} line ${i + 1} is not a view record: ${(e as Error).message}`);
      }
    }
  }
  return out;
}

/** The first line of the per-video test results (lib/notebook/test_results.ts reads it back). */
export const TEST_CSV_HEADER = "video,path,label,prediction,correct1,correct5,views,top5,top5_probs";

/**
 * Writes the per-video results as CSV (video index, path, label, prediction, correct@1, correct@5, views,
 * the top-5 classes and their probabilities) and the summary as JSON.
 */
export async function writeTestResults(
  dir: string,
  merged: { results: VideoResult[]; summary: TestSummary },
  opts: { paths?: string[]; labelNames?: string[]; extra?: Record<string, unknown> } = {},
): Promise<{ perVideo: string; summary: string }> {
  await Deno.mkdir(dir, { recursive: true });
  const name = (c: number) => opts.labelNames?.[c] ?? String(c);
  const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
  const lines = [TEST_CSV_HEADER];
  for (const r of merged.results) {
    lines.push([
      r.video,
      q(opts.paths?.[r.video] ?? ""),
      q(name(r.label)),
      q(name(r.top5[0])),
      r.correct1 ? 1 : 0,
      r.correct5 ? 1 : 0,
      r.views,
      q(r.top5.map(name).join(" | ")),
      r.top5.map((c) => r.probs[c].toFixed(5)).join(" "),
    ].join(","));
  }
  const perVideo = `${dir}/test_per_video.csv`;
  const summary = `${dir}/test_summary.json`;
  await Deno.writeTextFile(perVideo, lines.join("\n") + "\n");
  await Deno.writeTextFile(summary, JSON.stringify({ ...merged.summary, ...opts.extra }, null, 1) + "\n");
  return { perVideo, summary };
}
