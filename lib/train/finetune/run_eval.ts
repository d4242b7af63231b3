/**
 * Evaluation inside a fine-tuning run: validation at the end of an epoch and the multi-view test after
 * the last step, each run over every rank's share of the videos, then logged, recorded in metrics.jsonl
 * and written to TensorBoard.
 */
import type { VideoClassifier } from "../../model/classifier.ts";
import type { Run } from "../loop.ts";
import type { FinetuneConfig } from "./config.ts";
import { evalLoader, type RunData } from "./data.ts";
import { type EvalMetrics, formatTest, runTest, validate } from "./eval.ts";
import type { TestSummary } from "./tta.ts";

/** Validates after `step` (the end of `epoch`); undefined when validation is off or there is no split. */
export async function validateEpoch(
  cfg: FinetuneConfig,
  data: RunData,
  run: Run<VideoClassifier>,
  epoch: number,
  step: number,
): Promise<EvalMetrics | undefined> {
  if (!cfg.train.validate || !data.val.list) return undefined;
  const { proc, log } = run;
  const loader = evalLoader(cfg, "val", data.val, proc.dtype, proc.env);
  let v: EvalMetrics;
  try {
    v = await validate(run.model, loader, run.arena, proc.group);
  } finally {
    await loader.close();
  }
  log.say(
    `val epoch ${epoch}: top-1 ${v.top1.toFixed(2)}%  top-5 ${v.top5.toFixed(2)}%  loss ${
      v.loss.toFixed(4)
    } (${v.videos} videos)`,
  );
  await log.record({ epoch, step, val: v });
  for (const k of ["top1", "top5", "loss"] as const) log.tb?.scalar(`val/${k}`, v[k], step);
  // Validation time is not training time.
  log.restartClock();
  return v;
}

/** The multi-view test after the last step; the merged summary on rank 0, undefined elsewhere or when off. */
export async function testAfterRun(
  cfg: FinetuneConfig,
  data: RunData,
  run: Run<VideoClassifier>,
): Promise<TestSummary | undefined> {
  if (!cfg.train.test || !data.test.list) return undefined;
  const { model, arena, proc, log, totalSteps } = run;
  const extra = { checkpoint: run.lastCheckpoint ?? null, steps: totalSteps };
  const r = await runTest(cfg, model, data, proc.dtype, arena, proc.env, proc.group, extra);
  if (!r) return undefined;
  const test = r.summary;
  log.say(`${formatTest(cfg, test)}; per video: ${r.perVideo}`);
  await log.record({ test });
  log.tb?.scalar("test/top1", test.top1, totalSteps);
  log.tb?.scalar("test/top5", test.top5, totalSteps);
  return test;
}
