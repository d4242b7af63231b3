/**
 * The GPU self-test: its kernel cases must be valid calls on the host build (checked everywhere), and
 * on a machine with a GPU every kernel of the CUDA build must match the host build.
 */
import assert from "node:assert/strict";
import { driverDevices } from "../lib/ffi/driver.ts";
import { loadLibrary, type Native } from "../lib/ffi/native.ts";
import { EXERCISED_ELSEWHERE, kernelCases } from "../lib/selftest/cases.ts";
import { compareCase, runCase } from "../lib/selftest/compare.ts";
import { DTYPE_BYTES } from "../lib/tensor.ts";
import "./helpers.ts";

const host = (await loadLibrary("host")).native!;
const cuda = await loadLibrary("cuda");
if (cuda.devices === 0) console.error(`GPU tests skipped: ${cuda.why}`);

/** The host library with every entry point it is asked for recorded (Native's methods all go through symbols). */
function recording(native: Native): { native: Native; called: Set<string> } {
  const called = new Set<string>();
  const symbols = new Proxy(native.symbols, {
    get(target, prop, receiver) {
      if (typeof prop === "string") called.add(prop);
      return Reflect.get(target, prop, receiver);
    },
  });
  const proxy = new Proxy(native, {
    get: (target, prop, receiver) => prop === "symbols" ? symbols : Reflect.get(target, prop, receiver),
  });
  return { native: proxy, called };
}

Deno.test("every self-test case runs on the host build, writes every output element, and the cases cover vswift.h", () => {
  const recorder = recording(host);
  for (const c of kernelCases()) {
    const out = runCase(recorder.native, c);
    for (const [name, bytes] of out) {
      const buf = c.buffers[name];
      // Pure outputs start as all-ones bytes (NaN); each element the kernel wrote holds something else.
      if (buf.data) continue;
      const size = DTYPE_BYTES[buf.dtype];
      const words = size === 4
        ? new Uint32Array(bytes.buffer)
        : size === 2
        ? new Uint16Array(bytes.buffer)
        : bytes;
      const poison = 2 ** (8 * size) - 1;
      const unwritten: number[] = [];
      words.forEach((w, i) => w === poison && unwritten.push(i));
      assert.deepEqual(
        unwritten.slice(0, 8),
        [],
        `${c.name}: ${unwritten.length} of ${buf.n} elements of output ${name} were not written`,
      );
    }
  }
  const header = Deno.readTextFileSync(new URL("../cuda/vswift.h", import.meta.url));
  const declared = new Set([...header.matchAll(/^[a-z][\w ]*?\**\b(vs_\w+)\(/gm)].map((m) => m[1]));
  assert.ok(declared.size > 50, `only ${declared.size} entry points found in vswift.h`);
  const { called } = recorder;
  const uncovered = [...declared].filter((n) => !called.has(n) && !(n in EXERCISED_ELSEWHERE));
  assert.deepEqual(uncovered, [], "entry points without a self-test case");
  const stale = Object.keys(EXERCISED_ELSEWHERE).filter((n) => !declared.has(n) || called.has(n));
  assert.deepEqual(stale, [], "EXERCISED_ELSEWHERE names entry points that are gone or have a case");
});

Deno.test({
  name: "GPU: every CUDA kernel matches the host build (bf16 1e-2, f32 1e-4)",
  ignore: cuda.devices === 0,
  fn() {
    cuda.native!.call("vs_init", 0);
    const failed = kernelCases().map((c) => compareCase(cuda.native!, host, c)).filter((r) => !r.ok);
    assert.deepEqual(failed.map((r) => `${r.name}: ${r.error} > ${r.tol} (${r.detail})`), []);
  },
});

Deno.test({
  name: "doctor without a GPU says so at once, without building the CUDA library",
  ignore: driverDevices().count > 0,
  async fn() {
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../tasks/doctor.ts", import.meta.url).pathname],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
    assert.equal(o.code, 0, text);
    assert.match(text, /doctor: no GPU test possible: no NVIDIA driver on this machine/);
    assert.doesNotMatch(text, /building cuda kernels|nvcc/);
  },
});
