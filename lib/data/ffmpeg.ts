/**
 * The system ffmpeg and ffprobe: probing (frame count, size, frame rate; the rules shared with the
 * in-process probe of lib/data/probe.ts, which also holds the cache) and decoding a set of frames of one
 * video, scaled to a short side and cut to a region in the filter graph, as raw frames (RGB24, or YUV420P
 * for half the bytes) over a pipe into a preallocated buffer. One process per call, one decoding thread
 * each. VSWIFT_FFMPEG and VSWIFT_FFPROBE point at other binaries.
 */

export function ffmpegPath(): string {
  return Deno.env.get("VSWIFT_FFMPEG") || "ffmpeg";
}

export function ffprobePath(): string {
  return Deno.env.get("VSWIFT_FFPROBE") || "ffprobe";
}

/** What the loader needs to know about a video file. */
export interface VideoInfo {
  width: number;
  height: number;
  /** Decodable frames. */
  frames: number;
  /** Frames per second (the stream's average rate). */
  fps: number;
  /** Constant frame rate: r_frame_rate equals avg_frame_rate, so input seeking by time is exact. */
  cfr: boolean;
}

/** A video that could not be probed or decoded; `detail` is what ffmpeg said. */
export class DecodeError extends Error {
  constructor(readonly path: string, readonly detail: string, what = "decode") {
    super(`Could not ${what} ${path}: ${detail}`);
    this.name = "DecodeError";
  }
}

const decoder = new TextDecoder();

/** Tool processes started, killed for running too long, and paths refused unopened (for tests). */
export const decodeCounters = { started: 0, timedOut: 0, refused: 0 };

/** How long one probe or decode may take: VSWIFT_DECODE_TIMEOUT seconds (default 120). */
export function decodeTimeoutMs(): number {
  const v = Deno.env.get("VSWIFT_DECODE_TIMEOUT");
  const s = v === undefined || v === "" ? 120 : Number(v);
  if (!(s > 0)) throw new RangeError(`VSWIFT_DECODE_TIMEOUT must be a positive number of seconds, got ${v}`);
  return s * 1000;
}

/**
 * Throws DecodeError unless `path` is a regular file: a FIFO, device or directory named in a data list
 * would block ffmpeg forever or read without end.
 */
export function requireRegularFile(path: string, what = "decode"): void {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    throw new DecodeError(path, (e as Error).message, what);
  }
  if (!st.isFile) {
    decodeCounters.refused++;
    const kind = st.isDirectory ? "a directory" : st.isFifo ? "a FIFO" : "not a regular file";
    throw new DecodeError(path, `it is ${kind}; data lists may name only regular files`, what);
  }
}

function timeoutDetail(cmd: string, ms: number): string {
  return `${cmd} ran longer than ${ms / 1000} s and was stopped (VSWIFT_DECODE_TIMEOUT)`;
}

/** The last lines of a tool's stderr, for error messages. */
function tail(text: string, lines = 6): string {
  const all = text.trim().split("\n").filter((l) => l.trim() !== "");
  return all.slice(-lines).join(" | ") || "no message";
}

/**
 * Starts ffmpeg or ffprobe in a session of its own, so that a Ctrl-C in the terminal reaches only the
 * trainer (which stops its decoders itself after the step) and never kills a decode half-way.
 */
function spawnTool(cmd: string, args: string[], stdin: boolean, signal?: AbortSignal): Deno.ChildProcess {
  try {
    const child = new Deno.Command(cmd, {
      args,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      signal,
      detached: true,
    }).spawn();
    decodeCounters.started++;
    return child;
  } catch (e) {
    throw new Error(`Cannot run ${cmd} (${(e as Error).message}); ${toolHint(cmd)}`);
  }
}

/** Kills `child` after `ms`; `fired()` tells whether it did. */
function killAfter(child: Deno.ChildProcess, ms: number): { fired: () => boolean; clear: () => void } {
  let fired = false;
  const timer = setTimeout(() => {
    fired = true;
    decodeCounters.timedOut++;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, ms);
  return { fired: () => fired, clear: () => clearTimeout(timer) };
}

/**
 * Runs a tool to completion, killing it after `timeoutMs` (then `timedOut` is true); throws when it
 * cannot be started (naming the env var to fix it).
 */
export async function runTool(
  cmd: string,
  args: string[],
  opts: { stdin?: Uint8Array; signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: Uint8Array; stderr: string; timedOut: boolean }> {
  const child = spawnTool(cmd, args, !!opts.stdin, opts.signal);
  const limit = opts.timeoutMs === undefined ? undefined : killAfter(child, opts.timeoutMs);
  try {
    if (opts.stdin) {
      const w = child.stdin.getWriter();
      await w.write(opts.stdin).catch(() => {});
      await w.close().catch(() => {});
    }
    const out = await child.output();
    return {
      code: out.code,
      stdout: out.stdout,
      stderr: decoder.decode(out.stderr),
      timedOut: limit?.fired() ?? false,
    };
  } finally {
    limit?.clear();
  }
}

/** runTool for one video: refuses what is not a regular file, and a time-out is a DecodeError. */
async function runOnVideo(
  path: string,
  what: string,
  args: string[],
  signal?: AbortSignal,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  requireRegularFile(path, what);
  const ms = decodeTimeoutMs();
  const r = await runTool(ffprobePath(), args, { signal, timeoutMs: ms });
  if (r.timedOut) throw new DecodeError(path, timeoutDetail("ffprobe", ms), what);
  return r;
}

export function toolHint(cmd: string): string {
  return `install ffmpeg (apt-get install ffmpeg) or point VSWIFT_FFMPEG / VSWIFT_FFPROBE at the binaries (${cmd})`;
}

function parseRate(r: string | undefined): number {
  if (!r) return 0;
  const [a, b] = r.split("/").map(Number);
  return b ? a / b : a || 0;
}

/** What a probe read from the first video stream, before the loader's rules (see videoInfo). */
export interface StreamProbe {
  width: number;
  height: number;
  /** The container's frame count, or the packet count when it has none; not a number when missing. */
  frames: number;
  /** The rates as ffprobe prints them, "num/den". */
  avgFrameRate?: string;
  rFrameRate?: string;
}

/**
 * VideoInfo from what ffprobe or the in-process probe read: fps is the average rate (the real-base
 * rate when there is none), and the rate is constant when both rates print the same.
 */
export function videoInfo(path: string, s: StreamProbe, tool: string): VideoInfo {
  if (!(s.width > 0) || !(s.height > 0)) throw new DecodeError(path, "the file has no video stream", "probe");
  if (!(s.frames > 0)) throw new DecodeError(path, `${tool} found no frames`, "probe");
  const avg = parseRate(s.avgFrameRate);
  const rr = parseRate(s.rFrameRate);
  return {
    width: s.width,
    height: s.height,
    frames: s.frames,
    fps: avg || rr,
    cfr: avg > 0 && s.avgFrameRate === s.rFrameRate,
  };
}

/**
 * Probes a video with ffprobe (first video stream). Throws DecodeError when ffprobe fails. The loader
 * probes through lib/data/probe.ts, which prefers the in-process probe.
 */
export async function probeVideo(path: string, signal?: AbortSignal): Promise<VideoInfo> {
  const entries = "stream=width,height,nb_frames,r_frame_rate,avg_frame_rate,duration";
  const base = ["-v", "error", "-select_streams", "v:0", "-of", "json"];
  const r = await runOnVideo(path, "probe", [...base, "-show_entries", entries, path], signal);
  if (r.code !== 0) throw new DecodeError(path, tail(r.stderr), "probe");
  // deno-lint-ignore no-explicit-any
  let s: any;
  try {
    s = JSON.parse(decoder.decode(r.stdout)).streams?.[0];
  } catch {
    throw new DecodeError(path, `ffprobe printed no JSON (${tail(r.stderr)})`, "probe");
  }
  if (!s || !(s.width > 0) || !(s.height > 0)) {
    throw new DecodeError(path, "the file has no video stream", "probe");
  }
  let frames = Number(s.nb_frames);
  if (!(frames > 0)) {
    // Containers without a frame count (webm, mkv): count the packets, which reads but does not decode.
    const c = await runOnVideo(path, "probe", [
      ...base,
      "-count_packets",
      "-show_entries",
      "stream=nb_read_packets",
      path,
    ], signal);
    if (c.code !== 0) throw new DecodeError(path, tail(c.stderr), "probe");
    frames = Number(JSON.parse(decoder.decode(c.stdout)).streams?.[0]?.nb_read_packets);
  }
  return videoInfo(path, {
    width: s.width,
    height: s.height,
    frames,
    avgFrameRate: s.avg_frame_rate,
    rFrameRate: s.r_frame_rate,
  }, "ffprobe");
}

/** Counts decodable frames exactly (decodes the whole file); used when the container's count is wrong. */
export async function countFrames(path: string, signal?: AbortSignal): Promise<number> {
  const r = await runOnVideo(path, "count the frames of", [
    "-v",
    "error",
    "-select_streams",
    "v:0",
    "-count_frames",
    "-show_entries",
    "stream=nb_read_frames",
    "-of",
    "json",
    path,
  ], signal);
  if (r.code !== 0) throw new DecodeError(path, tail(r.stderr), "count the frames of");
  const n = Number(JSON.parse(decoder.decode(r.stdout)).streams?.[0]?.nb_read_frames);
  if (!(n > 0)) throw new DecodeError(path, "no decodable frame", "count the frames of");
  return n;
}

/** The decoded size with the short side scaled to `shortSide` (0 keeps the native size). */
export function scaledSize(width: number, height: number, shortSide: number): { w: number; h: number } {
  if (!shortSide || Math.min(width, height) === shortSide) return { w: width, h: height };
  if (width <= height) return { w: shortSide, h: Math.max(1, Math.round((height * shortSide) / width)) };
  return { w: Math.max(1, Math.round((width * shortSide) / height)), h: shortSide };
}

/** Reusable byte buffers, so that steady-state decoding does not allocate. */
export class BufferPool {
  private free: Uint8Array[] = [];

  acquire(bytes: number): Uint8Array {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const c = this.free[i].byteLength;
      if (c >= bytes && (best < 0 || c < this.free[best].byteLength)) best = i;
    }
    if (best >= 0) {
      const [buf] = this.free.splice(best, 1);
      return buf;
    }
    return new Uint8Array(Math.ceil(bytes * 1.25));
  }

  release(buf: Uint8Array): void {
    if (this.free.length < 64) this.free.push(buf);
  }
}

export type PixelFormat = "rgb24" | "yuv420p";

/**
 * Decoded frames in data[0 .. bytes): rgb24 (n, h, w, 3), or yuv420p (n, 3h/2, w) (per frame Y, then U
 * and V at half size); (x, y): where the region starts in the scaled frame.
 */
export interface Frames {
  data: Uint8Array;
  n: number;
  h: number;
  w: number;
  x: number;
  y: number;
  format: PixelFormat;
}

/** Bytes of n frames of w x h pixels. */
export function frameBytes(format: PixelFormat, n: number, w: number, h: number): number {
  return format === "yuv420p" ? (n * w * h * 3) / 2 : n * w * h * 3;
}

export interface DecodeRequest {
  path: string;
  info: VideoInfo;
  /** Frame indices to decode, strictly increasing. */
  indices: number[];
  /** Short side of the decoded frames (0: native size). */
  shortSide: number;
  /**
   * A region of the scaled frame to keep (integers; grown to even coordinates so that the crop is
   * exact on subsampled chroma). Saves the pipe and the conversion the pixels no clip uses.
   */
  region?: { x: number; y: number; w: number; h: number };
  /**
   * rgb24 (the default), or yuv420p: half the bytes and no colour conversion in ffmpeg (the crop kernel
   * converts after resampling). Frames of an odd decoded size fall back to rgb24.
   */
  pixelFormat?: PixelFormat;
  pool?: BufferPool;
  signal?: AbortSignal;
}

/** Frames to seek past before input seeking pays for its cost. */
export const SEEK_MIN_FRAMES = 8;

/** The ffmpeg command line for a request: input seek, frame selection and scaling in the filter graph. */
export function decodeArgs(
  req: DecodeRequest,
): { args: string[]; w: number; h: number; format: PixelFormat; region?: Region } {
  const { info, indices } = req;
  const full = scaledSize(info.width, info.height, req.shortSide);
  const region = req.region ? evenRegion(req.region, full.w, full.h) : undefined;
  const { w, h } = region ?? full;
  const format: PixelFormat = req.pixelFormat === "yuv420p" && w % 2 === 0 && h % 2 === 0
    ? "yuv420p"
    : "rgb24";
  let first = 0;
  const args = ["-hide_banner", "-nostdin", "-v", "error", "-threads", "1", "-filter_threads", "1"];
  if (info.cfr && indices[0] >= SEEK_MIN_FRAMES) {
    // Half a frame before the first wanted frame: exact for a constant rate (ffmpeg decodes from the
    // previous keyframe and drops what comes before the seek point).
    first = indices[0];
    args.push("-ss", ((first - 0.5) / info.fps).toFixed(6));
  }
  args.push("-noautorotate", "-i", req.path, "-map", "0:v:0", "-an", "-sn", "-dn");
  const rel = indices.map((i) => i - first);
  const sel = selectExpr(rel);
  const filters = [`select='${sel}'`];
  if (full.w !== info.width || full.h !== info.height) {
    filters.push(`scale=${full.w}:${full.h}:flags=bilinear`);
  }
  if (region) filters.push(`crop=${region.w}:${region.h}:${region.x}:${region.y}:exact=1`);
  args.push("-vf", filters.join(","), "-fps_mode", "passthrough", "-frames:v", String(indices.length));
  args.push("-pix_fmt", format, "-f", "rawvideo", "pipe:1");
  return { args, w, h, format, region };
}

type Region = { x: number; y: number; w: number; h: number };

/** A region grown to even coordinates and sizes inside a w x h frame (undefined: the whole frame). */
export function evenRegion(r: Region, w: number, h: number): Region | undefined {
  const x0 = Math.max(0, Math.floor(r.x / 2) * 2);
  const y0 = Math.max(0, Math.floor(r.y / 2) * 2);
  const x1 = Math.min(w, Math.ceil((r.x + r.w) / 2) * 2);
  const y1 = Math.min(h, Math.ceil((r.y + r.h) / 2) * 2);
  if (x0 === 0 && y0 === 0 && x1 === w && y1 === h) return undefined;
  return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
}

/** A select expression true exactly at the given frame numbers (runs of a constant step are folded). */
export function selectExpr(idx: number[]): string {
  const terms: string[] = [];
  let i = 0;
  while (i < idx.length) {
    let j = i + 1;
    const step = j < idx.length ? idx[j] - idx[i] : 0;
    while (j < idx.length && idx[j] - idx[j - 1] === step) j++;
    if (j - i >= 3) {
      const a = idx[i];
      const b = idx[j - 1];
      terms.push(
        step === 1 ? `between(n\\,${a}\\,${b})` : `between(n\\,${a}\\,${b})*not(mod(n-${a}\\,${step}))`,
      );
      i = j;
    } else {
      terms.push(`eq(n\\,${idx[i]})`);
      i++;
    }
  }
  return terms.join("+");
}

/**
 * Decodes the frames `indices` of one video into a pooled buffer. Throws DecodeError with ffmpeg's
 * message when ffmpeg fails or delivers fewer frames than asked for (`short` is then true).
 */
export async function decodeFrames(req: DecodeRequest): Promise<Frames> {
  const n = req.indices.length;
  if (n === 0) throw new RangeError(`No frames to decode from ${req.path}`);
  for (let i = 1; i < n; i++) {
    if (!(req.indices[i] > req.indices[i - 1])) {
      throw new RangeError(`Frame indices must increase, got ${req.indices.join(",")}`);
    }
  }
  const { args, w, h, format, region } = decodeArgs(req);
  requireRegularFile(req.path);
  const bytes = frameBytes(format, n, w, h);
  const data = req.pool ? req.pool.acquire(bytes) : new Uint8Array(bytes);
  let child: Deno.ChildProcess;
  try {
    child = spawnTool(ffmpegPath(), args, false, req.signal);
  } catch (e) {
    req.pool?.release(data);
    throw e;
  }
  const timeoutMs = decodeTimeoutMs();
  const limit = killAfter(child, timeoutMs);
  const errText = new Response(child.stderr).text();
  let got = 0;
  // A BYOB reader fills the pooled buffer in place (each read transfers its ArrayBuffer and hands back
  // a view of the same memory).
  let buf = data;
  const capacity = data.byteLength;
  const reader = child.stdout.getReader({ mode: "byob" });
  try {
    while (got < bytes) {
      const { value, done } = await reader.read(
        new Uint8Array(buf.buffer, got, Math.min(bytes - got, 1 << 20)),
      );
      if (value) {
        buf = new Uint8Array(value.buffer, 0, capacity);
        got += value.byteLength;
      }
      if (done) break;
    }
    if (got >= bytes) {
      // Drain whatever follows (there should be nothing) so that ffmpeg can exit.
      while (!(await reader.read(new Uint8Array(4096))).done) { /* discard */ }
    }
  } finally {
    reader.releaseLock();
  }
  const status = await child.status;
  limit.clear();
  const stderr = await errText;
  if (limit.fired()) {
    req.pool?.release(buf);
    throw new DecodeError(req.path, timeoutDetail("ffmpeg", timeoutMs));
  }
  if (got < bytes) {
    req.pool?.release(buf);
    const frames = Math.floor(got / frameBytes(format, 1, w, h));
    const why = status.success
      ? `ffmpeg delivered ${frames} of ${n} frames (the last asked for is frame ${req.indices[n - 1]}, ` +
        `the container says ${req.info.frames})`
      : `ffmpeg exited with ${status.code}`;
    throw new ShortDecodeError(req.path, `${why}: ${tail(stderr)}`, status.success);
  }
  return { data: buf, n, h, w, x: region?.x ?? 0, y: region?.y ?? 0, format };
}

/** A decode that ended early; `short` when ffmpeg succeeded but the file has fewer frames than probed. */
export class ShortDecodeError extends DecodeError {
  constructor(path: string, detail: string, readonly short: boolean) {
    super(path, detail);
  }
}
