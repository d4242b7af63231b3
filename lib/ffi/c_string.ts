/** Text that a C function wrote into a caller's buffer. */

/** The NUL-terminated text in `buf` (all of it when no NUL was written). */
export function cString(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}
