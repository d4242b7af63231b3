/**
 * Finds, builds when needed, and opens the kernel library; turns status codes into Errors.
 * Nothing outside lib/ffi/ calls FFI.
 */
import { ensureBuilt, isStale, libraryPath, type NativeTarget } from "../../cuda/build.ts";
import { cString } from "./c_string.ts";
import { driverDevices } from "./driver.ts";
import { chooseOpenblasCore } from "./openblas_core.ts";
import { type NativeSymbols, SYMBOLS } from "./symbols.ts";

export type Backend = NativeTarget;
/** "cuda-sim" (the CUDA build run by the simulator, cuda/sim) is a test device: "auto" never picks it. */
export type DeviceChoice = Backend | "auto";

/** True for the builds that run the CUDA sources (on a GPU or in the simulator). */
export function isCudaBackend(b: Backend): boolean {
  return b !== "host";
}

const STATUS_NAMES = [
  "VS_OK",
  "VS_ERR_ARG",
  "VS_ERR_DTYPE",
  "VS_ERR_ALIGN",
  "VS_ERR_UNSUPPORTED",
  "VS_ERR_NOMEM",
  "VS_ERR_LIBRARY",
  "VS_ERR_CUDA",
  "VS_ERR_BLAS",
  "VS_ERR_NCCL",
  "VS_ERR_DEVICE_FAULT",
];

/** vs_status of an asynchronous device fault: the CUDA context is unusable from then on. */
const DEVICE_FAULT = 10;

/** FFI i64 parameters are typed bigint but accept numbers, which is what sizes are here. */
type Loosen<T> = T extends bigint ? number | bigint : T;
type CallArgs<F> = F extends (...a: infer A) => unknown ? { [I in keyof A]: Loosen<A[I]> } : never;

type StatusKernel = {
  [K in keyof NativeSymbols]: ReturnType<NativeSymbols[K]> extends number ? K : never;
}[keyof NativeSymbols];

/** Status kernels with a nonblocking twin in the symbol table. */
type NonblockingKernel = "vs_crop_resize_normalize";

/** A kernel call that returned a non-zero status. */
export class KernelError extends Error {
  constructor(readonly kernel: string, readonly status: number, detail: string, args: readonly unknown[]) {
    const name = STATUS_NAMES[status] ?? `status ${status}`;
    super(
      `${kernel} failed with ${name}: ${detail || "no message"} (arguments: ${
        args.map(formatArg).join(", ")
      })`,
    );
    this.name = "KernelError";
  }

  /**
   * True for a device fault (an illegal address, a trap, ...): sticky, every later CUDA call fails the
   * same way, so nothing after it can be trusted or cleaned up.
   */
  get deviceFault(): boolean {
    return this.status === DEVICE_FAULT;
  }
}

/** True when `e` is a KernelError reporting a sticky device fault. */
export function isDeviceFault(e: unknown): boolean {
  return e instanceof KernelError && e.deviceFault;
}

/**
 * Sees one status-kernel call before it runs (the launch recorder, lib/ffi/launch_log.ts); returning
 * true skips the call (a dry run that prices a step without computing it).
 */
export type CallObserver = (kernel: string, args: readonly unknown[]) => boolean | void;

function formatArg(a: unknown): string {
  if (a === null) return "NULL";
  if (typeof a === "object") return `0x${Deno.UnsafePointer.value(a as Deno.PointerObject).toString(16)}`;
  return String(a);
}

/** An opened kernel library. */
export class Native {
  readonly symbols: NativeSymbols;
  /** Why the CUDA build is not in use, when "auto" fell back to the host. */
  fallbackReason?: string;
  /**
   * The stream every kernel of the process is launched on (made by openNative; non-blocking in the
   * CUDA build, so that it never waits for the gradient all-reduce's stream except through events).
   * NULL, the legacy default stream, only in libraries opened with loadLibrary (the self-test).
   */
  stream: Deno.PointerValue = null;
  /** Sees every status-kernel call before it runs (launch recording); undefined normally. */
  observer?: CallObserver;
  constructor(
    private readonly lib: Deno.DynamicLibrary<typeof SYMBOLS>,
    readonly backend: Backend,
    readonly path: string,
  ) {
    this.symbols = lib.symbols;
  }

  /** True when this library runs the CUDA sources: bf16 by default, NCCL for several ranks. */
  get isCuda(): boolean {
    return isCudaBackend(this.backend);
  }

  /** Calls an entry point that returns a status and throws a KernelError naming it and its arguments. */
  call<K extends StatusKernel>(name: K, ...args: CallArgs<NativeSymbols[K]>): void {
    if (this.observer?.(name, args) === true) return;
    // deno-lint-ignore no-explicit-any
    const status = (this.symbols[name] as (...a: any[]) => number)(...args);
    if (status !== 0) throw new KernelError(name, status, this.lastError(), args);
  }

  /**
   * Runs a status kernel that has a `nonblocking` twin (`<name>_nb` in the symbol table) on one of
   * Deno's worker threads, so that the event loop keeps serving I/O (the decoders' pipes) meanwhile.
   * For the host build: CUDA state is per thread, so CUDA callers use call(). On failure the call is
   * repeated synchronously to read its message, vs_last_error being per thread.
   */
  async callNonblocking<K extends NonblockingKernel>(
    name: K,
    ...args: CallArgs<NativeSymbols[K]>
  ): Promise<void> {
    const twin = `${name}_nb` as keyof NativeSymbols;
    // deno-lint-ignore no-explicit-any
    const status = await (this.symbols[twin] as (...a: any[]) => Promise<number>)(...args);
    if (status !== 0) {
      // deno-lint-ignore no-explicit-any
      const again = (this.symbols[name] as (...a: any[]) => number)(...args);
      throw new KernelError(name, again || status, this.lastError(), args);
    }
  }

  /** Bytes of scratch vs_attention_bwd needs for this shape. */
  attentionWorkspaceBytes(dtype: number, b: number, n: number, heads: number, headDim: number): number {
    return Number(
      this.symbols.vs_attention_workspace_bytes(dtype, BigInt(b), BigInt(n), BigInt(heads), BigInt(headDim)),
    );
  }

  lastError(): string {
    const p = this.symbols.vs_last_error();
    return p === null ? "" : Deno.UnsafePointerView.getCString(p);
  }

  /** A description of the device in use. */
  deviceName(device = 0): string {
    const buf = new Uint8Array(256);
    this.call("vs_device_name", device, Deno.UnsafePointer.of(buf), buf.length);
    return cString(buf);
  }

  /** Allocates device memory (256-byte aligned); NULL for 0 bytes. */
  alloc(bytes: number): Deno.PointerValue {
    const out = new BigUint64Array(1);
    this.call("vs_malloc", Deno.UnsafePointer.of(out), bytes);
    return Deno.UnsafePointer.create(out[0]);
  }

  free(p: Deno.PointerValue): void {
    if (p !== null) this.call("vs_free", p);
  }

  /**
   * Frees every pointer, for cleanup in a `finally` block. `failing` says whether the guarded code threw:
   * then cleanup errors are dropped, because after a device fault every free fails with the same sticky
   * error and would replace the error that matters. Otherwise the first cleanup error is thrown once
   * all pointers were tried.
   */
  freeAll(ptrs: Iterable<Deno.PointerValue>, failing: boolean): void {
    let first: unknown;
    for (const p of ptrs) {
      try {
        this.free(p);
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined && !failing) throw first;
  }

  /** Copies a host array into device memory at `dst`. */
  upload(dst: Deno.PointerValue, src: ArrayBufferView): void {
    if (src.byteLength > 0) {
      this.call(
        "vs_memcpy",
        dst,
        Deno.UnsafePointer.of(src as unknown as BufferSource),
        src.byteLength,
        1,
        this.stream,
      );
    }
  }

  /** Copies device memory at `src` into a host array, after the compute stream has finished. */
  download(dst: ArrayBufferView, src: Deno.PointerValue): void {
    if (dst.byteLength === 0) return;
    this.call("vs_stream_sync", this.stream);
    this.call(
      "vs_memcpy",
      Deno.UnsafePointer.of(dst as unknown as BufferSource),
      src,
      dst.byteLength,
      2,
      this.stream,
    );
  }

  /** A new stream (vs_stream_create; non-blocking in the CUDA build); NULL is the legacy default stream. */
  createStream(): Deno.PointerValue {
    const out = new BigUint64Array(1);
    this.call("vs_stream_create", Deno.UnsafePointer.of(out));
    return Deno.UnsafePointer.create(out[0]);
  }

  /** A timing event (vs_event_create). */
  createEvent(): Deno.PointerValue {
    const out = new BigUint64Array(1);
    this.call("vs_event_create", Deno.UnsafePointer.of(out));
    return Deno.UnsafePointer.create(out[0]);
  }

  /** Milliseconds between two recorded events, waiting for the second. */
  elapsedMs(start: Deno.PointerValue, end: Deno.PointerValue): number {
    const ms = new Float32Array(1);
    this.call("vs_event_elapsed_ms", start, end, Deno.UnsafePointer.of(ms));
    return ms[0];
  }

  /** Free and total device memory in bytes. */
  memInfo(): { free: number; total: number } {
    const out = new BigInt64Array(2);
    this.call(
      "vs_mem_info",
      Deno.UnsafePointer.of(out.subarray(0, 1)),
      Deno.UnsafePointer.of(out.subarray(1, 2)),
    );
    return { free: Number(out[0]), total: Number(out[1]) };
  }

  /** A new NCCL unique id (128 bytes), made on one rank and shared with the others. */
  ncclUniqueId(): Uint8Array {
    const id = new Uint8Array(128);
    this.call("vs_nccl_unique_id", Deno.UnsafePointer.of(id));
    return id;
  }

  /** Joins an NCCL communicator of `nranks` as `rank`; returns its handle. */
  ncclCommInit(nranks: number, id: Uint8Array, rank: number): Deno.PointerValue {
    const out = new BigUint64Array(1);
    this.call("vs_nccl_comm_init", Deno.UnsafePointer.of(out), nranks, Deno.UnsafePointer.of(id), rank);
    return Deno.UnsafePointer.create(out[0]);
  }

  close(): void {
    this.lib.close();
  }
}

let current: Native | undefined;

function open(backend: Backend, path = libraryPath(backend)): Native {
  // Kernel calls alternate with JavaScript on the main thread; spinning OpenMP workers would take the
  // cores from it (a tiny training step ran 10x slower on 2 cores). libgomp reads this when it loads.
  if (backend === "host" && Deno.env.get("OMP_WAIT_POLICY") === undefined) {
    Deno.env.set("OMP_WAIT_POLICY", "passive");
  }
  if (backend === "host") chooseOpenblasCore();
  const lib = Deno.dlopen(path, SYMBOLS);
  const version = lib.symbols.vs_abi_version();
  if (version !== 1) {
    lib.close();
    throw new Error(
      `${path} implements ABI version ${version}, this binding expects 1; rebuild with deno task build`,
    );
  }
  return new Native(lib, backend, path);
}

function cudaDeviceCount(n: Native): number {
  const count = new Int32Array(1);
  const status = n.symbols.vs_device_count(Deno.UnsafePointer.of(count));
  return status === 0 ? count[0] : 0;
}

/**
 * Opens one backend's library without making it the process's current one (the GPU self-test holds
 * both at once). The host library is built when stale; the CUDA ones only with `build`; `path` opens
 * that file as the backend's library instead. For cuda the result says why no device is usable instead
 * of throwing.
 */
export async function loadLibrary(
  backend: Backend,
  opts: { build?: boolean; path?: string } = {},
): Promise<{ native?: Native; devices: number; why: string }> {
  if (backend === "cuda") {
    // Ask the driver first: building the CUDA library takes a minute and cannot find a GPU either.
    const driver = driverDevices();
    if (driver.count === 0) return { devices: 0, why: driver.why };
  }
  try {
    if (opts.path) { /* a given build of the backend (the simulator's broken-variant test): used as is */ }
    else if (backend === "host" || opts.build) await ensureBuilt(backend);
    else if (isStale(backend)) {
      return {
        devices: 0,
        why: `${libraryPath(backend)} is missing or stale; build it with deno task build:${backend}`,
      };
    }
    const n = open(backend, opts.path);
    if (backend === "host") return { native: n, devices: 1, why: "" };
    const devices = cudaDeviceCount(n);
    return {
      native: n,
      devices,
      why: devices > 0 ? "" : `no CUDA device is usable (${n.lastError() || "0 devices"})`,
    };
  } catch (e) {
    return { devices: 0, why: `${libraryPath(backend)} could not be loaded: ${(e as Error).message}` };
  }
}

/**
 * Opens the kernel library for a device choice: "host", "cuda", "cuda-sim" (the CUDA sources in the
 * simulator, built when stale), or "auto" (cuda when a GPU is usable, else host). Builds the host
 * library when missing or stale. Opening twice returns the open library when the backend matches.
 */
export async function openNative(
  opts: { device?: DeviceChoice; deviceIndex?: number; quiet?: boolean } = {},
): Promise<Native> {
  const choice = opts.device ?? "auto";
  if (current && (choice === "auto" || current.backend === choice)) return current;
  if (current) {
    throw new Error(
      `The ${current.backend} kernels are already open in this process; cannot switch to ${choice}`,
    );
  }
  let n: Native | undefined;
  let fallback: string | undefined;
  if (choice === "cuda-sim") {
    const sim = await loadLibrary("cuda-sim", { build: true });
    if (!sim.native || sim.devices === 0) throw new Error(`--device cuda-sim was asked for but ${sim.why}`);
    n = sim.native;
  } else if (choice !== "host") {
    const cuda = await loadLibrary("cuda", { build: choice === "cuda" });
    fallback = cuda.why;
    if (cuda.devices > 0) n = cuda.native;
    else {
      cuda.native?.close();
      if (choice === "cuda") throw new Error(`--device cuda was asked for but ${cuda.why}`);
      if (!opts.quiet && Deno.env.get("VSWIFT_QUIET") !== "1") console.error(`device: host (${cuda.why})`);
    }
  }
  if (!n) {
    const host = await loadLibrary("host");
    if (!host.native) throw new Error(host.why);
    n = host.native;
    n.fallbackReason = fallback;
  }
  // The host build and the simulator are one device whatever the process's local rank.
  n.call("vs_init", n.backend === "cuda" ? opts.deviceIndex ?? 0 : 0);
  n.stream = n.createStream();
  current = n;
  return n;
}

/** The open kernel library; throws when openNative has not been awaited yet. */
export function native(): Native {
  if (!current) throw new Error("The kernel library is not open yet: await openNative() first");
  return current;
}
