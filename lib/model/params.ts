/**
 * Parameters: declared by the layers with their PyTorch state-dict names, shapes and initialisers,
 * then allocated together as flat buffers (f32 master values, f32 gradients and, for bf16 compute, a
 * bf16 copy that the kernels read). Flat buffers make the optimiser and the gradient norm a handful of
 * kernel calls, and declaration without allocation lets the FLOP report count giant models for free.
 */
import { copyFromDevice, copyToDevice, memset } from "../ffi/pointers.ts";
import { native } from "../ffi/native.ts";
import { allocPersistent, freePersistent } from "../memory.ts";
import type { Rng } from "../rng.ts";
import { type DType, numelOf, readFloats, type Tensor } from "../tensor.ts";

/** How a parameter starts (V-SWIFT's initialisers). */
export type Init =
  | { kind: "zeros" }
  | { kind: "ones" }
  | { kind: "xavierUniform"; fanIn: number; fanOut: number }
  /** PyTorch's default for Linear and Conv (kaiming-uniform with a = sqrt(5)): U(+-1/sqrt(fan_in)). */
  | { kind: "torchDefault"; fanIn: number }
  | { kind: "truncNormal"; std: number; lo: number; hi: number; scale?: number };

/** Elements between parameter starts are rounded to this, keeping every slice 256-byte aligned in f32. */
const ALIGN_ELEMS = 64;

export class Param {
  offset = 0;
  /** The tensor the kernels read (bf16 copy or the f32 master). */
  value!: Tensor;
  /** f32 master value. */
  master!: Tensor;
  /** f32 gradient. */
  grad!: Tensor;

  constructor(readonly name: string, readonly shape: readonly number[], readonly init: Init) {}

  get numel(): number {
    return numelOf(this.shape);
  }
}

export class ParamStore {
  readonly params: Param[] = [];
  private byName = new Map<string, Param>();
  total = 0;
  dtype: DType | undefined;
  master?: Tensor;
  grad?: Tensor;
  compute?: Tensor;

  declare(name: string, shape: readonly number[], init: Init): Param {
    if (this.dtype) throw new Error(`Cannot declare ${name}: the parameters are already allocated`);
    if (this.byName.has(name)) throw new Error(`Parameter ${name} is declared twice`);
    const p = new Param(name, shape, init);
    p.offset = this.total;
    this.total += Math.ceil(p.numel / ALIGN_ELEMS) * ALIGN_ELEMS;
    this.params.push(p);
    this.byName.set(name, p);
    return p;
  }

  get(name: string): Param | undefined {
    return this.byName.get(name);
  }

  /** Number of parameter values (without alignment padding). */
  get count(): number {
    return this.params.reduce((s, p) => s + p.numel, 0);
  }

  get allocated(): boolean {
    return this.dtype !== undefined;
  }

  /** Allocates the flat buffers; `dtype` is the compute dtype the kernels read (f32 or bf16). */
  allocate(dtype: DType): void {
    if (this.dtype) throw new Error("The parameters are already allocated");
    if (dtype !== "f32" && dtype !== "bf16") {
      throw new RangeError(`Compute dtype must be f32 or bf16, got ${dtype}`);
    }
    this.dtype = dtype;
    this.master = allocPersistent([this.total], "f32");
    this.grad = allocPersistent([this.total], "f32");
    this.compute = dtype === "bf16" ? allocPersistent([this.total], "bf16") : this.master;
    memset(this.master.ptr, 0, this.master.bytes);
    memset(this.grad.ptr, 0, this.grad.bytes);
    for (const p of this.params) {
      p.master = this.master.sub(p.offset, p.shape);
      p.grad = this.grad.sub(p.offset, p.shape);
      p.value = this.compute.sub(p.offset, p.shape);
      p.value.requiresGrad = true;
      p.value.gradBuffer = p.grad;
    }
  }

  /** Draws every parameter's initial value from `rng`, in declaration order. */
  initialize(rng: Rng): void {
    this.requireAllocated();
    for (const p of this.params) this.setMaster(p, initValues(p, rng));
    this.syncCompute();
  }

  /** Overwrites a parameter's master value from host values (then call syncCompute). */
  setMaster(p: Param, values: Float32Array): void {
    this.requireAllocated();
    if (values.length !== p.numel) {
      throw new RangeError(`${p.name}: ${values.length} values given for shape [${p.shape.join(", ")}]`);
    }
    copyToDevice(p.master.ptr, values);
  }

  /** Reads a parameter's f32 master value. */
  readMaster(p: Param): Float32Array {
    this.requireAllocated();
    return readFloats(p.master);
  }

  /** Refreshes the compute copy from the masters (after loading or initialising). */
  syncCompute(): void {
    this.requireAllocated();
    if (this.compute !== this.master) {
      native().call("vs_cast", 0, 1, this.total, this.master!.ptr, this.compute!.ptr, native().stream);
    }
  }

  /**
   * Names of the parameters whose master values hold a NaN or an infinity (none: []). Checked before a
   * checkpoint is written, so that a saved checkpoint is one training can go on from.
   */
  nonFinite(): string[] {
    this.requireAllocated();
    const k = native();
    const flag = allocPersistent([1], "i32");
    const bad: string[] = [];
    try {
      const read = new Int32Array(1);
      for (const p of this.params) {
        memset(flag.ptr, 0, 4);
        k.call("vs_nonfinite", p.master.code, p.numel, p.master.ptr, flag.ptr, k.stream);
        copyFromDevice(read, flag.ptr);
        if (read[0] !== 0) bad.push(p.name);
      }
    } finally {
      freePersistent(flag);
    }
    return bad;
  }

  zeroGrad(): void {
    this.requireAllocated();
    memset(this.grad!.ptr, 0, this.grad!.bytes);
  }

  free(): void {
    if (!this.dtype) return;
    if (this.compute !== this.master) freePersistent(this.compute!);
    freePersistent(this.master!);
    freePersistent(this.grad!);
    this.dtype = undefined;
  }

  private requireAllocated(): void {
    if (!this.dtype) throw new Error("The parameters are not allocated yet: call allocate() first");
  }
}

function initValues(p: Param, rng: Rng): Float32Array {
  const n = p.numel;
  const out = new Float32Array(n);
  const init = p.init;
  switch (init.kind) {
    case "zeros":
      break;
    case "ones":
      out.fill(1);
      break;
    case "xavierUniform": {
      const bound = Math.sqrt(6 / (init.fanIn + init.fanOut));
      for (let i = 0; i < n; i++) out[i] = rng.uniform(-bound, bound);
      break;
    }
    case "torchDefault": {
      const bound = 1 / Math.sqrt(init.fanIn);
      for (let i = 0; i < n; i++) out[i] = rng.uniform(-bound, bound);
      break;
    }
    case "truncNormal": {
      const scale = init.scale ?? 1;
      for (let i = 0; i < n; i++) {
        let v: number;
        do v = rng.normal() * init.std; while (v < init.lo || v > init.hi);
        out[i] = v * scale;
      }
      break;
    }
  }
  return out;
}
