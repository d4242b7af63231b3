/**
 * Process groups: how ranks agree on gradients and parameters. Rendezvous runs over TCP: rank 0 listens
 * on MASTER_ADDR:MASTER_PORT, every rank reports the port of its own listener, and each rank connects
 * to the next one around a ring. The host group all-reduces over that ring (reduce-scatter then
 * all-gather, 2 (W - 1) / W of the data per rank); the NCCL group (nccl_group.ts) uses the same
 * rendezvous only to share NCCL's unique id.
 */
import { copyFromDevice, copyToDevice, type Pointer } from "../ffi/pointers.ts";
import type { Tensor } from "../tensor.ts";
import { Channel, connectWithRetry, PeerError } from "./channel.ts";
import type { DistEnv } from "./env.ts";

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

export interface Links {
  rank: number;
  worldSize: number;
  /** Rank 0: one channel per other rank (index = rank); others: [channel to rank 0]. */
  control: (Channel | undefined)[];
  next?: Channel;
  prev?: Channel;
  /** What rank 0 handed out at rendezvous (e.g. NCCL's unique id). */
  shared: Uint8Array;
}

/** The timeout for any one message between ranks (VSWIFT_DIST_TIMEOUT seconds, default 600). */
export function distTimeoutMs(): number {
  const s = Number(Deno.env.get("VSWIFT_DIST_TIMEOUT") ?? 600);
  if (!(s > 0)) throw new RangeError(`VSWIFT_DIST_TIMEOUT must be a positive number of seconds, got ${s}`);
  return s * 1000;
}

/**
 * Connects the ranks. `shared` is what rank 0 hands to everybody (ignored on other ranks).
 * The ring listener binds to `bindHost` (all interfaces by default; loopback for single-node runs).
 */
export async function rendezvous(
  env: DistEnv,
  shared: Uint8Array = new Uint8Array(),
  timeoutMs = distTimeoutMs(),
): Promise<Links> {
  const { rank, worldSize } = env;
  const single = env.nodes <= 1;
  const bind = single ? "127.0.0.1" : "0.0.0.0";
  const ringListener = Deno.listen({ hostname: bind, port: 0 });
  const ringPort = (ringListener.addr as Deno.NetAddr).port;
  const control: (Channel | undefined)[] = [];
  let table: { rank: number; host: string; port: number }[];
  let sharedOut = shared;
  try {
    if (rank === 0) {
      const master = Deno.listen({ hostname: single ? env.masterAddr : "0.0.0.0", port: env.masterPort });
      try {
        table = [{ rank: 0, host: env.masterAddr, port: ringPort }];
        const pending = new Map<number, Channel>();
        const timer = setTimeout(() => master.close(), timeoutMs);
        try {
          while (pending.size < worldSize - 1) {
            let conn: Deno.Conn;
            try {
              conn = await master.accept();
            } catch {
              const missing = [...Array(worldSize).keys()].filter((r) => r > 0 && !pending.has(r));
              throw new PeerError(
                `Rendezvous timed out after ${timeoutMs / 1000} s waiting for rank(s) ${missing.join(", ")}`,
              );
            }
            const ch = new Channel(conn, "a joining rank", timeoutMs);
            const hello = await ch.recvJson<{ rank: number; port: number; worldSize: number }>();
            if (
              hello.worldSize !== worldSize || hello.rank <= 0 || hello.rank >= worldSize ||
              pending.has(hello.rank)
            ) {
              throw new PeerError(
                `Rank ${hello.rank} joined with world size ${hello.worldSize}; expected ranks 1..${
                  worldSize - 1
                } of ${worldSize} once each`,
              );
            }
            const host = (conn.remoteAddr as Deno.NetAddr).hostname;
            table.push({ rank: hello.rank, host, port: hello.port });
            pending.set(hello.rank, new Channel(conn, `rank ${hello.rank}`, timeoutMs));
          }
        } finally {
          clearTimeout(timer);
        }
        table.sort((a, b) => a.rank - b.rank);
        for (const [r, ch] of pending) {
          control[r] = ch;
          await ch.sendJson(table);
          await ch.send(shared);
        }
      } finally {
        master.close();
      }
    } else {
      const conn = await connectWithRetry(
        env.masterAddr,
        env.masterPort,
        timeoutMs,
        "rank 0 (MASTER_ADDR:MASTER_PORT)",
      );
      const ch = new Channel(conn, "rank 0", timeoutMs);
      await ch.sendJson({ rank, port: ringPort, worldSize });
      table = await ch.recvJson();
      sharedOut = await ch.recv();
      control[0] = ch;
    }
    // The ring: connect to the next rank, accept the previous one.
    if (worldSize === 1) return { rank, worldSize, control, shared: sharedOut };
    const nextEntry = table[(rank + 1) % worldSize];
    const [nextConn, prevConn] = await Promise.all([
      connectWithRetry(nextEntry.host, nextEntry.port, timeoutMs, `rank ${nextEntry.rank}`),
      ringListener.accept(),
    ]);
    return {
      rank,
      worldSize,
      control,
      next: new Channel(nextConn, `rank ${(rank + 1) % worldSize}`, timeoutMs),
      prev: new Channel(prevConn, `rank ${(rank - 1 + worldSize) % worldSize}`, timeoutMs),
      shared: sharedOut,
    };
  } finally {
    ringListener.close();
  }
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
