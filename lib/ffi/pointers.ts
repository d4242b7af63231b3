/** Pointer arithmetic and host <-> device copies, so that no module outside lib/ffi/ touches FFI. */
import { native } from "./native.ts";

export type Pointer = Deno.PointerValue;

/** `p` advanced by `bytes`. */
export function ptrOffset(p: Pointer, bytes: number): Pointer {
  if (bytes === 0) return p;
  if (p === null) throw new RangeError(`Cannot offset a NULL pointer by ${bytes} bytes`);
  return Deno.UnsafePointer.offset(p as Deno.PointerObject, bytes);
}

/** The address of a pointer as a number (for alignment checks and messages). */
export function ptrAddress(p: Pointer): number {
  return p === null ? 0 : Number(Deno.UnsafePointer.value(p));
}

/** A pointer to the bytes of a host array (valid while the array is alive and not detached). */
export function hostPointer(a: ArrayBufferView): Pointer {
  return Deno.UnsafePointer.of(a as unknown as BufferSource);
}

/** Copies a host array into device memory at `dst`. */
export function copyToDevice(dst: Pointer, src: ArrayBufferView): void {
  native().upload(dst, src);
}

/** Copies device memory at `src` into a host array (synchronising the compute stream first). */
export function copyFromDevice(dst: ArrayBufferView, src: Pointer): void {
  native().download(dst, src);
}

/** Device-to-device copy. */
export function copyDevice(dst: Pointer, src: Pointer, bytes: number): void {
  if (bytes > 0) native().call("vs_memcpy", dst, src, bytes, 3, native().stream);
}

/** Sets `bytes` bytes at `dst` to `value`. */
export function memset(dst: Pointer, value: number, bytes: number): void {
  if (bytes > 0) native().call("vs_memset", dst, value, bytes, native().stream);
}

/** Allocates device memory (256-byte aligned); NULL for 0 bytes. */
export function deviceAlloc(bytes: number): Pointer {
  return native().alloc(bytes);
}

export function deviceFree(p: Pointer): void {
  native().free(p);
}
