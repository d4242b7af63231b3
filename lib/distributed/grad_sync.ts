/**
 * Gradient averaging across ranks in buckets that leave while the backward pass is still running.
 *
 * Buckets are contiguous ranges of the flat f32 gradient buffer (about 25 MiB each), cut from its end,
 * because the backward reaches the last-declared parameters first. The first step watches which tape
 * closure writes each parameter's gradient last (the graph is the same every step, as with DDP's
 * static_graph) and averages the whole buffer after the backward; from then on each bucket is launched
 * right after its last writer, on a second stream under NCCL, and the optimiser's stream waits for all
 * of them.
 */
import type { Graph } from "../autograd.ts";
import { native } from "../ffi/native.ts";
import { type Pointer, ptrAddress } from "../ffi/pointers.ts";
import type { ParamStore } from "../model/params.ts";
import type { Tensor } from "../tensor.ts";
import type { ProcessGroup } from "./group.ts";

interface Bucket {
  /** Element range of the flat gradient buffer. */
  start: number;
  end: number;
  /** Index (from the end of the tape) of the closure after which every gradient in it is final. */
  readyAt: number;
  launched: boolean;
  ready?: Pointer;
}

export class GradSync {
  private readonly index = new Map<number, number>();
  private lastWrite?: Int32Array;
  private buckets?: Bucket[];
  private pending: Promise<void>[] = [];
  private comm?: Pointer;
  private done?: Pointer;

  constructor(
    private readonly group: ProcessGroup,
    private readonly store: ParamStore,
    private readonly bucketBytes = 25 << 20,
  ) {
    store.params.forEach((p, i) => this.index.set(p.offset, i));
  }

  /** Bucket element ranges once learned (for tests and logs). */
  get layout(): { start: number; end: number; readyAt: number }[] | undefined {
    return this.buckets?.map(({ start, end, readyAt }) => ({ start, end, readyAt }));
  }

  private paramOf(buf: Tensor): number {
    const offset = (ptrAddress(buf.ptr) - ptrAddress(this.store.grad!.ptr)) / 4;
    const i = this.index.get(offset);
    if (i === undefined) {
      throw new Error(`A gradient write at element ${offset} matches no parameter's start`);
    }
    return i;
  }

  /** Installs the hooks on `g` for one backward; pass the returned function to g.backward. */
  hook(g: Graph): (i: number) => void {
    if (!this.buckets) {
      const last = new Int32Array(this.store.params.length).fill(-1);
      let current = 0;
      g.onParamGrad = (buf) => (last[this.paramOf(buf)] = current);
      this.lastWrite = last;
      return (i) => (current = i + 1);
    }
    g.onParamGrad = undefined;
    for (const b of this.buckets) b.launched = false;
    return (i) => {
      for (const b of this.buckets!) if (!b.launched && b.readyAt <= i) this.launch(b);
    };
  }

  private launch(b: Bucket): void {
    b.launched = true;
    const slice = this.store.grad!.sub(b.start, [b.end - b.start]);
    if (this.group.kind === "nccl") {
      // The bucket's gradients were written on the compute stream; the comm stream waits for them.
      const n = native();
      this.comm ??= n.createStream();
      b.ready ??= n.createEvent();
      n.call("vs_event_record", b.ready, n.stream);
      n.call("vs_stream_wait_event", this.comm, b.ready);
    }
    this.pending.push(this.group.allReduce(slice, "avg", this.comm));
  }

  /** Waits until every gradient is averaged; the next kernels on the compute stream see the result. */
  async finish(): Promise<void> {
    if (!this.buckets) {
      await this.group.allReduce(this.store.grad!, "avg");
      this.buckets = this.plan(this.lastWrite!);
      return;
    }
    for (const b of this.buckets) if (!b.launched) this.launch(b);
    await Promise.all(this.pending);
    this.pending = [];
    if (this.comm) {
      const n = native();
      this.done ??= n.createEvent();
      n.call("vs_event_record", this.done, this.comm);
      n.call("vs_stream_wait_event", n.stream, this.done);
    }
  }

  /** Cuts the buffer into buckets from the end and dates each by its last writer. */
  private plan(last: Int32Array): Bucket[] {
    const params = this.store.params;
    const maxElems = Math.max(1, Math.floor(this.bucketBytes / 4));
    const out: Bucket[] = [];
    let end = this.store.total;
    let readyAt = -1;
    for (let i = params.length - 1; i >= 0; i--) {
      readyAt = Math.max(readyAt, last[i]);
      const start = params[i].offset;
      if (end - start >= maxElems || i === 0) {
        out.push({ start: i === 0 ? 0 : start, end, readyAt, launched: false });
        end = start;
        readyAt = -1;
      }
    }
    return out;
  }
}
