/**
 * The GPU self-test: its kernel cases must be valid calls on the host build (checked everywhere), and
 * on a machine with a GPU every kernel of the CUDA build must match the host build.
 */
import assert from "node:assert/strict";
import { driverDevices } from "../lib/ffi/driver.ts";
import { loadLibrary } from "../lib/ffi/native.ts";
import { kernelCases } from "../lib/selftest/cases.ts";
import { compareCase, runCase } from "../lib/selftest/compare.ts";
import "./helpers.ts";

const host = (await loadLibrary("host")).native!;
const cuda = await loadLibrary("cuda");
if (cuda.devices === 0) console.error(`GPU tests skipped: ${cuda.why}`);

Deno.test("every self-test case is a valid call on the host build and writes all its outputs", () => {
  for (const c of kernelCases()) {
    const out = runCase(host, c);
    for (const [name, bytes] of out) {
      // Outputs start as all-ones bytes (NaN); a kernel that wrote them leaves something else.
      assert.ok(bytes.some((b) => b !== 0xff), `${c.name}: output ${name} was not written`);
    }
  }
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
