/**
 * OPENBLAS_CORETYPE for CPUs that OpenBLAS's own detection does not know.
 *
 * Debian's OpenBLAS (0.3.21) picks its kernels by CPU model number; on a model it does not list (this
 * project's CI machine reports family 6 model 207) it falls back to the generic Prescott kernels, which
 * ran a 1024^3 sgemm at 6 GFLOP/s there against 40-50 with the AVX-512 ones. OpenBLAS reads
 * OPENBLAS_CORETYPE once, when it loads, so the choice is made here from the CPU's feature flags
 * before the host library (and OpenBLAS with it) is opened. Each choice needs only the flags tested,
 * so it never selects instructions the CPU lacks; a value already in the environment is left alone.
 */

import { cpuInfoText } from "../../cuda/build.ts";

/** The OpenBLAS core for a /proc/cpuinfo text, or undefined to leave the choice to OpenBLAS. */
export function openblasCoreFor(cpuinfo: string): string | undefined {
  const flags = new Set(cpuinfo.match(/^flags\s*:\s*(.*)$/m)?.[1].split(/\s+/) ?? []);
  const has = (...names: string[]) => names.every((f) => flags.has(f));
  if (has("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_bf16")) return "Cooperlake";
  if (has("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd")) return "SkylakeX";
  if (has("avx2", "fma")) return "Haswell";
  return undefined;
}

/** Sets OPENBLAS_CORETYPE from this CPU's flags unless it is set already (x86-64 Linux only). */
export function chooseOpenblasCore(): void {
  if (Deno.build.arch !== "x86_64" || Deno.env.get("OPENBLAS_CORETYPE") !== undefined) return;
  const info = cpuInfoText();
  if (!info) return;
  const core = openblasCoreFor(info);
  if (core) Deno.env.set("OPENBLAS_CORETYPE", core);
}
