/**
 * Whether the NVIDIA driver sees a GPU, asked of libcuda itself (cuInit, cuDeviceGetCount) before our
 * CUDA library is built or opened: on a machine without a GPU, nothing is compiled to find that out.
 */

let cached: { count: number; why: string } | undefined;

/** GPUs the driver reports, and why there are none. The driver library stays open once loaded. */
export function driverDevices(): { count: number; why: string } {
  if (cached) return cached;
  let lib: Deno.DynamicLibrary<{
    cuInit: { parameters: ["u32"]; result: "i32" };
    cuDeviceGetCount: { parameters: ["buffer"]; result: "i32" };
  }>;
  try {
    lib = Deno.dlopen("libcuda.so.1", {
      cuInit: { parameters: ["u32"], result: "i32" },
      cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
    });
  } catch {
    return (cached = { count: 0, why: "no NVIDIA driver on this machine (libcuda.so.1 cannot be opened)" });
  }
  const init = lib.symbols.cuInit(0);
  if (init !== 0) {
    return (cached = { count: 0, why: `the NVIDIA driver found no usable GPU (cuInit returned ${init})` });
  }
  const n = new Int32Array(1);
  const status = lib.symbols.cuDeviceGetCount(n);
  if (status !== 0 || n[0] === 0) {
    return (cached = { count: 0, why: `the NVIDIA driver reports no GPU (cuDeviceGetCount: ${status})` });
  }
  return (cached = { count: n[0], why: "" });
}
