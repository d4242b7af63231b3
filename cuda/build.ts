/**
 * Builds the native kernel libraries, three builds of one ABI (cuda/vswift.h): `deno task build` (host),
 * `deno task build:cuda` and `deno task build:cuda-sim`.
 *
 * The host build (gcc, OpenMP, OpenBLAS) is what tests and GPU-less machines run; lib/ffi rebuilds it on
 * load whenever it is missing or older than its sources. The CUDA build needs only nvcc and the CUDA
 * runtime: cuBLASLt and NCCL are opened at run time. The simulator build (cuda/sim) compiles the same
 * cuda/gpu sources as host C++ and runs them with GPU semantics on the CPU, for testing without a GPU.
 */
import { parseArgs } from "node:util";
import { buildSimLibrary, simSources } from "./sim/build_sim.ts";

/**
 * host and cuda: the two builds of vswift.h; cuda-sim: the cuda/gpu sources compiled for the CPU with GPU
 * semantics; decode: the in-process video decoder (FFmpeg's libraries).
 */
export type NativeTarget = "host" | "cuda" | "cuda-sim" | "decode";

const TARGETS: NativeTarget[] = ["host", "cuda", "cuda-sim", "decode"];

const ROOT = new URL("../", import.meta.url);
const rootPath = decodeURIComponent(ROOT.pathname);

/** Absolute path of the shared library for a target. */
export function libraryPath(target: NativeTarget): string {
  return `${rootPath}build/libvswift_${target.replace("-", "_")}.so`;
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
  if (target === "cuda") return listSources("gpu", [".cu"]);
  return listSources(target, [".c"]);
}

/** Every file whose change makes the library stale (sources, private headers and the ABI header). */
function dependencies(target: NativeTarget): string[] {
  if (target === "decode") return listSources("decode", [".c", ".h"]);
  const dir = target === "host" ? "host" : "gpu";
  const own = [`${rootPath}cuda/vswift.h`, ...listSources(dir, [".c", ".cu", ".h", ".cuh"])];
  return target === "cuda-sim" ? [...own, ...simSources()] : own;
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
  if (target === "host") {
    let stamp = "";
    try {
      stamp = Deno.readTextFileSync(stampPath(target));
    } catch {
      return true;
    }
    if (stampMismatch(stamp)) return true;
  }
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

/**
 * The -march of the host build: `native` (the library is built on the machine that loads it, and rebuilt
 * when that machine's CPU changes, see {@link isStale}), or VSWIFT_HOST_MARCH for a portable library,
 * e.g. `x86-64-v3` (AVX2 + FMA) or `x86-64`. The choice changes speed, not results: the kernels use no
 * contraction (ISO C mode keeps -ffp-contract=off) and fmaf rounds exactly with or without FMA hardware.
 */
export function hostMarch(): string {
  return Deno.env.get("VSWIFT_HOST_MARCH") || "native";
}

let cpuInfoCache: string | undefined | null = null;

/**
 * /proc/cpuinfo, or undefined where it cannot be read. Deno lets only --allow-all read it directly, so
 * without that a `cat` child process reads it (tasks that build have --allow-run).
 */
export function cpuInfoText(): string | undefined {
  if (cpuInfoCache !== null) return cpuInfoCache;
  cpuInfoCache = undefined;
  try {
    cpuInfoCache = Deno.readTextFileSync("/proc/cpuinfo");
  } catch {
    try {
      const out = new Deno.Command("cat", { args: ["/proc/cpuinfo"], stdout: "piped", stderr: "null" })
        .outputSync();
      if (out.success) cpuInfoCache = new TextDecoder().decode(out.stdout);
    } catch {
      // No /proc or no permission to run cat: the CPU stays unknown.
    }
  }
  return cpuInfoCache;
}

/** This machine's CPU as the stamp records it (model and feature flags), or undefined when unknown. */
function cpuIdentity(): string | undefined {
  const info = cpuInfoText();
  if (!info) return undefined;
  const field = (name: string) => info.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m"))?.[1] ?? "";
  return `${field("model name")} | ${field("flags")}`;
}

/** What the host library was built for: the -march and, for `native`, this machine's CPU. */
function hostBuildStamp(): string {
  const march = hostMarch();
  if (march !== "native") return `march ${march}\n`;
  return `march native\n${cpuIdentity() ?? "unknown"}\n`;
}

/**
 * True when a stamp does not fit this machine: another -march, or for `native` another CPU. A process
 * that cannot see the CPU accepts the recorded one rather than rebuilding.
 */
function stampMismatch(stamp: string): boolean {
  const [march, cpu] = stamp.split("\n");
  const want = hostBuildStamp().split("\n");
  if (march !== want[0]) return true;
  return march === "march native" && want[1] !== "unknown" && cpu !== want[1];
}

function stampPath(target: NativeTarget): string {
  return `${libraryPath(target)}.stamp`;
}

/** gcc for a shared library of `sources`: warnings are errors, and `libs` are linked with no undefined symbols. */
function gccShared(output: string, flags: string[], sources: string[], libs: string[]): string[] {
  return [
    Deno.env.get("CC") ?? "gcc",
    "-std=c11",
    ...flags,
    "-fPIC",
    "-shared",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
    "-o",
    output,
    ...sources,
    ...libs,
    "-lm",
    "-Wl,--no-undefined",
    // Never unmapped: Deno unloads FFI libraries at exit while idle OpenMP workers still run in libgomp.
    "-Wl,-z,nodelete",
  ];
}

/** The compiler command line for a target, writing to `output`. */
export function compileCommand(target: NativeTarget, output: string): string[] {
  if (target === "decode") {
    // Linked at build time against Debian's FFmpeg libraries; a machine without their -dev packages
    // fails this build and the loader keeps one ffmpeg process per clip.
    return gccShared(output, ["-O2", "-fvisibility=hidden"], nativeSources("decode"), [
      "-lavformat",
      "-lavcodec",
      "-lswscale",
      "-lavutil",
    ]);
  }
  if (target === "host") {
    return gccShared(
      output,
      [
        "-O3",
        `-march=${hostMarch()}`,
        // Let GCC if-convert the selects of the exp/GELU loops and inline sqrt in the AdamW loop, so that
        // they vectorise. Values are unchanged: no code here reads the FP exception flags or errno.
        "-fno-trapping-math",
        "-fno-math-errno",
        "-fopenmp",
      ],
      nativeSources("host"),
      ["-lopenblas"],
    );
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
  decode:
    "the in-process decoder needs gcc and FFmpeg's development files: apt-get install libavformat-dev libavcodec-dev libswscale-dev libavutil-dev",
  "cuda-sim": "the CUDA simulator build needs g++ (C++17): apt-get install g++",
};

/**
 * Compiles a target into build/, writing a temporary file first and renaming it so that a process
 * loading the library never sees a half-written one. Throws with the compiler output on failure.
 */
export async function buildNative(target: NativeTarget, opts: { quiet?: boolean } = {}): Promise<string> {
  const out = libraryPath(target);
  await Deno.mkdir(`${rootPath}build`, { recursive: true });
  const tmp = `${out}.${Deno.pid}.tmp`;
  if (target === "cuda-sim") {
    if (!opts.quiet) console.error(`building cuda-sim kernels (g++, cuda/sim) -o ${out}`);
    const started = performance.now();
    try {
      await buildSimLibrary(tmp, { quiet: opts.quiet });
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw new Error(`Building the cuda-sim kernels failed; ${HINTS[target]}\n${(e as Error).message}`);
    }
    await Deno.rename(tmp, out);
    if (!opts.quiet) console.error(`built ${out} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return out;
  }
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
  if (target === "host") await Deno.writeTextFile(stampPath(target), hostBuildStamp());
  if (!opts.quiet) console.error(`built ${out} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return out;
}

/** Builds a library when it is missing or stale; returns its path. */
export async function ensureBuilt(target: NativeTarget, opts: { quiet?: boolean } = {}): Promise<string> {
  if (isStale(target)) await buildNative(target, opts);
  return libraryPath(target);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { target: { type: "string", default: "host" }, force: { type: "boolean", default: false } },
  });
  const target = values.target as NativeTarget;
  if (!TARGETS.includes(target)) {
    console.error(`Unknown --target ${target}; use ${TARGETS.join(", ")}`);
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
