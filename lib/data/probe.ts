/**
 * Probing a video (size, frame count, frame rate): in process through FFmpeg's libraries
 * (lib/ffi/decode.ts vsd_probe) when the decoder library is available, else one ffprobe process
 * (lib/data/ffmpeg.ts probeVideo). Both read the same stream with the same rules (videoInfo) and give
 * equal VideoInfo (tests/probe_test.ts); VSWIFT_DECODER chooses as for decoding (lib/data/decode.ts):
 * `auto`, `inprocess` (an error when the library is missing) or `ffmpeg`. ProbeCache keeps the results
 * per file, across runs when given a file.
 */
import { type DecoderChoice, decoderChoice, inProcessDecoder } from "./decode.ts";
import { DecodeError, probeVideo, requireRegularFile, type VideoInfo, videoInfo } from "./ffmpeg.ts";

/** Counts of how files were probed, for benchmarks and tests. */
export const probeCounts = { inprocess: 0, ffprobe: 0 };

/** Probes `path` with the chosen prober (`choice`, default VSWIFT_DECODER). Throws DecodeError. */
export async function probeClip(
  path: string,
  signal?: AbortSignal,
  choice = decoderChoice(),
): Promise<VideoInfo> {
  if (choice !== "ffmpeg") {
    const info = await probeInProcess(path, choice === "inprocess");
    if (info) return info;
  }
  probeCounts.ffprobe++;
  return probeVideo(path, signal);
}

/**
 * The in-process probe, or undefined when the decoder library is missing (then the caller runs
 * ffprobe); `required` turns that into an error. A file that cannot be probed is a DecodeError naming
 * it, as from ffprobe.
 */
export async function probeInProcess(path: string, required = false): Promise<VideoInfo | undefined> {
  const decoder = await inProcessDecoder(required);
  if (!decoder) return undefined;
  // A FIFO or device would block the decoding thread for good, where an ffprobe process could be killed.
  requireRegularFile(path, "probe");
  const { info, message } = await decoder.probe(path);
  if (!info) throw new DecodeError(path, message, "probe");
  probeCounts.inprocess++;
  return videoInfo(path, info, "the in-process probe");
}

/** A probe function for a fixed decoder choice (the loader's `decoder` option). */
export function prober(choice?: DecoderChoice): (path: string, signal?: AbortSignal) => Promise<VideoInfo> {
  return (path, signal) => probeClip(path, signal, choice);
}

/**
 * Probe results per file, in memory and optionally in a JSON file keyed by path, size and mtime (so a
 * restarted run does not probe again).
 */
export class ProbeCache {
  private map = new Map<string, VideoInfo>();
  private pending = new Map<string, Promise<VideoInfo>>();
  private dirty = false;

  /** `probe`: how a file is probed (probeClip with the VSWIFT_DECODER choice by default). */
  constructor(
    private readonly file?: string,
    private readonly probe: (path: string, signal?: AbortSignal) => Promise<VideoInfo> = probeClip,
  ) {
    if (!file) return;
    try {
      const saved = JSON.parse(Deno.readTextFileSync(file)) as Record<string, VideoInfo & { key: string }>;
      for (const [p, v] of Object.entries(saved)) {
        if (v.key === fileKey(p)) this.map.set(p, v);
      }
    } catch {
      // A missing or unreadable cache is rebuilt.
    }
  }

  get size(): number {
    return this.map.size;
  }

  /** The cached probe of `path`, probing it once if needed (concurrent callers share one probe). */
  async get(path: string, signal?: AbortSignal): Promise<VideoInfo> {
    const hit = this.map.get(path);
    if (hit) return hit;
    let p = this.pending.get(path);
    if (!p) {
      p = this.probe(path, signal);
      this.pending.set(path, p);
    }
    try {
      const info = await p;
      this.set(path, info);
      return info;
    } finally {
      this.pending.delete(path);
    }
  }

  peek(path: string): VideoInfo | undefined {
    return this.map.get(path);
  }

  set(path: string, info: VideoInfo): void {
    this.map.set(path, info);
    this.dirty = true;
  }

  /** Writes the cache file (atomically) when it has changed. */
  save(): void {
    if (!this.file || !this.dirty) return;
    const out: Record<string, VideoInfo & { key: string }> = {};
    for (const [p, v] of this.map) out[p] = { ...v, key: fileKey(p) };
    const tmp = `${this.file}.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify(out));
    Deno.renameSync(tmp, this.file);
    this.dirty = false;
  }
}

function fileKey(path: string): string {
  try {
    const st = Deno.statSync(path);
    return `${st.size}:${st.mtime?.getTime() ?? 0}`;
  } catch {
    return "missing";
  }
}
