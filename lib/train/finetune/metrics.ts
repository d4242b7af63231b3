/** What a fine-tuning step reports and what a run leaves; the log line. */
import type { PretrainedReport } from "../../model/pretrained.ts";
import type { LoopOptions, StepFigures } from "../loop.ts";
import type { EvalMetrics } from "./eval.ts";
import type { MixDraw } from "./mixup.ts";
import type { TestSummary } from "./tta.ts";

/** The shared figures (the loss is the step's, not a window mean) with the step's mixing. */
export interface FinetuneStepMetrics extends Omit<StepFigures, "lossMean"> {
  /** What this rank's batch got: mixup, cutmix or none, and the weight of the samples' own labels. */
  mix: "none" | "mixup" | "cutmix";
  lam: number;
  /** Present on the last step of an epoch that was validated. */
  val?: EvalMetrics;
}

export interface FinetuneSummary {
  steps: number;
  output: string;
  lastCheckpoint?: string;
  interrupted: boolean;
  /** Validation per epoch of this invocation, in order. */
  val: (EvalMetrics & { epoch: number })[];
  /** The multi-view test, when it ran (rank 0). */
  test?: TestSummary;
  pretrained?: PretrainedReport;
}

export type FinetuneLoopOptions = LoopOptions;

/** A step's metrics from the loop's figures and the batch's mixing (this key order is metrics.jsonl's). */
export function finetuneMetrics(f: StepFigures, draw: MixDraw): FinetuneStepMetrics {
  return {
    step: f.step,
    totalSteps: f.totalSteps,
    epoch: f.epoch,
    loss: f.loss,
    lr: f.lr,
    gradNorm: f.gradNorm,
    mix: draw.kind,
    lam: draw.lam,
    videosPerSecond: f.videosPerSecond,
    stepMs: f.stepMs,
    dataWaitPercent: f.dataWaitPercent,
    memoryGiB: f.memoryGiB,
  };
}

/** One log line: step, epoch, loss, lr, grad norm, mixing, videos/s, step time, data wait, memory. */
export function formatFinetuneLine(m: FinetuneStepMetrics): string {
  return [
    `step ${m.step}/${m.totalSteps}`,
    `epoch ${m.epoch}`,
    `loss ${m.loss.toFixed(4)}`,
    `lr ${m.lr.toExponential(2)}`,
    `grad_norm ${Number.isFinite(m.gradNorm) ? m.gradNorm.toFixed(3) : "-"}`,
    `mix ${m.mix}${m.mix === "none" ? "" : ` lam ${m.lam.toFixed(2)}`}`,
    `${m.videosPerSecond.toFixed(1)} videos/s`,
    `${m.stepMs.toFixed(0)} ms/step`,
    `data wait ${m.dataWaitPercent.toFixed(0)}%`,
    `mem ${m.memoryGiB.toFixed(2)} GiB`,
  ].join("  ");
}
