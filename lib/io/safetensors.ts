/**
 * safetensors files, read and written by hand: an 8-byte little-endian header length, a JSON header
 * of {name: {dtype, shape, data_offsets}} plus "__metadata__", then the tensor bytes back to back.
 * Headers are padded with spaces so the data starts 8-byte aligned; tensors are written widest dtype
 * first so that every tensor stays aligned to its element size.
 */
import { bf16ToF32, f32ToBf16 } from "../bf16.ts";
import { numelOf } from "../tensor.ts";

export type SafeDType = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/** Bytes per element of each dtype (also the storage sizes of .pth files, lib/io/pth.ts). */
export const ELEM_BYTES: Record<SafeDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface SafeTensor {
  dtype: SafeDType;
  shape: number[];
  /** Raw little-endian bytes. */
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

/** A SafeTensor from f32 values, stored as F32 or rounded to BF16. */
export function fromFloats(values: Float32Array, shape: number[], dtype: "F32" | "BF16" = "F32"): SafeTensor {
  if (numelOf(shape) !== values.length) {
    throw new RangeError(`Shape [${shape.join(", ")}] does not hold ${values.length} values`);
  }
  if (dtype === "F32") return { dtype, shape, data: new Uint8Array(values.slice().buffer) };
  return { dtype, shape, data: new Uint8Array(f32ToBf16(values).buffer) };
}

/** The f32 values of an F32, BF16 or F16 tensor. */
export function toFloats(t: SafeTensor, name = "tensor"): Float32Array {
  const n = numelOf(t.shape);
  // Copy out so that the typed array is aligned whatever the tensor's offset in the file.
  const bytes = t.data.slice();
  switch (t.dtype) {
    case "F32":
      return new Float32Array(bytes.buffer, 0, n);
    case "BF16":
      return bf16ToF32(new Uint16Array(bytes.buffer, 0, n));
    case "F16": {
      const h = new Uint16Array(bytes.buffer, 0, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(h[i]);
      return out;
    }
    case "F64":
      return Float32Array.from(new Float64Array(bytes.buffer, 0, n));
    default:
      throw new TypeError(
        `${name} has dtype ${t.dtype}; a floating-point tensor (F32, BF16, F16, F64) is needed`,
      );
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Serialises tensors into safetensors bytes. */
export function encodeSafetensors(
  tensors: Map<string, SafeTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const names = [...tensors.keys()].sort((a, b) => {
    const d = ELEM_BYTES[tensors.get(b)!.dtype] - ELEM_BYTES[tensors.get(a)!.dtype];
    return d !== 0 ? d : a < b ? -1 : a > b ? 1 : 0;
  });
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const expected = numelOf(t.shape) * (ELEM_BYTES[t.dtype] ?? NaN);
    if (t.data.byteLength !== expected) {
      throw new RangeError(
        `${name}: ${t.data.byteLength} bytes do not hold ${t.dtype} [${
          t.shape.join(", ")
        }] (${expected} bytes)`,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  let json = JSON.stringify(header);
  const raw = new TextEncoder().encode(json);
  json += " ".repeat((8 - ((8 + raw.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let pos = 8 + head.length;
  for (const name of names) {
    const d = tensors.get(name)!.data;
    out.set(d, pos);
    pos += d.byteLength;
  }
  return out;
}

/** Parses safetensors bytes; `source` names the file in error messages. */
export function decodeSafetensors(bytes: Uint8Array, source = "safetensors data"): SafetensorsFile {
  if (bytes.byteLength < 8) {
    throw new Error(`${source} is not a safetensors file: only ${bytes.byteLength} bytes`);
  }
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n < 2 || 8 + n > bytes.byteLength) {
    throw new Error(
      `${source} is not a valid safetensors file (truncated or corrupt): header length ${n} with ${bytes.byteLength} bytes in the file`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new Error(`${source} has a corrupt safetensors header: ${(e as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new Error(`${source} has a safetensors header that is not a JSON object`);
  }
  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = value as Record<string, string>;
      continue;
    }
    const v = value as { dtype?: string; shape?: unknown; data_offsets?: unknown };
    const dtype = v.dtype as SafeDType;
    if (!(dtype in ELEM_BYTES)) throw new Error(`${source}: tensor ${name} has unknown dtype ${v.dtype}`);
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`${source}: tensor ${name} has an invalid shape ${JSON.stringify(v.shape)}`);
    }
    const offs = v.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o))) {
      throw new Error(`${source}: tensor ${name} has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as number[];
    const expected = numelOf(v.shape) * ELEM_BYTES[dtype];
    if (begin < 0 || end < begin || end > dataLen) {
      throw new Error(
        `${source} is truncated or corrupt: tensor ${name} spans bytes [${begin}, ${end}) of a ${dataLen}-byte data section`,
      );
    }
    if (end - begin !== expected) {
      throw new Error(
        `${source}: tensor ${name} has ${end - begin} bytes for ${dtype} [${
          v.shape.join(", ")
        }] (${expected} expected)`,
      );
    }
    spans.push({ name, begin, end });
    tensors.set(name, {
      dtype,
      shape: v.shape as number[],
      data: bytes.subarray(dataStart + begin, dataStart + end),
    });
  }
  // The tensors must tile the data section: an overlap would alias two tensors, a gap hide bytes.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let last = "the start of the data";
  for (const t of spans) {
    if (t.begin < at) {
      throw new Error(
        `${source} is corrupt: tensor ${t.name} (bytes [${t.begin}, ${t.end})) overlaps ${last}, which ends at ${at}`,
      );
    }
    if (t.begin > at) {
      throw new Error(`${source} is corrupt: data bytes [${at}, ${t.begin}) belong to no tensor`);
    }
    if (t.end > t.begin) [at, last] = [t.end, `tensor ${t.name}`];
  }
  if (at !== dataLen) {
    throw new Error(`${source} is corrupt: its tensors cover ${at} of ${dataLen} data bytes`);
  }
  return { tensors, metadata };
}

/** Writes a safetensors file atomically (a temporary file in the same folder, then a rename). */
export async function saveSafetensors(
  path: string,
  tensors: Map<string, SafeTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const bytes = encodeSafetensors(tensors, metadata);
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`Could not write ${path}: ${(e as Error).message}`);
  }
}

/** Reads a safetensors file. */
export async function loadSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`Checkpoint file ${path} does not exist`);
    throw new Error(`Could not read ${path}: ${(e as Error).message}`);
  }
  return decodeSafetensors(bytes, path);
}
