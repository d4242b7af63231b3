/** Helpers shared by the ops: argument checks and f32 gradient accumulation. */
import type { Graph } from "../autograd.ts";
import { native } from "../ffi/native.ts";
import { memset } from "../ffi/pointers.ts";
import type { DType, Tensor } from "../tensor.ts";

export const k = () => native();

/** Throws a RangeError unless `cond`; `what` is evaluated only on failure. */
export function expect(cond: boolean, what: () => string): asserts cond {
  if (!cond) throw new RangeError(what());
}

export function expectFloat(op: string, ...ts: Tensor[]): DType {
  const dt = ts[0].dtype;
  for (const t of ts) {
    expect(t.dtype === "f32" || t.dtype === "bf16", () => `${op}: ${t} must be f32 or bf16`);
    expect(t.dtype === dt, () => `${op}: dtypes differ (${ts.map(String).join(", ")})`);
  }
  return dt;
}

/** Number of rows of `t` seen as (rows, cols). */
export function rowsOf(op: string, t: Tensor, cols: number): number {
  expect(cols > 0 && t.numel % cols === 0, () => `${op}: ${t} is not a whole number of rows of ${cols}`);
  return t.numel / cols;
}

/**
 * Lands an f32 gradient (LayerNorm dgamma, bias sums) in the gradient of `t`, whatever that gradient's
 * dtype; `src` is consumed.
 */
export function landF32(g: Graph, t: Tensor, src: Tensor): void {
  if (!t.requiresGrad) return;
  const wanted = t.gradBuffer?.dtype ?? t.gradDtype ?? t.dtype;
  if (wanted === "f32") return g.passGrad(t, src, true);
  const cast = g.alloc(t.shape, wanted);
  k().call("vs_cast", 0, cast.code, cast.numel, src.ptr, cast.ptr, k().stream);
  g.passGrad(t, cast, true);
}

/** Runs a kernel that adds into a zeroed f32 buffer and lands the result in the gradient of `t`. */
export function accumulateF32(g: Graph, t: Tensor, write: (dst: Tensor) => void): void {
  if (!t.requiresGrad) return;
  const tmp = scratchF32(g, t.shape);
  write(tmp);
  landF32(g, t, tmp);
}

/** A zeroed f32 buffer for kernels that add into their output. */
export function scratchF32(g: Graph, shape: readonly number[]): Tensor {
  const t = g.alloc(shape, "f32");
  memset(t.ptr, 0, t.bytes);
  return t;
}
