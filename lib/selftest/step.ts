/**
 * One whole pretraining step (forward, backward, gradient norms) on a fixed small batch, so the GPU
 * self-test can hold the CUDA build's step against the host build's.
 */
import { Graph } from "../autograd.ts";
import { type Backend, openNative } from "../ffi/native.ts";
import { Arena } from "../memory.ts";
import { modelConfig } from "../model/config.ts";
import { VideoMAEPretrain } from "../model/pretrain.ts";
import { Rng } from "../rng.ts";
import { readFloats, readScalar, writeTensor } from "../tensor.ts";

export interface StepReport {
  device: string;
  model: string;
  batch: number;
  loss: number;
  gradNorm: number;
  /** L2 norm of each parameter's gradient. */
  paramNorms: Record<string, number>;
  ms: number;
}

/** Runs the step in bf16 with seed 0 on `device` (opened as this process's backend). */
export async function runStep(
  opts: { device: Backend; model: string; batch: number; imgSize?: number; frames?: number },
): Promise<StepReport> {
  const n = await openNative({ device: opts.device, quiet: true });
  const cfg = modelConfig(opts.model, {
    ...(opts.imgSize ? { imgSize: opts.imgSize } : {}),
    ...(opts.frames ? { frames: opts.frames } : {}),
  });
  const model = new VideoMAEPretrain(cfg).allocate("bf16").initialize(0);
  const rng = new Rng(1);
  const g = new Graph(new Arena());
  const video = g.alloc([opts.batch, 3, cfg.frames, cfg.imgSize, cfg.imgSize], "f32");
  writeTensor(video, Float32Array.from({ length: video.numel }, () => rng.normal()));
  const mask = model.drawMask(rng, opts.batch, 0.9);
  const start = performance.now();
  model.store.zeroGrad();
  const { loss } = model.forward(g, video, { mask });
  g.backward(loss);
  const lossValue = readScalar(loss);
  const ms = performance.now() - start;
  const grads = readFloats(model.store.grad!);
  const paramNorms: Record<string, number> = {};
  let total = 0;
  for (const p of model.store.params) {
    let s = 0;
    for (let i = p.offset; i < p.offset + p.numel; i++) s += grads[i] * grads[i];
    paramNorms[p.name] = Math.sqrt(s);
    total += s;
  }
  g.reset();
  model.free();
  return {
    device: n.deviceName(),
    model: opts.model,
    batch: opts.batch,
    loss: lossValue,
    gradNorm: Math.sqrt(total),
    paramNorms,
    ms,
  };
}

/** Lines saying how two steps agree ("ok ..." or "FAIL ..."): loss 1e-2, gradient norms 5e-2 relative. */
export function compareSteps(test: StepReport, ref: StepReport): string[] {
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
  const out: string[] = [];
  const lossErr = rel(test.loss, ref.loss);
  out.push(
    `${lossErr <= 1e-2 ? "ok  " : "FAIL"} loss ${test.loss.toFixed(5)} vs ${ref.loss.toFixed(5)} (rel ${
      lossErr.toExponential(2)
    }, tol 1e-2)`,
  );
  const normErr = rel(test.gradNorm, ref.gradNorm);
  out.push(
    `${normErr <= 5e-2 ? "ok  " : "FAIL"} global gradient norm ${test.gradNorm.toExponential(4)} vs ${
      ref.gradNorm.toExponential(4)
    } (rel ${normErr.toExponential(2)}, tol 5e-2)`,
  );
  let worst = "";
  let worstErr = 0;
  for (const [name, v] of Object.entries(ref.paramNorms)) {
    const e = rel(test.paramNorms[name] ?? NaN, v);
    if (!(e <= worstErr)) {
      worstErr = e;
      worst = name;
    }
  }
  out.push(
    `${worstErr <= 5e-2 ? "ok  " : "FAIL"} per-parameter gradient norms: worst ${worst} rel ${
      worstErr.toExponential(2)
    } (tol 5e-2)`,
  );
  out.push(
    `     step time ${test.ms.toFixed(0)} ms on ${test.device}, ${ref.ms.toFixed(0)} ms on ${ref.device}`,
  );
  return out;
}
