/** The OpenBLAS kernel choice made from /proc/cpuinfo flags before the host library loads. */
import assert from "node:assert/strict";
import { openblasCoreFor } from "../lib/ffi/openblas_core.ts";

const info = (flags: string) => `processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 ${flags}\n`;

Deno.test("the OpenBLAS core is the best one whose instructions the CPU has", () => {
  const avx512 = "avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl";
  assert.equal(openblasCoreFor(info(`${avx512} avx512_bf16`)), "Cooperlake");
  assert.equal(openblasCoreFor(info(avx512)), "SkylakeX");
  // AVX-512 without the BW/VL subsets (Knights Landing) must not get the SkylakeX kernels.
  assert.equal(openblasCoreFor(info("avx2 fma avx512f avx512cd")), "Haswell");
  assert.equal(openblasCoreFor(info("avx2")), undefined);
  assert.equal(openblasCoreFor("no flags line"), undefined);
});
