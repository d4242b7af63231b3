/** Runs a kernel case on two builds (CUDA against the host reference) and compares the outputs. */
import { bf16ToF32, f32ToBf16 } from "../bf16.ts";
import { isDeviceFault, type Native } from "../ffi/native.ts";
import type { Pointer } from "../ffi/pointers.ts";
import { type DType, DTYPE_BYTES } from "../tensor.ts";
import type { CaseBuffer, KernelCase } from "./kernel_case.ts";

export interface CaseResult {
  name: string;
  /** Worst max|test - reference| / max|reference| over the outputs. */
  error: number;
  tol: number;
  ok: boolean;
  /** Which output was worst, or what went wrong. */
  detail: string;
  ms: number;
  /** The CUDA build reported a sticky device fault: no later CUDA result can be trusted. */
  deviceFault?: boolean;
}

function encode(b: CaseBuffer): ArrayBufferView {
  const src = b.data!;
  switch (b.dtype) {
    case "f32":
      return Float32Array.from(src);
    case "bf16":
      return f32ToBf16(src);
    case "i32":
      return Int32Array.from(src);
    case "u8":
      return Uint8Array.from(src);
  }
}

function decode(dtype: DType, bytes: Uint8Array): Float64Array {
  switch (dtype) {
    case "f32":
      return Float64Array.from(new Float32Array(bytes.buffer));
    case "bf16":
      return Float64Array.from(bf16ToF32(new Uint16Array(bytes.buffer)));
    case "i32":
      return Float64Array.from(new Int32Array(bytes.buffer));
    case "u8":
      return Float64Array.from(bytes);
  }
}

/** Runs the case on one build and returns the raw bytes of its outputs. */
export function runCase(n: Native, c: KernelCase): Map<string, Uint8Array> {
  const ptrs: Record<string, Pointer> = {};
  let failing = true;
  try {
    for (const [name, b] of Object.entries(c.buffers)) {
      const bytes = b.n * DTYPE_BYTES[b.dtype];
      ptrs[name] = n.alloc(bytes);
      // Everything without values starts as NaN (all ones), so an output the kernel skips shows up.
      n.upload(ptrs[name], b.data ? encode(b) : new Uint8Array(bytes).fill(0xff));
    }
    c.call(n, ptrs);
    const out = new Map<string, Uint8Array>();
    for (const [name, b] of Object.entries(c.buffers)) {
      if (!b.output) continue;
      const bytes = new Uint8Array(b.n * DTYPE_BYTES[b.dtype]);
      n.download(bytes, ptrs[name]);
      out.set(name, bytes);
    }
    failing = false;
    return out;
  } finally {
    // A failed case keeps its own error: after a device fault every free fails too.
    n.freeAll(Object.values(ptrs), failing);
  }
}

/** Compares `test` (the CUDA build) with `reference` (the host build) on one case. */
export function compareCase(test: Native, reference: Native, c: KernelCase): CaseResult {
  const start = performance.now();
  let ref: Map<string, Uint8Array>;
  let got: Map<string, Uint8Array>;
  try {
    ref = runCase(reference, c);
  } catch (e) {
    return {
      name: c.name,
      error: Infinity,
      tol: c.tol,
      ok: false,
      detail: `reference failed: ${(e as Error).message}`,
      ms: 0,
    };
  }
  try {
    got = runCase(test, c);
  } catch (e) {
    return {
      name: c.name,
      error: Infinity,
      tol: c.tol,
      ok: false,
      detail: (e as Error).message,
      ms: 0,
      deviceFault: isDeviceFault(e),
    };
  }
  let ok = true;
  let worst = 0;
  let detail = "";
  for (const [name, bytes] of ref) {
    const b = c.buffers[name];
    const r = decode(b.dtype, bytes);
    const t = decode(b.dtype, got.get(name)!);
    let diff = 0;
    let scale = 0;
    let bad = 0;
    for (let i = 0; i < r.length; i++) {
      if (!Number.isFinite(t[i]) && t[i] !== r[i]) bad++;
      else if (Number.isFinite(r[i])) {
        diff = Math.max(diff, Math.abs(t[i] - r[i]));
        scale = Math.max(scale, Math.abs(r[i]));
      }
    }
    const err = bad > 0 ? Infinity : scale > 0 ? diff / scale : diff;
    const tol = b.tol ?? c.tol;
    if (err > tol) ok = false;
    if (err / Math.max(tol, 1e-30) >= worst / Math.max(c.tol, 1e-30) || detail === "") {
      worst = Math.max(worst, err);
      detail = bad > 0
        ? `${name}: ${bad} non-finite values where the reference has numbers`
        : `worst output ${name}`;
    }
  }
  return { name: c.name, error: worst, tol: c.tol, ok, detail, ms: performance.now() - start };
}
