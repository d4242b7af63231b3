/**
 * A roofline model of a recorded launch sequence on a named GPU: each launch's time at the device's
 * peak (max of FLOPs over the tensor-core peak and bytes over the DRAM bandwidth) and at the efficiency
 * our kernels aim for, the step's total, and the host's launch rate as a second floor.
 */
import type { LaunchRecord } from "../ffi/launch_log.ts";
import { peakFlops } from "../train/pretrain/mfu.ts";
import { type CostUnit, type LaunchCost, launchCost } from "./launch_cost.ts";

export interface GpuSpec {
  name: string;
  /** Dense bf16 tensor-core FLOP/s (no sparsity). */
  tensorFlops: number;
  /** DRAM bytes/s. */
  dramBytes: number;
  /** Host <-> device bytes/s over PCIe (one direction). */
  pcieBytes: number;
}

/** A GPU of the table: the tensor-core peak from the MFU table (peakFlops), the rest from datasheets. */
function spec(name: string, dramBytes: number, pcieBytes: number): GpuSpec {
  const tensorFlops = peakFlops(name);
  if (tensorFlops === undefined) throw new Error(`No bf16 peak for ${name} in lib/train/pretrain/mfu.ts`);
  return { name, tensorFlops, dramBytes, pcieBytes };
}

/** Datasheet figures (SXM parts; PCIe at the link's practical rate). */
export const GPUS: Record<string, GpuSpec> = {
  a100: spec("A100 SXM4 80 GB", 2.039e12, 25e9),
  h100: spec("H100 SXM5 80 GB", 3.35e12, 50e9),
  h200: spec("H200 SXM 141 GB", 4.8e12, 50e9),
};

/**
 * Fractions of the roofs the kernels are meant to reach, and fixed costs. The defaults are what
 * cuBLASLt reaches on transformer-sized GEMMs (~70% of peak), what flash-attention-style kernels reach
 * averaged over forward and backward at head dim 64 (~40%), what a streaming kernel reaches of DRAM
 * bandwidth (~80%), the shortest a kernel runs (~3 us: launch, ramp-up and tail on a full device), and
 * what one launch costs the host thread through Deno FFI and the CUDA runtime (~5 us).
 */
export interface Efficiency {
  gemm: number;
  attention: number;
  memory: number;
  minKernelUs: number;
  hostLaunchUs: number;
}

export const TARGET: Efficiency = { gemm: 0.7, attention: 0.4, memory: 0.8, minKernelUs: 3, hostLaunchUs: 5 };

export interface PricedLaunch extends LaunchCost {
  kernel: string;
  /** Seconds at 100% of the roof that binds it. */
  peakS: number;
  /** Seconds at the target efficiency, at least the minimum kernel time. */
  targetS: number;
  /** Which roof binds at peak: compute or memory. */
  bound: "compute" | "memory" | "pcie";
}

function roofTime(c: LaunchCost, gpu: GpuSpec, eff: { compute: number; memory: number }) {
  if (c.unit === "host") return { s: c.bytes / (gpu.pcieBytes * eff.memory), bound: "pcie" as const };
  const compute = c.unit === "memory" ? 0 : c.flops / (gpu.tensorFlops * eff.compute);
  const memory = c.bytes / (gpu.dramBytes * eff.memory);
  return compute >= memory
    ? { s: compute, bound: "compute" as const }
    : { s: memory, bound: "memory" as const };
}

/** Prices launches on a device. */
export function priceLaunches(costs: CostedLaunch[], gpu: GpuSpec, eff: Efficiency = TARGET): PricedLaunch[] {
  const out: PricedLaunch[] = [];
  for (const c of costs) {
    const peak = roofTime(c, gpu, { compute: 1, memory: 1 });
    const computeEff = c.unit === "attention" ? eff.attention : eff.gemm;
    const target = roofTime(c, gpu, { compute: computeEff, memory: eff.memory });
    out.push({
      ...c,
      peakS: peak.s,
      targetS: Math.max(target.s, eff.minKernelUs * 1e-6),
      bound: peak.bound,
    });
  }
  return out;
}

export interface StepPrediction {
  launches: number;
  flops: number;
  bytes: number;
  /** Sum of the launches' times at peak (no overlap between kernels: one stream). */
  peakS: number;
  targetS: number;
  /** The host thread's time to issue every launch; the step cannot be shorter. */
  hostS: number;
  /** max(targetS, hostS). */
  stepS: number;
  byUnit: Record<CostUnit, { launches: number; flops: number; bytes: number; targetS: number }>;
}

/** Totals of a priced step. */
export function predictStep(priced: PricedLaunch[], eff: Efficiency = TARGET): StepPrediction {
  const byUnit = Object.fromEntries(
    (["gemm", "attention", "memory", "host"] as CostUnit[]).map((u) => [
      u,
      { launches: 0, flops: 0, bytes: 0, targetS: 0 },
    ]),
  ) as StepPrediction["byUnit"];
  let [flops, bytes, peakS, targetS] = [0, 0, 0, 0];
  for (const p of priced) {
    flops += p.flops;
    bytes += p.bytes;
    peakS += p.peakS;
    targetS += p.targetS;
    const u = byUnit[p.unit];
    u.launches++;
    u.flops += p.flops;
    u.bytes += p.bytes;
    u.targetS += p.targetS;
  }
  const hostS = priced.length * eff.hostLaunchUs * 1e-6;
  return {
    launches: priced.length,
    flops,
    bytes,
    peakS,
    targetS,
    hostS,
    stepS: Math.max(targetS, hostS),
    byUnit,
  };
}

/** A launch's cost with its entry point's name. */
export interface CostedLaunch extends LaunchCost {
  kernel: string;
}

/** The cost of every recorded launch that does device work. */
export function costLaunches(launches: LaunchRecord[]): CostedLaunch[] {
  const out: CostedLaunch[] = [];
  for (const r of launches) {
    const c = launchCost(r);
    if (c) out.push({ ...c, kernel: r.kernel });
  }
  return out;
}

/**
 * Extends launch costs recorded at batches 1, 2 and 3 to batch `b`. Each launch's FLOPs and bytes are
 * affine in the batch (a row count or batch dimension scales, parameter-sized work does not), so
 * cost(b) = cost(1) + (b - 1) (cost(2) - cost(1)); the recording at batch 3 checks that rule. Throws when
 * the sequences differ or a launch is not affine, since the model would then be wrong. Shapes stay those
 * of batch 1.
 */
export function extrapolate(at: [CostedLaunch[], CostedLaunch[], CostedLaunch[]], b: number): CostedLaunch[] {
  const [at1, at2, at3] = at;
  if (at1.length !== at2.length || at3.length !== at1.length) {
    throw new Error(
      `The launch sequence changes with the batch (${at1.length}, ${at2.length}, ${at3.length} launches at ` +
        `batches 1, 2, 3); cannot extrapolate it`,
    );
  }
  const line = (x1: number, x2: number, batch: number) => x1 + (batch - 1) * (x2 - x1);
  const off = (want: number, got: number) => Math.abs(want - got) > 1e-9 * Math.max(1, Math.abs(got));
  return at1.map((c1, i) => {
    const [c2, c3] = [at2[i], at3[i]];
    if (c1.kernel !== c2.kernel || c1.kernel !== c3.kernel) {
      throw new Error(`Launch ${i} is ${c1.kernel}, ${c2.kernel}, ${c3.kernel} at batches 1, 2, 3`);
    }
    if (off(line(c1.flops, c2.flops, 3), c3.flops) || off(line(c1.bytes, c2.bytes, 3), c3.bytes)) {
      throw new Error(
        `Launch ${i} (${c1.kernel} ${c1.shape} at batch 1) is not affine in the batch: ` +
          `${c1.flops}, ${c2.flops}, ${c3.flops} FLOPs and ${c1.bytes}, ${c2.bytes}, ${c3.bytes} bytes at batches 1, 2, 3`,
      );
    }
    return { ...c1, flops: line(c1.flops, c2.flops, b), bytes: line(c1.bytes, c2.bytes, b) };
  });
}
