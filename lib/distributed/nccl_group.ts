/**
 * The GPU process group: NCCL for tensors (gradients, parameters), the TCP ring of the rendezvous for
 * a few host numbers (metrics, the stop flag). Rank 0 makes NCCL's unique id and hands it out at
 * rendezvous.
 */
import { native } from "../ffi/native.ts";
import type { Pointer } from "../ffi/pointers.ts";
import type { Tensor } from "../tensor.ts";
import type { DistEnv } from "./env.ts";
import { HostGroup, type ProcessGroup, type ReduceOp, rendezvous } from "./group.ts";

export class NcclGroup implements ProcessGroup {
  readonly kind = "nccl" as const;
  readonly rank: number;
  readonly worldSize: number;

  private constructor(private readonly comm: Pointer, private readonly host: HostGroup) {
    this.rank = host.rank;
    this.worldSize = host.worldSize;
  }

  static async create(env: DistEnv): Promise<NcclGroup> {
    const n = native();
    if (!n.isCuda || n.symbols.vs_nccl_available() !== 1) {
      throw new Error(
        `NCCL is not available (${
          n.lastError() || `backend ${n.backend}`
        }); install NCCL or run on the host group`,
      );
    }
    const id = env.rank === 0 ? n.ncclUniqueId() : new Uint8Array();
    const links = await rendezvous(env, id);
    if (links.shared.length !== 128) {
      throw new Error(`Rank 0 handed out a ${links.shared.length}-byte NCCL id, not 128`);
    }
    const comm = n.ncclCommInit(env.worldSize, links.shared, env.rank);
    return new NcclGroup(comm, new HostGroup(links));
  }

  allReduce(t: Tensor, op: ReduceOp, stream?: Pointer): Promise<void> {
    if (t.dtype !== "f32" && t.dtype !== "bf16") {
      throw new TypeError(`NCCL all-reduce takes f32 or bf16, got ${t}`);
    }
    native().call(
      "vs_nccl_all_reduce",
      this.comm,
      t.code,
      t.numel,
      t.ptr,
      t.ptr,
      op === "avg" ? 1 : 0,
      stream ?? native().stream,
    );
    return Promise.resolve();
  }

  broadcast(t: Tensor, root: number): Promise<void> {
    native().call("vs_nccl_broadcast", this.comm, t.code, t.numel, t.ptr, t.ptr, root, native().stream);
    return Promise.resolve();
  }

  allReduceNumbers(values: number[], op: ReduceOp): Promise<number[]> {
    return this.host.allReduceNumbers(values, op);
  }

  barrier(): Promise<void> {
    native().call("vs_device_sync");
    return this.host.barrier();
  }

  async close(): Promise<void> {
    native().call("vs_nccl_comm_destroy", this.comm);
    await this.host.close();
  }
}
