/**
 * Process groups: how ranks agree on gradients and parameters. The ranks meet at the rendezvous
 * (rendezvous.ts), which links them in a ring. The host group all-reduces over that ring
 * (reduce-scatter then all-gather, 2 (W - 1) / W of the data per rank); the NCCL group (nccl_group.ts)
 * uses the same rendezvous only to share NCCL's unique id.
 */
import { copyFromDevice, copyToDevice, type Pointer } from "../ffi/pointers.ts";
import type { Tensor } from "../tensor.ts";
import type { Links } from "./rendezvous.ts";

export { distTimeoutMs, type Links, rendezvous } from "./rendezvous.ts";

export type ReduceOp = "sum" | "avg";

export interface ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly kind: "single" | "host" | "nccl";
  /**
   * In-place all-reduce of an f32 tensor. NCCL queues it on `stream` (the compute stream when
   * omitted) and returns at once; the host ring resolves when the data is back in place.
   */
  allReduce(t: Tensor, op: ReduceOp, stream?: Pointer): Promise<void>;
  /** In-place broadcast of a tensor from `root`. */
  broadcast(t: Tensor, root: number): Promise<void>;
  /** All-reduce of a few host numbers (metrics). */
  allReduceNumbers(values: number[], op: ReduceOp): Promise<number[]>;
  barrier(): Promise<void>;
  close(): Promise<void>;
}

function f32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** The group of one process: everything is already agreed. */
export class SingleGroup implements ProcessGroup {
  readonly rank = 0;
  readonly worldSize = 1;
  readonly kind = "single" as const;
  async allReduce(): Promise<void> {}
  async broadcast(): Promise<void> {}
  allReduceNumbers(values: number[]): Promise<number[]> {
    return Promise.resolve([...values]);
  }
  async barrier(): Promise<void> {}
  async close(): Promise<void> {}
}

/** Ring all-reduce over TCP, for the host build (tests, small runs) and as NCCL's stand-in. */
export class HostGroup implements ProcessGroup {
  readonly kind = "host" as const;
  readonly rank: number;
  readonly worldSize: number;

  constructor(private readonly links: Links) {
    this.rank = links.rank;
    this.worldSize = links.worldSize;
  }

  /** Sums `data` across ranks in place (then divides for avg). */
  async allReduceArray(data: Float32Array, op: ReduceOp): Promise<void> {
    const w = this.worldSize;
    if (w > 1) {
      const { next, prev } = this.links;
      const bounds = (
        c: number,
      ) => [Math.floor((c * data.length) / w), Math.floor(((c + 1) * data.length) / w)];
      const chunk = (c: number) => {
        const [a, b] = bounds(((c % w) + w) % w);
        return data.subarray(a, b);
      };
      // Reduce-scatter: after w - 1 rounds, rank r holds the full sum of chunk r + 1.
      for (let s = 0; s < w - 1; s++) {
        const out = chunk(this.rank - s);
        const into = chunk(this.rank - s - 1);
        const incoming = new Uint8Array(into.byteLength);
        await Promise.all([
          next!.send(new Uint8Array(out.buffer, out.byteOffset, out.byteLength)),
          prev!.recv(incoming),
        ]);
        const add = f32(incoming);
        for (let i = 0; i < into.length; i++) into[i] += add[i];
      }
      // All-gather: pass the finished chunks around the ring.
      for (let s = 0; s < w - 1; s++) {
        const out = chunk(this.rank - s + 1);
        const into = chunk(this.rank - s);
        const incoming = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
        await Promise.all([
          next!.send(new Uint8Array(out.buffer, out.byteOffset, out.byteLength)),
          prev!.recv(incoming),
        ]);
      }
    }
    if (op === "avg") { for (let i = 0; i < data.length; i++) data[i] /= w; }
  }

  async allReduce(t: Tensor, op: ReduceOp): Promise<void> {
    if (t.dtype !== "f32") throw new TypeError(`The host group all-reduces f32 tensors, got ${t}`);
    const data = new Float32Array(t.numel);
    copyFromDevice(data, t.ptr);
    await this.allReduceArray(data, op);
    copyToDevice(t.ptr, data);
  }

  async broadcast(t: Tensor, root: number): Promise<void> {
    if (this.worldSize === 1) return;
    const bytes = new Uint8Array(t.bytes);
    // Around the ring from the root; the rank before the root does not pass it on.
    if (this.rank === root) {
      copyFromDevice(bytes, t.ptr);
      await this.links.next!.send(bytes);
    } else {
      await this.links.prev!.recv(bytes);
      if ((this.rank + 1) % this.worldSize !== root) await this.links.next!.send(bytes);
      copyToDevice(t.ptr, bytes);
    }
  }

  async allReduceNumbers(values: number[], op: ReduceOp): Promise<number[]> {
    const data = Float32Array.from(values);
    await this.allReduceArray(data, op);
    return [...data];
  }

  async barrier(): Promise<void> {
    await this.allReduceNumbers([0], "sum");
  }

  close(): Promise<void> {
    this.links.next?.close();
    this.links.prev?.close();
    for (const c of this.links.control) c?.close();
    return Promise.resolve();
  }
}
