/** What a pretraining step reports and what a run leaves; the log line. */
import type { LoopSummary, StepFigures } from "../loop.ts";

export interface StepMetrics extends StepFigures {
  /** MFU with the FLOPs of the model as trained, on devices with a known peak. */
  mfu?: number;
  /** MFU in V-SWIFT's convention (decoder depth 8 FLOPs). */
  mfuVswift?: number;
}

export type RunSummary = LoopSummary;

/** One log line: step, epoch, loss, lr, grad norm, videos/s, step time, data wait, MFU, memory. */
export function formatLine(m: StepMetrics): string {
  const parts = [
    `step ${m.step}/${m.totalSteps}`,
    `epoch ${m.epoch}`,
    `loss ${m.lossMean.toFixed(4)}`,
    `lr ${m.lr.toExponential(2)}`,
    `grad_norm ${Number.isFinite(m.gradNorm) ? m.gradNorm.toFixed(3) : "-"}`,
    `${m.videosPerSecond.toFixed(1)} videos/s`,
    `${m.stepMs.toFixed(0)} ms/step`,
    `data wait ${m.dataWaitPercent.toFixed(0)}%`,
  ];
  if (m.mfu !== undefined) {
    parts.push(`MFU ${(100 * m.mfu).toFixed(1)}% (V-SWIFT convention ${(100 * m.mfuVswift!).toFixed(1)}%)`);
  }
  parts.push(`mem ${m.memoryGiB.toFixed(2)} GiB`);
  return parts.join("  ");
}
