/**
 * Builds the CUDA simulator library (`deno task build:cuda-sim`): the cuda/gpu sources, rewritten by
 * rewrite.ts, compiled as host C++ with g++ against the simulator's device header and CUDA headers, and
 * linked with the simulator's runtime, PTX, cuBLASLt and NCCL (cuda/sim/*.cpp).
 */
import { createHash } from "node:crypto";
import { rewriteForSim } from "./rewrite.ts";

const SIM_DIR = decodeURIComponent(new URL("./", import.meta.url).pathname);
const GPU_DIR = decodeURIComponent(new URL("../gpu/", import.meta.url).pathname);
/** Objects by the hash of everything that went into them, so that a rebuild (or a patched copy of one
 * source, as the broken-variant test makes) compiles only what changed. */
const CACHE_DIR = decodeURIComponent(new URL("../../build/sim_cache/", import.meta.url).pathname);

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

/** The text of `file` and of every local header it includes, recursively (for the object's hash). */
function withIncludes(file: string, seen = new Set<string>()): string {
  if (seen.has(file)) return "";
  seen.add(file);
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    return "";
  }
  const dir = file.slice(0, file.lastIndexOf("/") + 1);
  let all = text;
  for (const m of text.matchAll(/#include\s+"([^"]+)"/g)) all += withIncludes(dir + m[1], seen);
  return all;
}

const CACHE_KEEP = 200;

/** Keeps the cache to the objects just used plus the newest others, CACHE_KEEP files in all. */
function pruneCache(used: Set<string>): void {
  const others = [...Deno.readDirSync(CACHE_DIR)].map((e) => `${CACHE_DIR}${e.name}`).filter((f) =>
    !used.has(f)
  )
    .map((f) => ({ f, t: Deno.statSync(f).mtime?.getTime() ?? 0 })).sort((a, b) => b.t - a.t);
  for (const { f } of others.slice(Math.max(0, CACHE_KEEP - used.size))) Deno.removeSync(f);
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
    await Deno.mkdir(CACHE_DIR, { recursive: true });
    // Every unit sees the simulator's headers (device.h, ptx.h, vsim.h, include/) through -include / -I.
    const simHeaders = simSources().filter((f) => !f.endsWith(".cpp")).map((f) => Deno.readTextFileSync(f))
      .join("\n");
    const jobs = [
      ...units.map((u) => ({ src: u, pre: ["-x", "c++", "-include", `${SIM_DIR}device.h`] })),
      ...[...Deno.readDirSync(SIM_DIR)].filter((e) => e.name.endsWith(".cpp")).map((e) => ({
        src: `${SIM_DIR}${e.name}`,
        pre: [] as string[],
      })),
    ].map((j) => {
      const args = [...flags, ...j.pre];
      const hash = createHash("sha256").update(cxx).update(args.join(" ")).update(simHeaders).update(
        withIncludes(j.src),
      ).digest("hex").slice(0, 32);
      const obj = `${CACHE_DIR}${hash}.o`;
      objects.push(obj);
      return async () => {
        try {
          Deno.statSync(obj);
          return { ok: true, log: "", what: j.src };
        } catch { /* not cached: compile */ }
        const tmp = `${work}/${hash}.o`;
        const r = await run(cxx, [...args, "-c", j.src, "-o", tmp]);
        if (r.ok) await Deno.rename(tmp, obj).catch(() => Deno.copyFile(tmp, obj));
        return { ...r, what: j.src };
      };
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
    pruneCache(new Set(objects));
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
