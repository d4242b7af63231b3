/**
 * The in-process video decoder, build/libvswift_decode.so (cuda/decode/decode.c): FFmpeg's libraries
 * called from a pool of decoder workers, each kept across clips (with its decoder, when the next clip's
 * codec parameters allow), and the in-process probe. A call runs on one of Deno's blocking threads (a
 * nonblocking FFI call), so the event loop stays free and several decodes run at once. Built on first
 * use like the host library; when it cannot be built or loaded (no FFmpeg -dev packages), openDecoder
 * says why and the loader keeps one ffmpeg (ffprobe) process per clip.
 */
import { ensureBuilt } from "../../cuda/build.ts";
import { cString } from "./c_string.ts";

/** The vsd_abi_version this binding is written for (cuda/decode/decode.c). */
export const DECODE_ABI_VERSION = 2;

const VERSION_SYMBOL = { vsd_abi_version: { parameters: [], result: "i32" } } as const;

const SYMBOLS = {
  ...VERSION_SYMBOL,
  vsd_create: { parameters: [], result: "pointer" },
  vsd_destroy: { parameters: ["pointer"], result: "void" },
  vsd_stats: { parameters: ["pointer", "buffer"], result: "void" },
  vsd_probe: {
    parameters: [
      "buffer", // path, NUL-terminated
      "buffer", // out, 7 x i64
      "buffer", // err
      "i32", // err_len
    ],
    result: "i32",
    nonblocking: true,
  },
  vsd_decode: {
    parameters: [
      "pointer", // worker
      "buffer", // path, NUL-terminated
      "buffer", // frame indices, i64
      "i32", // n
      "i32", // seek
      "f64", // fps
      "i32", // full_w
      "i32", // full_h
      "i32", // rx
      "i32", // ry
      "i32", // rw
      "i32", // rh
      "i32", // format: 0 rgb24, 1 yuv420p
      "buffer", // out
      "buffer", // err
      "i32", // err_len
    ],
    result: "i32",
    nonblocking: true,
  },
} as const;

/** What vsd_decode returns besides a frame count. */
export const DECODE_ERROR = -1;
export const DECODE_REFUSED = -2;

export interface DecodeCall {
  path: string;
  indices: number[];
  /** Keyframe seek to the first index (constant frame rate only). */
  seek: boolean;
  fps: number;
  fullW: number;
  fullH: number;
  region: { x: number; y: number; w: number; h: number };
  format: "rgb24" | "yuv420p";
  out: Uint8Array;
}

/** What vsd_probe reads: the first video stream's size, frame count and both frame rates. */
export interface NativeProbe {
  width: number;
  height: number;
  /** The container's frame count, or the stream's packets when it has none. */
  frames: number;
  /** avg_frame_rate and r_frame_rate as ffprobe prints them, "num/den". */
  avgFrameRate: string;
  rFrameRate: string;
}

/** The loaded decoder library with its pool of workers. */
export class NativeDecoder {
  private readonly free: Deno.PointerObject[] = [];
  private readonly all: Deno.PointerObject[] = [];

  constructor(private readonly lib: Deno.DynamicLibrary<typeof SYMBOLS>, private readonly ownsLib = true) {}

  /** A decoder on the same library with a pool of its own (fresh workers); close() keeps the library. */
  fork(): NativeDecoder {
    return new NativeDecoder(this.lib, false);
  }

  /** Decoders opened and reused by this pool's workers so far. */
  stats(): { workers: number; opened: number; reused: number } {
    const out = new BigInt64Array(2);
    let opened = 0;
    let reused = 0;
    for (const w of this.all) {
      this.lib.symbols.vsd_stats(w, out);
      opened += Number(out[0]);
      reused += Number(out[1]);
    }
    return { workers: this.all.length, opened, reused };
  }

  /** Probes `path` in process; `message` says why when `info` is undefined. */
  async probe(path: string): Promise<{ info?: NativeProbe; message: string }> {
    const err = new Uint8Array(512);
    const name = new TextEncoder().encode(`${path}\0`);
    const out = new BigInt64Array(7);
    const status = await this.lib.symbols.vsd_probe(name, out, err, err.length);
    keepAlive(name, out, err);
    if (status !== 0) return { message: cString(err) };
    const [width, height, frames, an, ad, rn, rd] = Array.from(out, Number);
    return {
      info: { width, height, frames, avgFrameRate: `${an}/${ad}`, rFrameRate: `${rn}/${rd}` },
      message: "",
    };
  }

  /** Frames delivered (all asked for, or fewer), DECODE_ERROR or DECODE_REFUSED, and the message. */
  async decode(c: DecodeCall): Promise<{ status: number; message: string }> {
    const worker = this.free.pop() ?? this.create();
    const err = new Uint8Array(512);
    // Held in variables and touched after the call: the thread reads them while this function waits.
    const path = new TextEncoder().encode(`${c.path}\0`);
    const indices = BigInt64Array.from(c.indices.map(BigInt));
    try {
      const status = await this.lib.symbols.vsd_decode(
        worker,
        path,
        indices,
        c.indices.length,
        c.seek ? 1 : 0,
        c.fps,
        c.fullW,
        c.fullH,
        c.region.x,
        c.region.y,
        c.region.w,
        c.region.h,
        c.format === "yuv420p" ? 1 : 0,
        c.out,
        err,
        err.length,
      );
      keepAlive(path, indices, c.out, err);
      return { status, message: cString(err) };
    } finally {
      this.free.push(worker);
    }
  }

  private create(): Deno.PointerObject {
    const w = this.lib.symbols.vsd_create();
    if (!w) throw new Error("vsd_create could not allocate a decoder worker (out of memory)");
    this.all.push(w);
    return w;
  }

  close(): void {
    for (const w of this.all) this.lib.symbols.vsd_destroy(w);
    this.all.length = 0;
    this.free.length = 0;
    if (this.ownsLib) this.lib.close();
  }
}

/** Keeps buffers reachable until this point (a nonblocking call's arguments). */
function keepAlive(...buffers: ArrayBufferView[]): void {
  if (buffers.some((b) => b.byteLength < 0)) throw new Error("unreachable");
}

let opened: Promise<{ decoder?: NativeDecoder; why: string }> | undefined;

/** The decoder library, built when stale, opened once per process; `why` when it is not usable. */
export function openDecoder(): Promise<{ decoder?: NativeDecoder; why: string }> {
  opened ??= (async () => {
    try {
      const path = await ensureBuilt("decode", { quiet: true });
      // The version first, so that a library of another version is named as such rather than as a
      // missing symbol.
      const versioned = Deno.dlopen(path, VERSION_SYMBOL);
      const version = versioned.symbols.vsd_abi_version();
      versioned.close();
      if (version !== DECODE_ABI_VERSION) {
        return {
          why: `${path} has ABI version ${version}, not ${DECODE_ABI_VERSION}; ` +
            `rebuild it with deno task build --target decode --force`,
        };
      }
      return { decoder: new NativeDecoder(Deno.dlopen(path, SYMBOLS)), why: "" };
    } catch (e) {
      return { why: (e as Error).message.split("\n")[0] };
    }
  })();
  return opened;
}
