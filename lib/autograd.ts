/**
 * Tape autograd. A Graph is one step's context: the arena that holds its activations and the tape of
 * backward closures that ops record. backward() runs the tape in reverse; each closure reads the
 * gradient of its outputs and adds into the gradients of its inputs. Parameter gradients go straight
 * into their persistent f32 buffers (Tensor.gradBuffer), accumulated across uses.
 */
import { native } from "./ffi/native.ts";
import { Arena } from "./memory.ts";
import { type DType, type Tensor, writeTensor } from "./tensor.ts";

/** Where a gradient is to be written: a fresh buffer, or an existing one to add into. */
export interface GradSlot {
  buf: Tensor;
  accumulate: boolean;
}

export class Graph {
  private tape: (() => void)[] = [];
  private grads = new Map<number, Tensor>();
  /** Whether ops record backward closures (false for evaluation). */
  recording: boolean;
  /** Told when a parameter's gradient buffer is about to be written (gradient bucketing listens). */
  onParamGrad?: (gradBuffer: Tensor) => void;

  constructor(readonly arena: Arena = new Arena(), opts: { grad?: boolean } = {}) {
    this.recording = opts.grad ?? true;
  }

  /** Allocates an activation for this step. */
  alloc(shape: readonly number[], dtype: DType): Tensor {
    return this.arena.alloc(shape, dtype);
  }

  /** Records a backward closure when any of `inputs` needs a gradient; marks `outputs` accordingly. */
  record(inputs: readonly (Tensor | undefined)[], outputs: readonly Tensor[], backward: () => void): void {
    if (!this.recording || !inputs.some((t) => t?.requiresGrad)) return;
    for (const o of outputs) o.requiresGrad = true;
    this.tape.push(backward);
  }

  /** The gradient accumulated so far for an activation, if any. */
  grad(t: Tensor): Tensor | undefined {
    return this.grads.get(t.id);
  }

  /**
   * The buffer the gradient of `t` goes into. Parameters write into their f32 gradBuffer (always
   * accumulating); activations get a fresh arena tensor the first time and accumulate afterwards.
   * Returns undefined when `t` needs no gradient.
   */
  gradSlot(t: Tensor): GradSlot | undefined {
    if (!t.requiresGrad) return undefined;
    if (t.gradBuffer) {
      this.onParamGrad?.(t.gradBuffer);
      return { buf: t.gradBuffer, accumulate: true };
    }
    const existing = this.grads.get(t.id);
    if (existing) return { buf: existing, accumulate: true };
    const buf = this.alloc(t.shape, t.gradDtype ?? t.dtype);
    this.grads.set(t.id, buf);
    return { buf, accumulate: false };
  }

  /**
   * Adds `src` into the gradient of `t`. With `owned`, src is not used by anyone afterwards and may
   * become t's gradient buffer without a copy.
   */
  passGrad(t: Tensor, src: Tensor, owned = false): void {
    if (!t.requiresGrad) return;
    const wanted = t.gradBuffer?.dtype ?? t.gradDtype ?? t.dtype;
    if (src.dtype !== wanted) {
      throw new TypeError(`Gradient of ${t} must be ${wanted}, got ${src.dtype}`);
    }
    if (owned && !t.gradBuffer && !this.grads.has(t.id)) {
      this.grads.set(t.id, src.view(t.shape));
      return;
    }
    const slot = this.gradSlot(t)!;
    if (slot.accumulate) {
      native().call("vs_add", src.code, src.numel, slot.buf.ptr, src.ptr, slot.buf.ptr, native().stream);
    } else {
      native().call("vs_memcpy", slot.buf.ptr, src.ptr, src.bytes, 3, native().stream);
    }
  }

  /**
   * Runs `write(dst)` to produce a gradient for `t`: directly into a fresh buffer, or through a
   * temporary added into the existing gradient (for kernels without an accumulate flag).
   */
  writeGrad(t: Tensor, write: (dst: Tensor) => void): void {
    const slot = this.gradSlot(t);
    if (!slot) return;
    if (!slot.accumulate) {
      write(slot.buf);
      return;
    }
    const tmp = this.alloc(t.shape, slot.buf.dtype);
    write(tmp);
    native().call(
      "vs_add",
      slot.buf.code,
      slot.buf.numel,
      slot.buf.ptr,
      tmp.ptr,
      slot.buf.ptr,
      native().stream,
    );
  }

  /**
   * Runs the tape backwards from a scalar f32 loss (seeded with d loss = 1). `after(i)` runs after the
   * i-th closure from the end (0, 1, ...), so gradients can leave while the backward goes on.
   */
  backward(loss: Tensor, after?: (i: number) => void): void {
    if (loss.numel !== 1 || loss.dtype !== "f32") {
      throw new RangeError(`backward needs a scalar f32 loss, got ${loss}`);
    }
    if (!loss.requiresGrad) {
      throw new Error("The loss does not depend on any tensor that requires a gradient");
    }
    const seed = this.alloc([1], "f32");
    writeTensor(seed, [1]);
    this.grads.set(loss.id, seed);
    const n = this.tape.length;
    for (let i = n - 1; i >= 0; i--) {
      this.tape[i]();
      after?.(n - 1 - i);
    }
    this.tape = [];
    this.grads.clear();
  }

  /** Drops the tape and frees the step's activations. */
  reset(): void {
    this.tape = [];
    this.grads.clear();
    this.arena.reset();
  }
}
