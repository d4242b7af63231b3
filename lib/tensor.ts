/**
 * Tensor: a shape, a dtype and a pointer into device memory (host memory with the host build).
 * Tensors do not own memory; the arena or a persistent allocation does (lib/memory.ts).
 */
import { bf16ToF32, f32ToBf16 } from "./bf16.ts";
import { copyFromDevice, copyToDevice, type Pointer, ptrOffset } from "./ffi/pointers.ts";

export type DType = "f32" | "bf16" | "u8" | "i32";

/** vs_dtype codes of cuda/vswift.h. */
export const DTYPE_CODE: Record<DType, number> = { f32: 0, bf16: 1, u8: 2, i32: 3 };
export const DTYPE_BYTES: Record<DType, number> = { f32: 4, bf16: 2, u8: 1, i32: 4 };

let nextId = 1;

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`Invalid tensor shape [${shape.join(", ")}]`);
    n *= d;
  }
  return n;
}

export class Tensor {
  /** Identity for the tape: views of a tensor share it, so they share one gradient. */
  readonly id: number;
  /** Set for tensors whose gradient the tape tracks (parameters and activations derived from them). */
  requiresGrad = false;
  /** For parameters: the persistent f32 buffer their gradient accumulates into. */
  gradBuffer?: Tensor;
  /** The dtype of this tensor's gradient when it differs from its own (f32 for bias-like tensors). */
  gradDtype?: DType;

  constructor(readonly shape: readonly number[], readonly dtype: DType, readonly ptr: Pointer, id?: number) {
    this.id = id ?? nextId++;
  }

  get numel(): number {
    return numelOf(this.shape);
  }

  get bytes(): number {
    return this.numel * DTYPE_BYTES[this.dtype];
  }

  get code(): number {
    return DTYPE_CODE[this.dtype];
  }

  /** The same memory under another shape with the same number of elements. */
  view(shape: readonly number[]): Tensor {
    if (numelOf(shape) !== this.numel) {
      throw new RangeError(`Cannot view [${this.shape.join(", ")}] as [${shape.join(", ")}]`);
    }
    const t = new Tensor(shape, this.dtype, this.ptr, this.id);
    t.requiresGrad = this.requiresGrad;
    t.gradBuffer = this.gradBuffer;
    return t;
  }

  /** A view of `shape` starting `offset` elements into this tensor's memory. */
  sub(offset: number, shape: readonly number[]): Tensor {
    if (offset < 0 || offset + numelOf(shape) > this.numel) {
      throw new RangeError(
        `Sub-tensor at ${offset} of shape [${shape.join(", ")}] exceeds [${this.shape.join(", ")}]`,
      );
    }
    return new Tensor(shape, this.dtype, ptrOffset(this.ptr, offset * DTYPE_BYTES[this.dtype]));
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(", ")}])`;
  }
}

/** Reads a tensor back to the host; bf16 comes back as f32. */
export function readTensor(t: Tensor): Float32Array | Int32Array | Uint8Array {
  switch (t.dtype) {
    case "f32": {
      const out = new Float32Array(t.numel);
      copyFromDevice(out, t.ptr);
      return out;
    }
    case "bf16": {
      const raw = new Uint16Array(t.numel);
      copyFromDevice(raw, t.ptr);
      return bf16ToF32(raw);
    }
    case "i32": {
      const out = new Int32Array(t.numel);
      copyFromDevice(out, t.ptr);
      return out;
    }
    case "u8": {
      const out = new Uint8Array(t.numel);
      copyFromDevice(out, t.ptr);
      return out;
    }
  }
}

/** Reads a float tensor back as f32 values. */
export function readFloats(t: Tensor): Float32Array {
  if (t.dtype !== "f32" && t.dtype !== "bf16") {
    throw new TypeError(`readFloats needs f32 or bf16, got ${t.dtype}`);
  }
  return readTensor(t) as Float32Array;
}

/** Reads a one-element f32 tensor (a loss or a norm). */
export function readScalar(t: Tensor): number {
  return readFloats(t)[0];
}

/** Writes host values into a tensor, rounding to bf16 where the tensor is bf16. */
export function writeTensor(t: Tensor, data: ArrayLike<number>): void {
  if (data.length !== t.numel) {
    throw new RangeError(`Writing ${data.length} values into ${t} of ${t.numel} elements`);
  }
  switch (t.dtype) {
    case "f32":
      copyToDevice(t.ptr, data instanceof Float32Array ? data : Float32Array.from(data));
      return;
    case "bf16":
      copyToDevice(t.ptr, f32ToBf16(data));
      return;
    case "i32":
      copyToDevice(t.ptr, data instanceof Int32Array ? data : Int32Array.from(data));
      return;
    case "u8":
      copyToDevice(t.ptr, data instanceof Uint8Array ? data : Uint8Array.from(data));
      return;
  }
}
