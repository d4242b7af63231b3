/**
 * The CUDA simulator (cuda/sim): its memory checks name the kernel, block and thread, and the GPU
 * self-test run on it catches deliberately broken copies of the CUDA sources (a swapped mma fragment, a
 * removed __syncthreads, an off-by-one tail, a wrong cuBLASLt transpose), each compiled from a patched
 * copy of cuda/gpu in a temporary folder; launches the driver refuses (past __launch_bounds__, past 1024
 * threads, past the shared-memory opt-in) fail, a static __shared__ array's overrun faults at the guard
 * page, and the attention backward passes under VSWIFT_SIM_SMEM=99. Builds the simulator first (about a
 * minute on 2 cores, then cached per object in build/sim_cache).
 */
import assert from "node:assert/strict";
import { buildNative, isStale } from "../cuda/build.ts";
import { buildSimLibrary } from "../cuda/sim/build_sim.ts";
import { loadLibrary, type Native } from "../lib/ffi/native.ts";
import { kernelCases } from "../lib/selftest/cases.ts";
import { compareCase } from "../lib/selftest/compare.ts";
import "./helpers.ts";

const GPU_DIR = decodeURIComponent(new URL("../cuda/gpu/", import.meta.url).pathname);
const DOCTOR = decodeURIComponent(new URL("../tasks/doctor.ts", import.meta.url).pathname);

if (isStale("cuda-sim")) await buildNative("cuda-sim", { quiet: true });
const host = (await loadLibrary("host")).native!;
const sim = (await loadLibrary("cuda-sim")).native!;
sim.call("vs_init", 0);

function failure(f: () => void): string {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  return "";
}

Deno.test("cuda-sim: out-of-bounds, use-after-free and bad copies are errors naming the kernel, block and thread", () => {
  const a = sim.alloc(4000); // 1000 floats
  try {
    assert.equal(failure(() => sim.call("vs_fill", 0, 1000, 1, a, null)), "");
    // Reaches the guard page: caught at the faulting store, with the thread that made it.
    const far = failure(() => sim.call("vs_fill", 0, 1064, 1, a, null));
    assert.match(
      far,
      /kernel fill_kernel.*block \(1,0,0\), thread \(\d+,0,0\): access to 0x[0-9a-f]+, \d+ bytes past the end of the allocation of 4000 bytes/,
    );
    // One element past the end stays short of the guard: the canary finds it when the kernel ends.
    assert.match(
      failure(() => sim.call("vs_fill", 0, 1001, 1, a, null)),
      /fill_kernel.*past the end of the allocation of 4000 bytes/,
    );
    assert.match(
      failure(() => sim.upload(a, new Float32Array(1001))),
      /vs_memcpy.*4 bytes past the allocation of 4000 bytes/,
    );
  } finally {
    sim.free(a);
  }
  assert.match(failure(() => sim.call("vs_fill", 0, 100, 1, a, null)), /fill_kernel.*thread.*use after free/);
});

interface Variant {
  what: string;
  file: string;
  from: string;
  to: string;
  /** Self-test cases (names) that must catch it. */
  cases: string[];
  /** The doctor's --filter that selects them. */
  filter: string;
}

const VARIANTS: Variant[] = [
  {
    what: "mma B fragments swapped (attention forward, S = Q K^T)",
    file: "attention_kernels.cuh",
    from: "mma_bf16(s[mi][2 * np], qf[mi][kk], b[0], b[1]);",
    to: "mma_bf16(s[mi][2 * np], qf[mi][kk], b[1], b[0]);",
    cases: ["vs_attention_fwd bf16 b2 n37 h2 d64"],
    filter: "vs_attention_fwd bf16 b2 n37",
  },
  {
    what: "__syncthreads removed after the per-channel statistics (patch targets)",
    file: "video.cu",
    from: "    __syncthreads();\n    float* row",
    to: "    float* row",
    cases: ["vs_patch_target f32 (all tokens)"],
    filter: "vs_patch_target f32",
  },
  {
    what: "off-by-one tail loop (fill)",
    file: "elementwise.cu",
    from: "for (int64_t i = done + t; i < n; i += stride) out[i] = value;",
    to: "for (int64_t i = done + t; i <= n; i += stride) out[i] = value;",
    cases: ["vs_fill f32"],
    filter: "vs_fill f32",
  },
  {
    what: "wrong cuBLASLt transpose (operand 1 takes our A's flag)",
    file: "gemm.cu",
    from: "const int32_t op_first = k.trans_b ? lt::kOpT : lt::kOpN;",
    to: "const int32_t op_first = k.trans_a ? lt::kOpT : lt::kOpN;",
    cases: ["vs_gemm f32->f32 NT none"],
    filter: "vs_gemm f32->f32 NT none",
  },
];

function run(n: Native, names: string[]) {
  const cases = kernelCases(2024, { small: true }).filter((c) => names.includes(c.name));
  assert.equal(cases.length, names.length, `self-test cases ${names.join(", ")} exist`);
  return cases.map((c) => compareCase(n, host, c));
}

type Patch = Pick<Variant, "file" | "from" | "to">;

/**
 * Builds a library from a copy of cuda/gpu with `patches` applied and runs the doctor on it once per
 * entry of `runs` (its --filter and environment); the logs. Without patches: the library of the tree.
 */
async function runPatched(
  patches: Patch[],
  runs: { filter: string; env?: Record<string, string> }[],
): Promise<{ code: number; log: string }[]> {
  const dir = await Deno.makeTempDir({ prefix: "vswift_broken_" });
  try {
    let lib: string | undefined;
    if (patches.length) {
      await Deno.mkdir(`${dir}/gpu`);
      for (const e of Deno.readDirSync(GPU_DIR)) {
        if (e.isFile) await Deno.copyFile(`${GPU_DIR}${e.name}`, `${dir}/gpu/${e.name}`);
      }
      for (const p of patches) {
        const text = await Deno.readTextFile(`${dir}/gpu/${p.file}`);
        assert.ok(text.includes(p.from), `${p.file} still contains the line the variant breaks: ${p.from}`);
        await Deno.writeTextFile(`${dir}/gpu/${p.file}`, text.replace(p.from, p.to));
      }
      lib = `${dir}/libvswift_cuda_sim_broken.so`;
      // Objects of the unchanged sources come from build/sim_cache: only the patched ones are compiled.
      await buildSimLibrary(lib, { sourceDir: `${dir}/gpu`, quiet: true });
    }
    const logs: { code: number; log: string }[] = [];
    for (const r of runs) {
      // In its own process: a simulator library points the cuBLASLt and NCCL search at itself, and the
      // device's shared-memory limit (VSWIFT_SIM_SMEM) is read once per process.
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          DOCTOR,
          "--device",
          "cuda-sim",
          ...(lib ? ["--sim-library", lib] : []),
          "--filter",
          r.filter,
        ],
        env: r.env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      logs.push({ code: out.code, log: new TextDecoder().decode(out.stdout) });
    }
    return logs;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Builds the variant from a patched copy of cuda/gpu and runs the doctor's cases on it; the log. */
async function runVariant(v: Variant): Promise<{ code: number; log: string }> {
  return (await runPatched([v], [{ filter: v.filter }]))[0];
}

Deno.test("cuda-sim: the self-test catches each deliberately broken variant of the CUDA sources", async () => {
  for (const v of VARIANTS) {
    for (const r of run(sim, v.cases)) assert.ok(r.ok, `the unbroken build passes ${r.name}: ${r.detail}`);
  }
  // Two variants at a time: each compiles one source, single-threaded.
  const results: { code: number; log: string }[] = [];
  let next = 0;
  await Promise.all([0, 1].map(async () => {
    while (next < VARIANTS.length) {
      const i = next++;
      results[i] = await runVariant(VARIANTS[i]);
    }
  }));
  for (const [i, v] of VARIANTS.entries()) {
    const { code, log } = results[i];
    assert.equal(code, 1, `${v.what}: the self-test passed on the broken build:\n${log}`);
    for (const name of v.cases) {
      assert.match(
        log,
        new RegExp(`FAIL ${name.replace(/[()]/g, "\\$&")}`),
        `${v.what}: ${name} did not fail:\n${log}`,
      );
    }
  }
});

/** A launch the driver refuses, or an access outside the block's shared memory, in a patched copy. */
interface Refusal extends Patch {
  what: string;
  filter: string;
  env?: Record<string, string>;
  expect: RegExp;
}

const REFUSALS: Refusal[] = [
  {
    what: "a static __shared__ array indexed past its end (the block's last shared bytes)",
    file: "video.cu",
    from: "const float mean = block_sum(sum, red) / float(tpp);",
    to: "const float mean = block_sum(sum, red + 32) / float(tpp);",
    filter: "vs_patch_target f32",
    expect:
      /kernel patch_target_kernel<[^>]*>, block \(\d+,0,0\), thread \(\d+,0,0\): shared memory access past the end of the block's shared memory \(\d+ bytes static, 0 dynamic\)/,
  },
  {
    what: "more threads per block than the kernel's __launch_bounds__",
    file: "elementwise.cu",
    from: "fill_kernel<T, true><<<grid_for(n / E, kMapThreads), kMapThreads, 0, stream>>>",
    to: "fill_kernel<T, true><<<grid_for(n / E, kMapThreads), 2 * kMapThreads, 0, stream>>>",
    filter: "vs_fill f32",
    expect:
      /kernel fill_kernel<T, true>, block \(0,0,0\), thread \(\d+,0,0\): launch of \(512,1,1\) = 512 threads per block, more than the kernel's __launch_bounds__\(256\)/,
  },
  {
    what: "more than 1024 threads per block",
    file: "elementwise.cu",
    from: "const dim3 block{unsigned(kColTile), unsigned(kRowLanes), 1u};",
    to: "const dim3 block{unsigned(kColTile), unsigned(kRowLanes * 8), 1u};",
    filter: "vs_sum_outer f32",
    expect:
      /kernel col_partial_kernel<float>: invalid launch configuration grid \(\d+,\d+,1\) block \(32,64,1\)/,
  },
  {
    what: "more dynamic shared memory than the device's opt-in limit (an A10's 99 KiB)",
    file: "attention.cu",
    from: "if (v > 0 && v < limit) limit = (int)v;",
    to: "if (v > 0) limit = (int)v;",
    filter: "vs_attention_bwd bf16 b1 n100 h2 d112",
    env: { VSWIFT_SIM_SMEM: "99", VSWIFT_ATTENTION_SMEM: String(227 << 10) },
    expect:
      /FAIL vs_attention_bwd bf16 b1 n100 h2 d112 .*cudaFuncSetAttribute\(MaxDynamicSharedMemorySize, \d+\): the device allows at most 101376 bytes/,
  },
];

Deno.test("cuda-sim: launches the driver refuses fail, and static shared memory ends against a guard page", async () => {
  const logs = await runPatched(REFUSALS, REFUSALS.map((r) => ({ filter: r.filter, env: r.env })));
  const wrong = REFUSALS.filter((r, i) => logs[i].code !== 1 || !r.expect.test(logs[i].log));
  assert.deepEqual(
    wrong.map((r) => r.what),
    [],
    wrong.map((r) => `${r.what}: not reported as expected:\n${logs[REFUSALS.indexOf(r)].log}`).join("\n"),
  );
});

Deno.test("cuda-sim: the attention backward passes on a device with 99 KiB of shared memory per block", async () => {
  // VSWIFT_SIM_SMEM=99 is an A10's or L4's opt-in limit: every backward plans within it, d128 included.
  const filters = ["vs_attention_bwd bf16 b1 n100 h2 d112", "vs_attention_bwd bf16 b1 n70 h2 d128"];
  const logs = await runPatched([], filters.map((filter) => ({ filter, env: { VSWIFT_SIM_SMEM: "99" } })));
  for (const [i, { code, log }] of logs.entries()) {
    assert.match(log, /99 KiB shared memory per block/, log);
    assert.equal(code, 0, `${filters[i]} under VSWIFT_SIM_SMEM=99:\n${log}`);
    const ok = log.split("\n").filter((l) => /^\s+ok\s+vs_attention_bwd/.test(l));
    assert.equal(ok.length, i === 0 ? 2 : 1, log);
  }
});
