/**
 * What a self-test kernel case is (its buffers, tolerance and call) and the helpers every case file draws
 * its inputs with. cases.ts and mix_cases.ts both build on this file, so neither imports the other.
 */
import type { Native } from "../ffi/native.ts";
import type { Pointer } from "../ffi/pointers.ts";
import type { Rng } from "../rng.ts";
import type { DType } from "../tensor.ts";

export interface CaseBuffer {
  dtype: DType;
  n: number;
  /** Input values (or the starting values of an output that the kernel adds into). */
  data?: ArrayLike<number>;
  /** Compared after the call. Buffers without `data` are filled with NaN first. */
  output?: boolean;
  /** A tolerance for this output other than the case's. */
  tol?: number;
}

export interface KernelCase {
  /** "vs_gemm bf16->f32 T N bias" and the like. */
  name: string;
  /** Maximum allowed max|cuda - host| / max|host| over each output. */
  tol: number;
  buffers: Record<string, CaseBuffer>;
  call(n: Native, p: Record<string, Pointer>): void;
}

/** Kernel dtype codes of cuda/vswift.h. */
export const F32 = 0;
export const BF16 = 1;

/** The default tolerance by compute dtype. */
export const TOL: Record<"f32" | "bf16", number> = { f32: 1e-4, bf16: 1e-2 };

/** Fresh normal draws (never zeros), scaled. */
export function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

/** The kernel dtype code of a compute dtype. */
export function code(dt: "f32" | "bf16"): number {
  return dt === "f32" ? F32 : BF16;
}
