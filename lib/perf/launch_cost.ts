/**
 * FLOPs and DRAM bytes of one recorded kernel call (lib/ffi/launch_log.ts), from its shape arguments.
 *
 * Bytes are the compulsory traffic: every input read once and every output written once (a kernel that
 * reads its input three times, or spills, costs more on the device; the model is a floor). FLOPs count
 * a multiply-add as two; `unit` says which roof bounds the kernel: tensor-core matmul ("gemm"),
 * attention ("attention", matmuls with a softmax between them), or memory ("memory").
 */
import { isNullArg, type LaunchRecord, numArg } from "../ffi/launch_log.ts";
import { type DType, DTYPE_BYTES, DTYPE_CODE } from "../tensor.ts";

export type CostUnit = "gemm" | "attention" | "memory" | "host";

export interface LaunchCost {
  flops: number;
  bytes: number;
  unit: CostUnit;
  /** A short shape description for the listing. */
  shape: string;
}

/** Element bytes by vs_dtype code. */
const BYTES_BY_CODE: number[] = [];
for (const [dtype, code] of Object.entries(DTYPE_CODE)) BYTES_BY_CODE[code] = DTYPE_BYTES[dtype as DType];

function size(r: LaunchRecord, i: number): number {
  const d = numArg(r, i);
  const s = BYTES_BY_CODE[d];
  if (s === undefined) {
    throw new RangeError(`${r.kernel}: dtype code ${d} at argument ${i} is not a vs_dtype`);
  }
  return s;
}

const mem = (bytes: number, flops: number, shape: string): LaunchCost => ({
  flops,
  bytes,
  unit: "memory",
  shape,
});

function gemm(r: LaunchRecord): LaunchCost {
  const [ab, c] = [size(r, 0), size(r, 1)];
  const [m, n, k] = [numArg(r, 4), numArg(r, 5), numArg(r, 6)];
  const beta = numArg(r, 10);
  const epi = numArg(r, 13);
  let bytes = (m * k + k * n) * ab + m * n * c * (beta !== 0 ? 2 : 1);
  if (!isNullArg(r, 12)) bytes += n * c; // bias
  if (epi === 2 || epi === 3) bytes += m * n * c; // GELU_BIAS writes aux, DGELU reads it
  const t = `${numArg(r, 2) ? "T" : "N"}${numArg(r, 3) ? "T" : "N"}`;
  return { flops: 2 * m * n * k, bytes, unit: "gemm", shape: `${m}x${n}x${k} ${t}${beta ? " +=" : ""}` };
}

function attention(r: LaunchRecord, backward: boolean): LaunchCost {
  const s = size(r, 0);
  const [b, n, h, d] = [numArg(r, 1), numArg(r, 2), numArg(r, 3), numArg(r, 4)];
  const tokens = b * n * h * d;
  // Forward: S = QK^T and O = PV, 2 b h n^2 d each. Backward: S again, dP = dO V^T, dV, dQ, dK.
  const flops = (backward ? 10 : 4) * b * h * n * n * d;
  const bytes = backward
    ? 3 * tokens * s + 2 * tokens * s + b * h * n * 4 + 3 * tokens * s + numArg(r, 12)
    : 3 * tokens * s + tokens * s + b * h * n * 4;
  return { flops, bytes, unit: "attention", shape: `b${b} n${n} h${h} d${d}` };
}

/** The cost of one recorded call; undefined for calls that do no device work (allocation, queries). */
export function launchCost(r: LaunchRecord): LaunchCost | undefined {
  const a = (i: number) => numArg(r, i);
  switch (r.kernel) {
    case "vs_gemm":
      return gemm(r);
    case "vs_attention_fwd":
      return attention(r, false);
    case "vs_attention_bwd":
      return attention(r, true);
    case "vs_memcpy": {
      const kind = a(3);
      if (kind === 0) return undefined;
      // Host <-> device copies cross PCIe; counted as such by the roofline.
      if (kind !== 3) return { flops: 0, bytes: a(2), unit: "host", shape: `${a(2)} B` };
      return mem(2 * a(2), 0, `${a(2)} B`);
    }
    case "vs_memset":
      return mem(a(2), 0, `${a(2)} B`);
    case "vs_cast":
      return mem(a(2) * (size(r, 0) + size(r, 1)), 0, `${a(2)}`);
    case "vs_fill":
      return mem(a(1) * size(r, 0), 0, `${a(1)}`);
    case "vs_add":
      return mem(3 * a(1) * size(r, 0), a(1), `${a(1)}`);
    case "vs_axpby":
      return mem(3 * a(1) * size(r, 0), 3 * a(1), `${a(1)}`);
    case "vs_add_bcast":
      return mem((2 * a(1) * a(2) + a(2)) * size(r, 0), a(1) * a(2), `${a(1)}x${a(2)}`);
    case "vs_sum_outer":
      return mem(a(1) * a(2) * size(r, 0) + a(2) * 4 * (a(5) ? 2 : 1), a(1) * a(2), `${a(1)}x${a(2)}`);
    case "vs_scale_rows":
      return mem(2 * a(1) * a(2) * size(r, 0) + a(1) * 4, a(1) * a(2), `${a(1)}x${a(2)}`);
    case "vs_gelu_fwd":
      return mem(2 * a(1) * size(r, 0), 8 * a(1), `${a(1)}`);
    case "vs_gelu_bwd":
      return mem(3 * a(1) * size(r, 0), 10 * a(1), `${a(1)}`);
    case "vs_layernorm_fwd": {
      const [rows, cols, s] = [a(1), a(2), size(r, 0)];
      const residual = !isNullArg(r, 5);
      const bytes = rows * cols * s * (residual ? 4 : 2) + 2 * cols * s + rows * 8;
      return mem(bytes, 8 * rows * cols, `${rows}x${cols}${residual ? " +res" : ""}`);
    }
    case "vs_layernorm_bwd": {
      const [rows, cols, s] = [a(1), a(2), size(r, 0)];
      const bytes = rows * cols * s * (a(9) ? 4 : 3) + cols * (s + 16) + rows * 8;
      return mem(bytes, 10 * rows * cols, `${rows}x${cols}`);
    }
    case "vs_gather_rows":
      return mem(2 * a(1) * a(3) * a(4) * size(r, 0) + a(1) * a(3) * 4, 0, `${a(1)}x${a(3)}x${a(4)}`);
    case "vs_scatter_rows":
      return mem(
        (a(8) ? 3 : 2) * a(1) * a(3) * a(4) * size(r, 0) + a(1) * a(3) * 4,
        0,
        `${a(1)}x${a(3)}x${a(4)}`,
      );
    case "vs_sinusoid_table":
      return mem(a(1) * a(2) * size(r, 0), 0, `${a(1)}x${a(2)}`);
    case "vs_mean_tokens_fwd":
    case "vs_mean_tokens_bwd":
      return mem(
        (a(1) * a(2) * a(3) + a(1) * a(3)) * size(r, 0),
        a(1) * a(2) * a(3),
        `${a(1)}x${a(2)}x${a(3)}`,
      );
    case "vs_patchify": {
      const feats = a(3) * a(7) * a(8) * a(8);
      const elems = a(2) * a(12) * feats;
      return mem(elems * (size(r, 0) + size(r, 1)), 0, `${a(2)}x${a(12)}x${feats}`);
    }
    case "vs_patch_target": {
      const feats = a(2) * a(6) * a(7) * a(7);
      const elems = a(1) * a(12) * feats;
      return mem(elems * (size(r, 0) + 4), 6 * elems, `${a(1)}x${a(12)}x${feats}`);
    }
    case "vs_mse_fwd":
      return mem(a(1) * (size(r, 0) + 4), 3 * a(1), `${a(1)}`);
    case "vs_mse_bwd":
      return mem(a(1) * (2 * size(r, 0) + 4), 3 * a(1), `${a(1)}`);
    case "vs_softmax_xent_fwd":
      return mem(a(1) * a(2) * (size(r, 0) + 4), 5 * a(1) * a(2), `${a(1)}x${a(2)}`);
    case "vs_softmax_xent_bwd":
      return mem(a(1) * a(2) * (2 * size(r, 0) + 4), 5 * a(1) * a(2), `${a(1)}x${a(2)}`);
    case "vs_grad_norm":
      return mem(4 * a(0), 2 * a(0), `${a(0)}`);
    case "vs_clip_coef":
      return mem(8, 2, "1");
    case "vs_adamw":
      // f32 param, grad, m, v read; param, m, v written; the bf16 compute copy written when present.
      return mem(a(0) * (28 + (isNullArg(r, 2) ? 0 : 2)), 14 * a(0), `${a(0)}`);
    case "vs_nonfinite":
      return mem(a(1) * size(r, 0), a(1), `${a(1)}`);
    case "vs_mix_batch":
      return mem(3 * a(1) * a(2) * size(r, 0), 3 * a(1) * a(2), `${a(1)}x${a(2)}`);
    default:
      return undefined;
  }
}
