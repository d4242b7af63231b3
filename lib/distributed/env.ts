/**
 * Where this process stands in a multi-process run, from the torchrun-style environment (RANK,
 * WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, NNODES, NODE_RANK) or SLURM's (SLURM_PROCID,
 * SLURM_NTASKS, SLURM_LOCALID, SLURM_NNODES, SLURM_NODEID), so the same command works under torchrun,
 * srun, `deno task pretrain --gpus N`, or alone.
 */

export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  nodeRank: number;
  nodes: number;
  masterAddr: string;
  masterPort: number;
}

function intVar(env: Record<string, string | undefined>, names: string[], fallback: number): number {
  for (const n of names) {
    const v = env[n];
    if (v === undefined || v === "") continue;
    const x = Number(v);
    if (!Number.isInteger(x) || x < 0) {
      throw new RangeError(`Environment variable ${n}=${v} is not a non-negative integer`);
    }
    return x;
  }
  return fallback;
}

/** The first host of a SLURM node list such as "gpu[03-05,07],cpu1" (gpu03). */
export function firstSlurmHost(list: string): string {
  const m = list.match(/^([^,[]+)(\[([^\]]+)\])?/);
  if (!m) return list;
  if (!m[3]) return m[1];
  const first = m[3].split(",")[0].split("-")[0];
  return m[1] + first;
}

/** Reads the process's place in the run; a lone process is rank 0 of 1. */
export function distEnv(env: Record<string, string | undefined> = Deno.env.toObject()): DistEnv {
  const worldSize = intVar(env, ["WORLD_SIZE", "SLURM_NTASKS"], 1);
  const rank = intVar(env, ["RANK", "SLURM_PROCID"], 0);
  const nodes = intVar(env, ["NNODES", "SLURM_NNODES"], 1);
  const nodeRank = intVar(env, ["NODE_RANK", "GROUP_RANK", "SLURM_NODEID"], 0);
  const localRank = intVar(
    env,
    ["LOCAL_RANK", "SLURM_LOCALID"],
    worldSize === 1 ? 0 : rank % Math.max(1, worldSize / nodes),
  );
  const localWorldSize = intVar(
    env,
    ["LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"],
    Math.max(1, Math.floor(worldSize / nodes)),
  );
  if (worldSize < 1) throw new RangeError(`WORLD_SIZE must be at least 1, got ${worldSize}`);
  if (rank >= worldSize) throw new RangeError(`RANK ${rank} is not below WORLD_SIZE ${worldSize}`);
  if (localRank >= localWorldSize && worldSize > 1) {
    throw new RangeError(`LOCAL_RANK ${localRank} is not below the ${localWorldSize} processes per node`);
  }
  const masterAddr = env.MASTER_ADDR ??
    (env.SLURM_JOB_NODELIST ? firstSlurmHost(env.SLURM_JOB_NODELIST) : "127.0.0.1");
  const masterPort = intVar(env, ["MASTER_PORT"], 29500);
  if (masterPort < 1 || masterPort > 65535) {
    throw new RangeError(`MASTER_PORT ${masterPort} is not a TCP port`);
  }
  return { rank, worldSize, localRank, localWorldSize, nodeRank, nodes, masterAddr, masterPort };
}
