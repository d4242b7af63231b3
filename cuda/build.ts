/**
 * Builds the native kernel libraries: `deno task build` (host) and `deno task build:cuda`.
 *
 * The host build (gcc, OpenMP, OpenBLAS) is what tests and GPU-less machines run; lib/ffi rebuilds it on
 * load whenever it is missing or older than its sources. The CUDA build needs only nvcc and the CUDA
 * runtime: cuBLASLt and NCCL are opened at run time.
 */
import { parseArgs } from "node:util";

export type NativeTarget = "host" | "cuda";

const ROOT = new URL("../", import.meta.url);
const rootPath = decodeURIComponent(ROOT.pathname);

/** Absolute path of the shared library for a target. */
export function libraryPath(target: NativeTarget): string {
  return `${rootPath}build/libvswift_${target}.so`;
}

function listSources(dir: string, exts: string[]): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(`${rootPath}cuda/${dir}`)) {
    if (entry.isFile && exts.some((e) => entry.name.endsWith(e))) {
      out.push(`${rootPath}cuda/${dir}/${entry.name}`);
    }
  }
  return out.sort();
}

/** Compiled sources of a target (translation units only). */
export function nativeSources(target: NativeTarget): string[] {
  return target === "host" ? listSources("host", [".c"]) : listSources("gpu", [".cu"]);
}

/** Every file whose change makes the library stale (sources, private headers and the ABI header). */
function dependencies(target: NativeTarget): string[] {
  const dir = target === "host" ? "host" : "gpu";
  return [`${rootPath}cuda/vswift.h`, ...listSources(dir, [".c", ".cu", ".h", ".cuh"])];
}

function mtime(path: string): number {
  try {
    return Deno.statSync(path).mtime?.getTime() ?? 0;
  } catch {
    return 0;
  }
}

/** True when the library is missing or older than one of its sources. */
export function isStale(target: NativeTarget): boolean {
  const built = mtime(libraryPath(target));
  if (built === 0) return true;
  return dependencies(target).some((f) => mtime(f) > built);
}

function findNvcc(): string {
  const candidates = [
    Deno.env.get("NVCC"),
    Deno.env.get("CUDA_HOME") && `${Deno.env.get("CUDA_HOME")}/bin/nvcc`,
    Deno.env.get("CUDA_PATH") && `${Deno.env.get("CUDA_PATH")}/bin/nvcc`,
    "/usr/local/cuda/bin/nvcc",
  ].filter((c): c is string => !!c);
  for (const c of candidates) if (mtime(c) > 0) return c;
  return "nvcc";
}

/** The compiler command line for a target, writing to `output`. */
export function compileCommand(target: NativeTarget, output: string): string[] {
  if (target === "host") {
    return [
      Deno.env.get("CC") ?? "gcc",
      "-std=c11",
      "-O3",
      "-mavx2",
      "-mfma",
      "-fopenmp",
      "-fPIC",
      "-shared",
      "-Wall",
      "-Wextra",
      "-Wno-unused-parameter",
      "-Werror",
      "-o",
      output,
      ...nativeSources("host"),
      "-lopenblas",
      "-lm",
      "-Wl,--no-undefined",
      // Never unmapped: Deno unloads FFI libraries at exit while idle OpenMP workers still run in libgomp.
      "-Wl,-z,nodelete",
    ];
  }
  return [
    findNvcc(),
    "-std=c++17",
    "-O3",
    "-gencode",
    "arch=compute_80,code=sm_80",
    "-gencode",
    "arch=compute_90a,code=sm_90a",
    // PTX for the driver to compile on GPUs newer than Hopper (sm_100, sm_120, ...): without it every
    // launch there fails with cudaErrorNoKernelImageForDevice. compute_90, not 90a: arch-specific PTX
    // cannot be compiled for another architecture.
    "-gencode",
    "arch=compute_90,code=compute_90",
    "-Xcompiler",
    "-fPIC,-Wall,-Wextra,-Wno-unused-parameter",
    "-Werror",
    "all-warnings",
    "-shared",
    "-cudart",
    "static",
    "-o",
    output,
    ...nativeSources("cuda"),
    "-ldl",
    "-Xlinker",
    "--no-undefined",
    "-Xlinker",
    "-z,nodelete",
  ];
}

const HINTS: Record<NativeTarget, string> = {
  host: "the host build needs gcc with OpenMP and OpenBLAS: apt-get install gcc libopenblas-dev",
  cuda: "the CUDA build needs nvcc (CUDA 12 or 13) on PATH, in CUDA_HOME or at /usr/local/cuda",
};

/**
 * Compiles a target into build/, writing a temporary file first and renaming it so that a process
 * loading the library never sees a half-written one. Throws with the compiler output on failure.
 */
export async function buildNative(target: NativeTarget, opts: { quiet?: boolean } = {}): Promise<string> {
  const out = libraryPath(target);
  await Deno.mkdir(`${rootPath}build`, { recursive: true });
  const tmp = `${out}.${Deno.pid}.tmp`;
  const [cmd, ...args] = compileCommand(target, tmp);
  if (!opts.quiet) console.error(`building ${target} kernels: ${cmd} ... -o ${out}`);
  const started = performance.now();
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new Error(
      `Could not run ${cmd} to build the ${target} kernels (${(e as Error).message}); ${HINTS[target]}`,
    );
  }
  const log = new TextDecoder().decode(result.stderr) + new TextDecoder().decode(result.stdout);
  if (!result.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`Building the ${target} kernels failed (exit ${result.code}); ${HINTS[target]}\n${log}`);
  }
  await Deno.rename(tmp, out);
  if (!opts.quiet) console.error(`built ${out} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return out;
}

/** Builds the host library when it is missing or stale; returns its path. */
export async function ensureBuilt(target: NativeTarget): Promise<string> {
  if (isStale(target)) await buildNative(target);
  return libraryPath(target);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { target: { type: "string", default: "host" }, force: { type: "boolean", default: false } },
  });
  const target = values.target as NativeTarget;
  if (target !== "host" && target !== "cuda") {
    console.error(`Unknown --target ${target}; use host or cuda`);
    Deno.exit(2);
  }
  try {
    if (values.force || isStale(target)) await buildNative(target);
    else console.error(`${libraryPath(target)} is up to date`);
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(1);
  }
}
