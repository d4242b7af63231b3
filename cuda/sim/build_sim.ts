/**
 * Builds the CUDA simulator library (`deno task build:cuda-sim`): the cuda/gpu sources, rewritten by
 * rewrite.ts, compiled as host C++ with g++ against the simulator's device header and CUDA headers, and
 * linked with the simulator's runtime, PTX, cuBLASLt and NCCL (cuda/sim/*.cpp).
 */
import { rewriteForSim } from "./rewrite.ts";

const SIM_DIR = decodeURIComponent(new URL("./", import.meta.url).pathname);
const GPU_DIR = decodeURIComponent(new URL("../gpu/", import.meta.url).pathname);

export interface SimBuildOptions {
  /** Folder of the CUDA sources to compile (cuda/gpu, or a patched copy for the broken-variant test). */
  sourceDir?: string;
  /** Extra -D definitions ("NAME=VALUE" or "NAME"). */
  defines?: string[];
  quiet?: boolean;
}

/** Files of the simulator itself, for staleness checks. */
export function simSources(): string[] {
  return [...Deno.readDirSync(SIM_DIR)].filter((e) => e.isFile && /\.(cpp|h)$/.test(e.name)).map((e) =>
    `${SIM_DIR}${e.name}`
  ).concat(
    [...Deno.readDirSync(`${SIM_DIR}include`)].map((e) => `${SIM_DIR}include/${e.name}`),
  ).sort();
}

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; log: string }> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { ok: r.success, log: dec.decode(r.stderr) + dec.decode(r.stdout) };
}

/** Runs `jobs` at most `width` at a time; throws with every failure's log. */
async function runAll(jobs: (() => Promise<{ ok: boolean; log: string; what: string }>)[], width: number) {
  const failures: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) {
      const r = await jobs[next++]();
      if (!r.ok) failures.push(`${r.what}:\n${r.log}`);
    }
  }));
  if (failures.length) throw new Error(`Compiling the CUDA simulator failed:\n${failures.join("\n")}`);
}

/** Compiles the simulator library into `output` (written directly; the caller renames it into place). */
export async function buildSimLibrary(output: string, opts: SimBuildOptions = {}): Promise<void> {
  const cxx = Deno.env.get("CXX") ?? "g++";
  const work = await Deno.makeTempDir({ prefix: "vswift_sim_" });
  try {
    const srcDir = opts.sourceDir ?? GPU_DIR;
    const gen = `${work}/gpu`;
    await Deno.mkdir(gen);
    const units: string[] = [];
    for (const e of Deno.readDirSync(srcDir)) {
      if (!e.isFile || !/\.(cu|cuh|h)$/.test(e.name)) continue;
      const text = await Deno.readTextFile(`${srcDir}/${e.name}`);
      await Deno.writeTextFile(`${gen}/${e.name}`, rewriteForSim(text, e.name));
      if (e.name.endsWith(".cu")) units.push(`${gen}/${e.name}`);
    }
    const flags = [
      "-std=c++17",
      "-O2",
      "-fPIC",
      "-g0",
      "-Wall",
      "-Wno-unknown-pragmas",
      "-Wno-unused-parameter",
      "-Wno-unused-variable",
      "-Wno-unused-function",
      // Fibers switch stacks under the compiler's feet: no stack protector or split-stack tricks.
      "-fno-stack-protector",
      `-I${SIM_DIR}include`,
      `-I${SIM_DIR}`,
      ...(opts.defines ?? []).map((d) => `-D${d}`),
    ];
    const objects: string[] = [];
    const jobs = [
      ...units.map((u) => ({ src: u, pre: ["-x", "c++", "-include", `${SIM_DIR}device.h`] })),
      ...[...Deno.readDirSync(SIM_DIR)].filter((e) => e.name.endsWith(".cpp")).map((e) => ({
        src: `${SIM_DIR}${e.name}`,
        pre: [] as string[],
      })),
    ].map((j, i) => {
      const obj = `${work}/${i}.o`;
      objects.push(obj);
      return async () => ({
        ...(await run(cxx, [...flags, ...j.pre, "-c", j.src, "-o", obj])),
        what: j.src,
      });
    });
    await runAll(jobs, Math.max(1, Math.min(4, navigator.hardwareConcurrency)));
    const link = await run(cxx, [
      "-shared",
      "-o",
      output,
      ...objects,
      "-ldl",
      "-lpthread",
      "-lrt",
      "-Wl,--no-undefined",
      "-Wl,-z,nodelete",
    ]);
    if (!link.ok) throw new Error(`Linking the CUDA simulator failed:\n${link.log}`);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
