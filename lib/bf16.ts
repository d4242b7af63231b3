/** bf16 <-> f32 conversion on the host, bit-exact with the kernels (round to nearest even). */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Rounds f32 values to bf16 bit patterns. */
export function f32ToBf16(src: ArrayLike<number>, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) {
    f32[0] = src[i];
    const bits = u32[0];
    if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
      dst[i] = (bits >>> 16) | 0x0040; // keep NaN a quiet NaN
    } else {
      dst[i] = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
    }
  }
  return dst;
}

/** Expands bf16 bit patterns to f32 values. */
export function bf16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return dst;
}

/** The value an f32 takes after a round trip through bf16. */
export function roundBf16(x: number): number {
  return bf16ToF32(f32ToBf16([x]))[0];
}
