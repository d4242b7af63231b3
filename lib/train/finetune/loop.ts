/**
 * The fine-tuning loop, V-SWIFT's recipe (spec §3.4-§3.6, §4.2): TSN segment sampling, RandAugment,
 * random resized crop and random erasing in the loader; mixup / CutMix with label smoothing and the
 * soft-target cross-entropy; stochastic depth; AdamW (0.9, 0.999) with layer-wise lr decay on fp32 master
 * weights (bf16 compute on a GPU); warmup then cosine per step; gradients averaged over the ranks;
 * validation every epoch; checkpoints that resume the same schedule and data stream; the multi-view test
 * at the end. `deno task finetune` runs it; notebooks iterate it (one FinetuneStepMetrics per step). The
 * loop itself (process, resume, guard, logs, checkpoints, stop) is lib/train/loop.ts.
 *
 * Every random draw of a step (mixup, stochastic depth, augmentation) comes from a generator keyed by
 * (seed, rank, step), so ranks draw differently (V-SWIFT's ranks draw alike, spec §9.6) and a resumed run
 * draws exactly what the uninterrupted one would have.
 */
import { readHeadMap } from "../../data/labels.ts";
import { rngFor } from "../../data/seed.ts";
import type { VideoClassifier } from "../../model/classifier.ts";
import { formatReport, loadPretrained, type PretrainedReport } from "../../model/pretrained.ts";
import { AdamW } from "../adamw.ts";
import { trainLoop } from "../loop.ts";
import { adamWOptions } from "../optim_config.ts";
import { type FinetuneConfig, modelKeys } from "./config.ts";
import { resolveData, type RunData, trainLoader } from "./data.ts";
import type { EvalMetrics } from "./eval.ts";
import { layerDecayRule } from "./layer_decay.ts";
import {
  type FinetuneLoopOptions,
  finetuneMetrics,
  type FinetuneStepMetrics,
  type FinetuneSummary,
  formatFinetuneLine,
} from "./metrics.ts";
import { mixBatch, type MixDraw, type MixupOptions, mixupOptions } from "./mixup.ts";
import { buildClassifier } from "./model.ts";
import { testAfterRun, validateEpoch } from "./run_eval.ts";
import type { TestSummary } from "./tta.ts";

export {
  type FinetuneLoopOptions,
  type FinetuneStepMetrics,
  type FinetuneSummary,
  formatFinetuneLine,
} from "./metrics.ts";

/** Generator streams of the loop (distinct from the loader's). */
const STREAM = { mix: 201, dropPath: 202 } as const;

/** Runs (or resumes) a fine-tuning run; yields the metrics of every step. */
export async function* finetune(
  cfg: FinetuneConfig,
  opts: FinetuneLoopOptions = {},
): AsyncGenerator<FinetuneStepMetrics, FinetuneSummary> {
  let data!: RunData;
  let rank = 0;
  let mixOpts!: MixupOptions;
  let pretrained: PretrainedReport | undefined;
  let test: TestSummary | undefined;
  const vals: (EvalMetrics & { epoch: number })[] = [];

  const summary = yield* trainLoop<VideoClassifier, MixDraw, FinetuneStepMetrics>(cfg, opts, {
    name: "training",
    build(proc, globalBatch, say) {
      rank = proc.env.rank;
      const model = buildClassifier(cfg, proc.dtype, proc);
      const mc = model.config;
      const o = cfg.optim;
      const opt = new AdamW(
        model.store,
        adamWOptions(o, globalBatch),
        layerDecayRule(mc.depth, o.layer_decay, o.weight_decay),
      );
      mixOpts = mixupOptions(cfg.mixup, model.numClasses);
      const params = `${(model.parameterCount / 1e6).toFixed(3)}M parameters`;
      say(
        `model: ${mc.name} classifier, ${model.numClasses} classes, ${params}, ${proc.dtype} compute, ` +
          `fp32 masters; layer decay ${o.layer_decay}, drop path ${cfg.model.drop_path}`,
      );
      return { model, opt };
    },
    // No checkpoint of this run: the pretrained weights when given, else the initialisation.
    async start(model, say) {
      if (!cfg.train.finetune) {
        return say("no pretrained weights (train.finetune is empty): training from scratch");
      }
      const headMap = cfg.data.head_map ? readHeadMap(cfg.data.head_map, model.numClasses) : undefined;
      pretrained = await loadPretrained(model, cfg.train.finetune, {
        modelKeys: modelKeys(cfg),
        headMap,
        headMapSource: cfg.data.head_map || undefined,
      });
      say(formatReport(pretrained));
    },
    async data(proc, resume, say) {
      data = await resolveData(cfg, proc.group, say);
      return trainLoader(cfg, data.train, proc.dtype, proc.env, resume);
    },
    // Mixup or CutMix on the device with soft targets beside it; stochastic depth; the soft-target loss.
    forward(model, g, batch, step) {
      const mixRng = rngFor(STREAM.mix, cfg.train.seed, rank, step);
      const { targets, draw } = mixBatch(g, mixRng, batch.video, batch.labels, mixOpts);
      const res = model.forward(g, batch.video, {
        rng: rngFor(STREAM.dropPath, cfg.train.seed, rank, step),
        targets,
      });
      return { loss: res.loss!, extra: draw };
    },
    metrics: finetuneMetrics,
    formatLine: formatFinetuneLine,
    scalars: (m) => (["loss", "lr", "gradNorm", "videosPerSecond"] as const).map((t) => [`train/${t}`, m[t]]),
    async endOfEpoch(run, m) {
      const val = await validateEpoch(cfg, data, run, m.epoch, m.step);
      if (val) vals.push({ ...(m.val = val), epoch: m.epoch });
    },
    finish: async (run) => void (test = await testAfterRun(cfg, data, run)),
  });
  const { steps, output, lastCheckpoint, interrupted } = summary;
  return { steps, output, lastCheckpoint, interrupted, val: vals, test, pretrained };
}
