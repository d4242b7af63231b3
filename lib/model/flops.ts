/**
 * FLOP and parameter counts as V-SWIFT's table computes them (fvcore: one multiply-add counts as one
 * "flop"; Linear, matmul and Conv counted; LayerNorm 5 per element; softmax, GELU and adds ignored),
 * taken from the model objects themselves.
 */
import { geometry, type ModelConfig, modelConfig } from "./config.ts";
import { keptPerSlice } from "./masking.ts";
import { VideoMAEPretrain } from "./pretrain.ts";

export interface FlopsRow {
  size: string;
  decoderDepth: number;
  visible: number;
  masked: number;
  params: number;
  /** Forward multiply-adds per video (fvcore's "flops"). */
  macs: number;
  /** Honest training FLOPs per video: 3 (forward + backward) x 2 (a MAC is two FLOPs) x MACs. */
  trainFlops: number;
}

/** Counts one configuration under V-SWIFT masking at `maskRatio` (no memory is allocated). */
export function countFlops(config: ModelConfig, maskRatio = 0.9): FlopsRow {
  const model = new VideoMAEPretrain(config);
  const { slices, perSlice, tokens } = geometry(config);
  const visible = slices * keptPerSlice(perSlice, maskRatio, "vswift");
  const macs = model.macs(visible, tokens - visible);
  return {
    size: config.name,
    decoderDepth: config.decoderDepth,
    visible,
    masked: tokens - visible,
    params: model.parameterCount,
    macs,
    trainFlops: 6 * macs,
  };
}

/** The FLOP table for every V-SWIFT size at the given decoder depths (16 x 224 x 224, mask 0.9). */
export function flopsTable(depths = [4, 8]): FlopsRow[] {
  const rows: FlopsRow[] = [];
  for (const size of ["small", "base", "large", "huge", "giant"]) {
    for (const d of depths) rows.push(countFlops(modelConfig(size, { decoderDepth: d })));
  }
  return rows;
}

/** fvcore's number format (3 decimals, trailing zeros dropped, K/M/G/T/P above 1e2/1e5/1e8/1e11/1e14). */
export function fvcoreFormat(x: number): string {
  const fmt = (v: number) => v.toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
  const a = Math.abs(x);
  if (a > 1e14) return `${fmt(x / 1e15)}P`;
  if (a > 1e11) return `${fmt(x / 1e12)}T`;
  if (a > 1e8) return `${fmt(x / 1e9)}G`;
  if (a > 1e5) return `${fmt(x / 1e6)}M`;
  if (a > 1e2) return `${fmt(x / 1e3)}K`;
  return String(x);
}
