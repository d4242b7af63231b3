/**
 * `deno task doctor`: the GPU self-test. `--device cuda-sim` runs all of it on the CUDA simulator
 * (cuda/sim) instead of a GPU, with the whole-step comparison on a model sized for 2 CPU cores.
 *
 * 1. Every kernel on fresh random inputs, CUDA against the host build, with the error and the tolerance
 *    it must meet (bf16 1e-2, f32 1e-4).
 * 2. A whole ViT-B training step (forward, backward, gradient norms) on the GPU against the host build
 *    on the same small batch, the host side computed in a child process.
 * 3. Our cuBLASLt and NCCL declarations compiled against the real headers, when they are installed.
 * 4. NCCL all-reduce and broadcast through the training rendezvous: one rank, and two on one GPU where
 *    NCCL allows it.
 * Without a GPU it says so and exits 0 after checking the host build alone.
 */
import { isDeviceFault, loadLibrary } from "../lib/ffi/native.ts";
import { simPtxSelfcheck } from "../lib/ffi/sim_check.ts";
import { kernelCases } from "../lib/selftest/cases.ts";
import { compareCase } from "../lib/selftest/compare.ts";
import { checkHeaders } from "../lib/selftest/headers.ts";
import { checkNccl, ncclRank } from "../lib/selftest/nccl_check.ts";
import { compareSteps, runStep, type StepReport } from "../lib/selftest/step.ts";
import { parseFlags } from "../lib/task_cli.ts";

const USAGE = "usage: deno task doctor [--filter NAME] [--skip-step] [--model base] [--batch 2]";
const { values } = parseFlags("deno task doctor", USAGE, {
  options: {
    filter: { type: "string" },
    "skip-step": { type: "boolean", default: false },
    "step-child": { type: "boolean", default: false },
    "nccl-child": { type: "boolean", default: false },
    device: { type: "string", default: "cuda" },
    // A simulator library other than build/'s (the broken-variant test builds patched ones).
    "sim-library": { type: "string" },
    model: { type: "string" },
    batch: { type: "string" },
    "img-size": { type: "string" },
    frames: { type: "string" },
  },
});

if (values.device !== "cuda" && values.device !== "cuda-sim") {
  console.error(`Unknown --device ${values.device}; the self-test runs on cuda or cuda-sim`);
  Deno.exit(2);
}
const device = values.device as "cuda" | "cuda-sim";
// The simulator runs the GPU step on the CPU: ViT "mini" (head dims 64 and 32, as the CUDA attention
// needs) on 4 frames of 64 x 64, and the kernel cases with their largest shapes shrunk.
const sim = device === "cuda-sim";
const model = values.model ?? (sim ? "mini" : "base");
const batch = Number(values.batch ?? "2");
const imgSize = Number(values["img-size"] ?? (sim ? "64" : "224"));
const frames = Number(values.frames ?? (sim ? "4" : "16"));

if (values["step-child"]) {
  // The host half of check 2, run in its own process because a process opens one backend.
  const report = await runStep({ device: "host", model, batch, imgSize, frames });
  console.log(JSON.stringify(report));
  Deno.exit(0);
}

if (values["nccl-child"]) {
  await ncclRank(device);
  Deno.exit(0);
}

let failures = 0;
const host = await loadLibrary("host");
if (!host.native) throw new Error(host.why);
const cuda = await loadLibrary(device, { build: true, path: sim ? values["sim-library"] : undefined });
if (cuda.devices === 0 || !cuda.native) {
  console.log(`doctor: no GPU test possible: ${cuda.why}`);
  console.log(`doctor: host build ${host.native.path}: ${host.native.deviceName()}`);
  Deno.exit(0);
}
const gpu = cuda.native;
gpu.call("vs_init", 0);
host.native.call("vs_init", 0);
console.log(`doctor: ${gpu.deviceName()}`);
console.log(`doctor: reference ${host.native.deviceName()}\n`);

if (sim) {
  console.log("0. the simulator's PTX on hand-checked cases (mma.m16n8k16, ldmatrix, cp.async groups)");
  const wrong = simPtxSelfcheck(gpu.path);
  if (wrong.length) failures++;
  console.log(
    wrong.length
      ? `  FAIL ${wrong.join("; ")}`
      : "  ok   every lane's registers as the PTX ISA tables give\n",
  );
}

console.log("1. kernels, CUDA against the host build");
const cases = kernelCases(2024, { small: sim }).filter((c) =>
  !values.filter || c.name.includes(values.filter)
);
const width = Math.max(...cases.map((c) => c.name.length));

/** After a sticky device fault every later CUDA call fails the same way: report it once and stop. */
function stopAfterFault(what: string, message: string): never {
  console.log(
    `\ndoctor: stopped at the first device fault, in ${what}. A fault leaves the CUDA context unusable, so ` +
      `every later check would fail with the same error and prove nothing.\n  ${message}\n` +
      `  To name the faulting kernel: VSWIFT_SYNC_LAUNCH=1 deno task doctor` +
      `${values.filter ? ` --filter '${values.filter}'` : ""}`,
  );
  Deno.exit(1);
}

for (const c of cases) {
  const r = compareCase(gpu, host.native, c);
  if (!r.ok) failures++;
  const err = Number.isFinite(r.error) ? r.error.toExponential(2) : "inf";
  console.log(
    `  ${r.ok ? "ok  " : "FAIL"} ${r.name.padEnd(width)}  max rel err ${err.padStart(9)}  tol ${
      r.tol.toExponential(0)
    }  ${r.ms.toFixed(0).padStart(6)} ms${r.ok ? "" : `  (${r.detail})`}`,
  );
  if (r.deviceFault) stopAfterFault(`case ${r.name}`, r.detail);
}

console.log("\n2. a whole training step, GPU against host");
if (values["skip-step"] || values.filter) console.log("  skipped");
else {
  const child = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--step-child",
      "--model",
      model,
      "--batch",
      String(batch),
      "--img-size",
      String(imgSize),
      "--frames",
      String(frames),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!child.success) {
    console.log("  FAIL the host reference step failed");
    failures++;
  } else {
    const hostReport = JSON.parse(
      new TextDecoder().decode(child.stdout).trim().split("\n").pop()!,
    ) as StepReport;
    let gpuReport: StepReport;
    try {
      gpuReport = await runStep({ device, model, batch, imgSize, frames });
    } catch (e) {
      if (isDeviceFault(e)) stopAfterFault("the training step", (e as Error).message);
      throw e;
    }
    for (const line of compareSteps(gpuReport, hostReport)) {
      if (line.startsWith("FAIL")) failures++;
      console.log(`  ${line}`);
    }
  }
}

console.log("\n3. cuBLASLt and NCCL declarations against the real headers");
for (const line of await checkHeaders()) {
  if (line.startsWith("FAIL")) failures++;
  console.log(`  ${line}`);
}

console.log("\n4. NCCL (the multi-GPU path)");
if (values.filter) console.log("  skipped");
else if (gpu.symbols.vs_nccl_available() !== 1) {
  console.log(`  skipped: NCCL cannot be opened (${gpu.lastError()})`);
} else {
  for (const line of await checkNccl(new URL(import.meta.url).pathname, device)) {
    if (line.startsWith("FAIL")) failures++;
    console.log(`  ${line}`);
  }
}

console.log(`\ndoctor: ${failures === 0 ? "all checks passed" : `${failures} check(s) failed`}`);
Deno.exit(failures === 0 ? 0 : 1);
