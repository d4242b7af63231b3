/**
 * Decoding one clip's frames: in process through FFmpeg's libraries (lib/ffi/decode.ts) when the
 * decoder library is available and takes the file, else one ffmpeg process (lib/data/ffmpeg.ts). Both
 * give the same pixels (tests/decode_test.ts) and the same errors: DecodeError for a file that cannot be
 * decoded, ShortDecodeError with `short` when it has fewer frames than probed.
 *
 * VSWIFT_DECODER chooses: `auto` (the default), `inprocess` (an error when the library is missing) or
 * `ffmpeg`.
 */
import { type NativeDecoder, openDecoder } from "../ffi/decode.ts";
import {
  decodeArgs,
  decodeFrames,
  type DecodeRequest,
  frameBytes,
  type Frames,
  SEEK_MIN_FRAMES,
  ShortDecodeError,
} from "./ffmpeg.ts";

export type DecoderChoice = "auto" | "inprocess" | "ffmpeg";

/** The decoder choice from VSWIFT_DECODER. */
export function decoderChoice(): DecoderChoice {
  const v = Deno.env.get("VSWIFT_DECODER") || "auto";
  if (v !== "auto" && v !== "inprocess" && v !== "ffmpeg") {
    throw new Error(`VSWIFT_DECODER must be auto, inprocess or ffmpeg, got ${v}`);
  }
  return v;
}

/** Counts of how clips were decoded, for benchmarks and logs. */
export const decodeCounts = { inprocess: 0, ffmpeg: 0, refused: 0 };

/** Decodes a request with the chosen decoder (`choice`, default VSWIFT_DECODER). */
export async function decodeClip(req: DecodeRequest, choice = decoderChoice()): Promise<Frames> {
  if (choice !== "ffmpeg") {
    const frames = await decodeInProcess(req, choice === "inprocess");
    if (frames) return frames;
  }
  decodeCounts.ffmpeg++;
  return decodeFrames(req);
}

/** The decoder library, or undefined when it is unavailable; `required` turns that into an error. */
export async function inProcessDecoder(required: boolean): Promise<NativeDecoder | undefined> {
  const { decoder, why } = await openDecoder();
  if (!decoder && required) {
    throw new Error(`VSWIFT_DECODER=inprocess but the in-process decoder is unavailable: ${why}`);
  }
  return decoder;
}

/**
 * The in-process decode, or undefined when the decoder library is missing or refuses the file (then
 * the caller runs ffmpeg); `required` turns those into errors.
 */
export async function decodeInProcess(req: DecodeRequest, required = false): Promise<Frames | undefined> {
  const decoder = await inProcessDecoder(required);
  if (!decoder) return undefined;
  const n = req.indices.length;
  if (n === 0) throw new RangeError(`No frames to decode from ${req.path}`);
  const { w, h, format, region } = decodeArgs(req);
  const full = region ? undefined : { x: 0, y: 0, w, h };
  const { info } = req;
  const bytes = frameBytes(format, n, w, h);
  const data = req.pool ? req.pool.acquire(bytes) : new Uint8Array(bytes);
  const fullSize = decodeArgs({ ...req, region: undefined });
  const { status, message } = await decoder.decode({
    path: req.path,
    indices: req.indices,
    seek: info.cfr && req.indices[0] >= SEEK_MIN_FRAMES,
    fps: info.fps,
    fullW: fullSize.w,
    fullH: fullSize.h,
    region: region ?? full!,
    format,
    out: data,
  });
  if (status === n) {
    decodeCounts.inprocess++;
    return { data, n, h, w, x: region?.x ?? 0, y: region?.y ?? 0, format };
  }
  req.pool?.release(data);
  if (status === -2 && !required) {
    decodeCounts.refused++;
    return undefined;
  }
  if (status >= 0) {
    throw new ShortDecodeError(
      req.path,
      `the in-process decoder delivered ${status} of ${n} frames (the last asked for is frame ${
        req.indices[n - 1]
      }, the container says ${info.frames}): ${message}`,
      true,
    );
  }
  throw new ShortDecodeError(req.path, `the in-process decoder failed: ${message}`, false);
}
