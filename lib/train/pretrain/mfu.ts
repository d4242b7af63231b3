/**
 * Model FLOPs utilisation. True MFU divides by the FLOPs a training video really costs (3 x 2 x the
 * forward MACs of the model as trained, decoder depth 4: 208.5 GFLOP for ViT-B); V-SWIFT's convention
 * divides by 3 x 2 x its README figure (decoder depth 8: 53.433 GMAC for ViT-B), 1.54x more.
 */
import { type ModelConfig, modelConfig } from "../../model/config.ts";
import { countFlops } from "../../model/flops.ts";

/** Dense bf16 tensor-core peaks in TFLOP/s (no sparsity), by a substring of the device name. */
const PEAKS: [RegExp, number][] = [
  [/H200/i, 989.5],
  [/H100.*PCIe/i, 756.5],
  [/H100/i, 989.5],
  [/H800/i, 989.5],
  [/H20\b/i, 148],
  [/A100/i, 312],
  [/A800/i, 312],
  [/L40S/i, 362],
  [/A10G?\b/i, 125],
  [/RTX 4090/i, 165],
];

/** The device's dense bf16 peak in FLOP/s, or undefined when it is not in the table. */
export function peakFlops(deviceName: string): number | undefined {
  for (const [re, tf] of PEAKS) if (re.test(deviceName)) return tf * 1e12;
  return undefined;
}

export interface FlopsPerVideo {
  /** 3 x 2 x forward MACs at the trained decoder depth. */
  honest: number;
  /** 3 x 2 x forward MACs at decoder depth 8 (V-SWIFT's README convention). */
  vswift: number;
}

/** Training FLOPs per video for a pretraining configuration at a mask ratio. */
export function trainFlopsPerVideo(config: ModelConfig, maskRatio = 0.9): FlopsPerVideo {
  return {
    honest: countFlops(config, maskRatio).trainFlops,
    vswift: countFlops({ ...config, decoderDepth: 8 }, maskRatio).trainFlops,
  };
}

/** MFU of a throughput in videos per second on a device with `peak` FLOP/s. */
export function mfu(videosPerSecond: number, flopsPerVideo: number, peak: number): number {
  return (videosPerSecond * flopsPerVideo) / peak;
}

/** ViT-B's figures, for reference in reports: 208.5 and 320.6 GFLOP per video. */
export const VIT_B = trainFlopsPerVideo(modelConfig("base"));
