/**
 * AdamW on the flat f32 master weights (torch.optim.AdamW semantics), writing the bf16 copy the kernels
 * read. Parameters with the same learning-rate scale and weight decay that sit next to each other in
 * the flat buffer are updated by one kernel call.
 */
import { native } from "../ffi/native.ts";
import { memset } from "../ffi/pointers.ts";
import { allocPersistent, freePersistent } from "../memory.ts";
import type { Param, ParamStore } from "../model/params.ts";
import { readScalar, type Tensor } from "../tensor.ts";

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this (torch's clip_grad_norm_); undefined = no clipping. */
  clipGrad?: number;
}

/** Per-parameter hyper-parameters: a multiplier on the learning rate and the weight decay. */
export type GroupRule = (p: Param) => { lrScale: number; weightDecay: number };

/**
 * V-SWIFT's decay rule: no weight decay for 1-D tensors, names ending in .bias or .scale, and
 * pos_embed / cls_token. Everything else decays, decoder.mask_token included (as V-SWIFT; v1 excluded it).
 */
export function vswiftDecays(p: Param): boolean {
  if (p.shape.length <= 1) return false;
  if (p.name.endsWith(".bias") || p.name.endsWith(".scale")) return false;
  return p.name !== "pos_embed" && p.name !== "cls_token";
}

interface Run {
  start: number;
  end: number;
  lrScale: number;
  weightDecay: number;
}

export class AdamW {
  readonly m: Tensor;
  readonly v: Tensor;
  /** Global L2 norm of the gradients before clipping, a device scalar (read it when logging). */
  readonly gradNorm: Tensor;
  private readonly coef: Tensor;
  private readonly runs: Run[] = [];
  /** gradNorm holds this step's norm already (checkGradients ran). */
  private normReady = false;
  step = 0;

  constructor(readonly store: ParamStore, readonly opts: AdamWOptions, rule?: GroupRule) {
    if (!store.allocated) throw new Error("AdamW needs allocated parameters");
    const wd = opts.weightDecay ?? 0.05;
    const r: GroupRule = rule ?? ((p) => ({ lrScale: 1, weightDecay: vswiftDecays(p) ? wd : 0 }));
    for (const p of store.params) {
      const h = r(p);
      const last = this.runs[this.runs.length - 1];
      if (last && last.lrScale === h.lrScale && last.weightDecay === h.weightDecay) {
        last.end = p.offset + p.numel;
      } else this.runs.push({ start: p.offset, end: p.offset + p.numel, ...h });
    }
    this.m = allocPersistent([store.total], "f32");
    this.v = allocPersistent([store.total], "f32");
    memset(this.m.ptr, 0, this.m.bytes);
    memset(this.v.ptr, 0, this.v.bytes);
    this.gradNorm = allocPersistent([1], "f32");
    this.coef = allocPersistent([1], "f32");
  }

  /** Number of kernel calls per update (contiguous runs of equal hyper-parameters). */
  get groups(): number {
    return this.runs.length;
  }

  /**
   * Computes the global gradient norm (before clipping) into gradNorm and reads it back: the guard before
   * an update (a NaN or infinite gradient anywhere makes it non-finite). The next update reuses it.
   */
  checkGradients(): number {
    native().call("vs_grad_norm", this.store.total, this.store.grad!.ptr, this.gradNorm.ptr, native().stream);
    this.normReady = true;
    return readScalar(this.gradNorm);
  }

  /** One update with learning rate `lr` from the gradients in the store; computes gradNorm. */
  update(lr: number): void {
    const k = native();
    const s = this.store;
    const [b1, b2] = this.opts.betas ?? [0.9, 0.999];
    const eps = this.opts.eps ?? 1e-8;
    this.step++;
    if (!this.normReady) k.call("vs_grad_norm", s.total, s.grad!.ptr, this.gradNorm.ptr, k.stream);
    this.normReady = false;
    let scale = null;
    if (this.opts.clipGrad !== undefined) {
      k.call("vs_clip_coef", this.gradNorm.ptr, this.opts.clipGrad, this.coef.ptr, k.stream);
      scale = this.coef.ptr;
    }
    const bf16 = s.compute !== s.master;
    for (const r of this.runs) {
      const n = r.end - r.start;
      k.call(
        "vs_adamw",
        n,
        s.master!.sub(r.start, [n]).ptr,
        bf16 ? s.compute!.sub(r.start, [n]).ptr : null,
        s.grad!.sub(r.start, [n]).ptr,
        this.m.sub(r.start, [n]).ptr,
        this.v.sub(r.start, [n]).ptr,
        lr * r.lrScale,
        b1,
        b2,
        eps,
        r.weightDecay,
        this.step,
        scale,
        k.stream,
      );
    }
  }

  free(): void {
    for (const t of [this.m, this.v, this.gradNorm, this.coef]) freePersistent(t);
  }
}
