/**
 * Dataset preparation (spec §6): cut every video of a list into non-overlapping chunks (3 s) with the
 * short side resized (256 px), re-encoded with a keyframe at the start of each chunk, audio dropped; and
 * write a list of the chunks in V-SWIFT's 6-field format (`source chunk label start end frames`, start/end
 * = where the chunk sits in the source). Parallel (one single-threaded ffmpeg per video) and resumable:
 * finished videos are recorded in progress.jsonl and skipped by a rerun.
 */
import { ffmpegPath, runTool } from "./ffmpeg.ts";
import { probeClip } from "./probe.ts";
import { formatListLine, type ListEntry } from "./list_file.ts";

export interface PrepareOptions {
  entries: ListEntry[];
  /** Output folder: chunks/ and list.txt go there. */
  out: string;
  /** Seconds per chunk (3). */
  chunkSeconds?: number;
  /** Short side of the chunks (256). */
  shortSide?: number;
  /** Video codec for ffmpeg -c:v (libx264). */
  codec?: string;
  /** Container of the chunks (mp4). */
  format?: string;
  crf?: number;
  preset?: string;
  /** Seconds between forced keyframes (the chunk length); must divide the chunk length. */
  keyframeSeconds?: number;
  /** A final piece shorter than this many seconds is dropped (half a chunk). */
  minSeconds?: number;
  workers?: number;
  onProgress?: (p: PrepareProgress) => void;
}

export interface PrepareProgress {
  done: number;
  total: number;
  /** The video just finished (or failed), and its chunk count. */
  source: string;
  chunks: number;
  error?: string;
  /** Videos finished by an earlier run. */
  resumed: number;
}

interface ChunkRecord {
  source: string;
  origin: string;
  chunks?: { path: string; start: number; end: number; frames: number }[];
  error?: string;
}

export interface PrepareResult {
  list: string;
  videos: number;
  chunks: number;
  failed: { source: string; error: string }[];
}

function chunkBase(source: string, index: number): string {
  const clean = source.replace(/^\/+/, "").replace(/\.[^/.]+$/, "").replace(/[^A-Za-z0-9_\-/]/g, "_");
  return `chunks/${String(index).padStart(6, "0")}_${clean.split("/").pop()}`;
}

/** Cuts one video; returns its chunks (relative paths) with their frame ranges. */
async function cutVideo(
  e: ListEntry,
  index: number,
  o: Required<Omit<PrepareOptions, "onProgress" | "workers">>,
) {
  const info = await probeClip(e.path);
  const base = chunkBase(e.source, index);
  const tmpDir = `${o.out}/.tmp_${String(index).padStart(6, "0")}`;
  await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmpDir, { recursive: true });
  const s = o.shortSide;
  const scale = `scale='if(lt(iw,ih),${s},-2)':'if(lt(iw,ih),-2,${s})':flags=bicubic`;
  const args = [
    "-hide_banner",
    "-nostdin",
    "-v",
    "error",
    "-y",
    "-threads",
    "1",
    "-noautorotate",
    "-i",
    e.path,
    "-map",
    "0:v:0",
    "-an",
    "-sn",
    "-dn",
    "-vf",
    scale,
    "-c:v",
    o.codec,
    "-crf",
    String(o.crf),
    "-preset",
    o.preset,
    "-pix_fmt",
    "yuv420p",
    "-threads",
    "1",
    "-force_key_frames",
    `expr:gte(t,n_forced*${o.keyframeSeconds})`,
    "-f",
    "segment",
    "-segment_time",
    String(o.chunkSeconds),
    "-reset_timestamps",
    "1",
    "-segment_format",
    o.format,
    `${tmpDir}/%05d.${o.format}`,
  ];
  if (!o.codec.startsWith("libx26")) args.splice(args.indexOf("-preset"), 2);
  const r = await runTool(ffmpegPath(), args);
  if (r.code !== 0) {
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    throw new Error(r.stderr.trim().split("\n").slice(-4).join(" | ") || `ffmpeg exited with ${r.code}`);
  }
  const pieces = [...Deno.readDirSync(tmpDir)].map((d) => d.name).sort();
  const chunks: { path: string; start: number; end: number; frames: number }[] = [];
  let start = 0;
  const minFrames = Math.max(1, Math.round(o.minSeconds * info.fps));
  for (let i = 0; i < pieces.length; i++) {
    const piece = `${tmpDir}/${pieces[i]}`;
    const frames = (await probeClip(piece)).frames;
    if (i === pieces.length - 1 && pieces.length > 1 && frames < minFrames) break;
    const path = `${base}_${String(i).padStart(3, "0")}.${o.format}`;
    await Deno.rename(piece, `${o.out}/${path}`);
    chunks.push({ path, start, end: start + frames - 1, frames });
    start += frames;
  }
  await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  return chunks;
}

/** Prepares a dataset (see the module comment). Rerunning with the same output folder resumes. */
export async function prepareDataset(opts: PrepareOptions): Promise<PrepareResult> {
  const chunkSeconds = opts.chunkSeconds ?? 3;
  const o = {
    entries: opts.entries,
    out: opts.out.replace(/\/+$/, ""),
    chunkSeconds,
    shortSide: opts.shortSide ?? 256,
    codec: opts.codec ?? "libx264",
    format: opts.format ?? "mp4",
    crf: opts.crf ?? 23,
    preset: opts.preset ?? "veryfast",
    keyframeSeconds: opts.keyframeSeconds ?? chunkSeconds,
    minSeconds: opts.minSeconds ?? chunkSeconds / 2,
  };
  if (!(chunkSeconds > 0)) throw new RangeError(`The chunk length must be positive, got ${chunkSeconds}`);
  const ratio = chunkSeconds / o.keyframeSeconds;
  if (!(o.keyframeSeconds > 0) || Math.abs(ratio - Math.round(ratio)) > 1e-9) {
    throw new RangeError(
      `The keyframe interval ${o.keyframeSeconds} s must divide the chunk length ${chunkSeconds} s, so chunks cut exactly`,
    );
  }
  await Deno.mkdir(`${o.out}/chunks`, { recursive: true });
  const progressPath = `${o.out}/progress.jsonl`;
  const done = new Map<string, ChunkRecord>();
  try {
    for (const line of (await Deno.readTextFile(progressPath)).split("\n")) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as ChunkRecord;
        if (r.chunks) done.set(r.origin, r);
      } catch {
        // A line cut short by an interrupted run: that video is done again.
      }
    }
  } catch {
    // No earlier run.
  }
  const records = new Map<string, ChunkRecord>(done);
  const total = o.entries.length;
  const resumed = o.entries.filter((e) => done.has(e.origin)).length;
  let finished = resumed;
  const progress = await Deno.open(progressPath, { append: true, create: true });
  const enc = new TextEncoder();
  let next = 0;
  const work = async () => {
    while (next < total) {
      const i = next++;
      const e = o.entries[i];
      if (done.has(e.origin)) continue;
      let rec: ChunkRecord;
      try {
        rec = { source: e.source, origin: e.origin, chunks: await cutVideo(e, i, o) };
      } catch (err) {
        rec = { source: e.source, origin: e.origin, error: (err as Error).message };
      }
      records.set(e.origin, rec);
      await progress.write(enc.encode(JSON.stringify(rec) + "\n"));
      finished++;
      opts.onProgress?.({
        done: finished,
        total,
        source: e.source,
        chunks: rec.chunks?.length ?? 0,
        error: rec.error,
        resumed,
      });
    }
  };
  try {
    const n = Math.max(1, opts.workers ?? navigator.hardwareConcurrency ?? 2);
    await Promise.all(Array.from({ length: Math.min(n, total) }, work));
  } finally {
    progress.close();
  }
  const lines: string[] = [];
  const failed: { source: string; error: string }[] = [];
  for (const e of o.entries) {
    const r = records.get(e.origin)!;
    if (!r.chunks) {
      failed.push({ source: e.source, error: r.error ?? "unknown error" });
      continue;
    }
    for (const c of r.chunks) {
      lines.push(formatListLine("source-range", {
        source: e.source,
        path: c.path,
        label: e.label,
        sourceStart: c.start,
        sourceEnd: c.end,
        frames: c.frames,
      }));
    }
  }
  const list = `${o.out}/list.txt`;
  await Deno.writeTextFile(`${list}.tmp`, lines.map((l) => l + "\n").join(""));
  await Deno.rename(`${list}.tmp`, list);
  return { list, videos: total - failed.length, chunks: lines.length, failed };
}
