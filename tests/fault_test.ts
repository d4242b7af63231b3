/**
 * After a device fault (a sticky CUDA error) every later call fails the same way: the self-test must
 * report the fault itself, not the failing frees of its cleanup, and mark it so that doctor stops.
 */
import assert from "node:assert/strict";
import { isDeviceFault, KernelError, Native, native } from "../lib/ffi/native.ts";
import { compareCase } from "../lib/selftest/compare.ts";
import type { KernelCase } from "../lib/selftest/kernel_case.ts";
import "./helpers.ts";

const FAULT = 10; // VS_ERR_DEVICE_FAULT

/** A CUDA build stand-in whose kernel faults and whose every later call then fails too. */
function faultingNative(): Native {
  const fake = Object.create(Native.prototype) as Native;
  let faulted = false;
  let next = 1n;
  const fail = (kernel: string) => {
    throw new KernelError(kernel, FAULT, `${kernel}: an earlier kernel faulted on the device`, []);
  };
  Object.assign(fake, {
    stream: null,
    alloc: () => Deno.UnsafePointer.create(256n * next++),
    upload: () => {},
    download: () => faulted && fail("vs_memcpy"),
    call: (kernel: string) => {
      if (faulted) fail(kernel);
      faulted = true;
      fail(kernel);
    },
  });
  fake.free = () => {
    if (faulted) fail("vs_free");
  };
  return fake;
}

const oneCase: KernelCase = {
  name: "vs_add f32 (faulting)",
  tol: 1e-4,
  buffers: {
    a: { dtype: "f32", n: 4, data: Float32Array.of(1, 2, 3, 4) },
    o: { dtype: "f32", n: 4, output: true },
  },
  call: (n, p) => n.call("vs_add", 0, 4, p.a, p.a, p.o, null),
};

Deno.test("a device fault is reported as itself, not as the cleanup's failing frees", () => {
  const r = compareCase(faultingNative(), native(), oneCase);
  assert.equal(r.ok, false);
  assert.equal(r.deviceFault, true);
  assert.match(r.detail, /^vs_add failed with VS_ERR_DEVICE_FAULT: vs_add: an earlier kernel faulted/);
});

Deno.test("freeAll: cleanup errors are dropped while an error is in flight, thrown otherwise", () => {
  const n = faultingNative();
  assert.throws(() => n.call("vs_add", 0, 1, null, null, null, null), (e) => isDeviceFault(e));
  const p = [Deno.UnsafePointer.create(256n), Deno.UnsafePointer.create(512n)];
  n.freeAll(p, true);
  assert.throws(() => n.freeAll(p, false), /vs_free: an earlier kernel faulted/);
  assert.equal(isDeviceFault(new KernelError("vs_add", 7, "launch failed", [])), false);
});
