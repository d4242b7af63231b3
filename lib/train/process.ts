/**
 * Opening a training process: the kernel library on this process's device and the process group of the
 * run (one process alone, NCCL between GPUs, or the host ring), from the torchrun / SLURM environment.
 */
import { type DistEnv, distEnv } from "../distributed/env.ts";
import { HostGroup, type ProcessGroup, rendezvous, SingleGroup } from "../distributed/group.ts";
import { NcclGroup } from "../distributed/nccl_group.ts";
import { type DeviceChoice, type Native, openNative } from "../ffi/native.ts";

export interface TrainingProcess {
  native: Native;
  env: DistEnv;
  group: ProcessGroup;
  /** Rank 0, which writes logs, checkpoints and merged results. */
  lead: boolean;
  /** The compute dtype for a config's choice (auto: bf16 on a GPU, f32 on the host). */
  dtype: "f32" | "bf16";
}

/** Opens the device of this rank and joins the run's process group. */
export async function openTrainingProcess(
  device: DeviceChoice,
  dtype: "auto" | "f32" | "bf16",
): Promise<TrainingProcess> {
  const env = distEnv();
  const native = await openNative({ device, deviceIndex: env.localRank, quiet: true });
  const group: ProcessGroup = env.worldSize === 1
    ? new SingleGroup()
    : native.isCuda
    ? await NcclGroup.create(env)
    : new HostGroup(await rendezvous(env));
  return {
    native,
    env,
    group,
    lead: env.rank === 0,
    dtype: dtype === "auto" ? (native.isCuda ? "bf16" : "f32") : dtype,
  };
}

/** A one-line description of the device and the group, for the log. */
export function describeProcess(p: TrainingProcess): string {
  const n = p.native;
  const dev = `device: ${n.backend} (${n.deviceName()})${
    n.fallbackReason ? `; not cuda: ${n.fallbackReason}` : ""
  }`;
  return p.group.worldSize > 1
    ? `${dev}; ${p.group.worldSize} processes over ${p.group.kind === "nccl" ? "NCCL" : "the host ring"}`
    : dev;
}
