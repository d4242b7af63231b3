/** Shared test helpers: the host kernels, random tensors and a central finite-difference checker. */
import { Graph } from "../lib/autograd.ts";
import { openNative } from "../lib/ffi/native.ts";
import { loadSafetensors, toFloats } from "../lib/io/safetensors.ts";
import { memset } from "../lib/ffi/pointers.ts";
import { allocPersistent, Arena } from "../lib/memory.ts";
import { Rng } from "../lib/rng.ts";
import { type DType, readFloats, type Tensor, writeTensor } from "../lib/tensor.ts";
import { listCheckpoints } from "../lib/train/checkpoint.ts";

await openNative({ device: "host", quiet: true });

/** One arena for all tests of a file; graphs reset it. */
export const arena = new Arena(8 << 20);

/** A persistent tensor of N(0, scale^2) values. */
export function randn(rng: Rng, shape: number[], scale = 1, dtype: DType = "f32"): Tensor {
  const t = allocPersistent(shape, dtype);
  const v = new Float32Array(t.numel);
  for (let i = 0; i < v.length; i++) v[i] = rng.normal() * scale;
  writeTensor(t, v);
  return t;
}

/** Marks a tensor as a leaf whose gradient lands in a zeroed persistent f32 buffer. */
export function leaf(t: Tensor): Tensor {
  t.requiresGrad = true;
  t.gradBuffer = allocPersistent(t.shape, "f32");
  memset(t.gradBuffer.ptr, 0, t.gradBuffer.bytes);
  return t;
}

export interface GradCheckResult {
  /** ||analytic - numeric|| / ||numeric|| over the sampled coordinates, per input. */
  relErr: Record<string, number>;
  /** ||analytic - numeric|| per input. */
  absErr: Record<string, number>;
  /** ||numeric|| per input, to show the check is not vacuous. */
  norm: Record<string, number>;
  /**
   * What f32 rounding of the loss alone can put into ||numeric||: 16 ulps of the loss over the
   * difference's 2 eps, times sqrt(coordinates).
   */
  noise: Record<string, number>;
}

/**
 * Compares the tape's gradients of `inputs` (leaves) with central differences of `build`'s scalar loss,
 * all in f32 on the host build, at `samples` coordinates of each input: random ones, or with "largest"
 * those where the tape's gradient is largest. A whole model's single weights move its f32 loss by
 * little more than rounding, so there the largest coordinates are the ones a difference can resolve;
 * an input whose tape gradient is wrongly zero still fails, its numeric gradient being non-zero.
 */
export function gradCheck(
  inputs: Record<string, Tensor>,
  build: (g: Graph) => Tensor,
  opts: { samples?: number; eps?: number; seed?: number; mode?: "random" | "largest" } = {},
): GradCheckResult {
  const eps = opts.eps ?? 1e-2;
  const rng = new Rng(opts.seed ?? 1234);
  for (const t of Object.values(inputs)) memset(t.gradBuffer!.ptr, 0, t.gradBuffer!.bytes);
  const g = new Graph(arena);
  const loss = build(g);
  const lossValue = readFloats(loss)[0];
  g.backward(loss);
  g.reset();
  const lossAt = () => {
    const ge = new Graph(arena, { grad: false });
    const v = readFloats(build(ge))[0];
    ge.reset();
    return v;
  };
  const result: GradCheckResult = { relErr: {}, absErr: {}, norm: {}, noise: {} };
  const ulp = Math.abs(lossValue) * 2 ** -23;
  for (const [name, t] of Object.entries(inputs)) {
    const analytic = readFloats(t.gradBuffer!);
    const values = readFloats(t);
    const n = values.length;
    const k = opts.samples ?? 24;
    let coords: number[];
    if (n <= k) coords = [...Array(n).keys()];
    else if (opts.mode === "largest") {
      coords = [...Array(n).keys()].sort((x, y) => Math.abs(analytic[y]) - Math.abs(analytic[x])).slice(0, k);
    } else coords = [...rng.permutation(n).slice(0, k)];
    let diff = 0;
    let norm = 0;
    for (const j of coords) {
      const orig = values[j];
      values[j] = orig + eps;
      writeTensor(t, values);
      const up = lossAt();
      values[j] = orig - eps;
      writeTensor(t, values);
      const down = lossAt();
      values[j] = orig;
      writeTensor(t, values);
      const numeric = (up - down) / (2 * eps);
      diff += (analytic[j] - numeric) ** 2;
      norm += numeric ** 2;
    }
    result.relErr[name] = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-12);
    result.absErr[name] = Math.sqrt(diff);
    result.norm[name] = Math.sqrt(norm);
    result.noise[name] = (16 * ulp / (2 * eps)) * Math.sqrt(coords.length);
  }
  return result;
}

/**
 * Asserts that every input's gradient matches within `tol` relative error, or, for inputs whose
 * numeric gradient is within f32 rounding noise of the loss, within that noise; and that at least
 * `resolved` of the inputs (a fraction) stand clear of the noise, so the check is not vacuous.
 */
export function assertGradOk(r: GradCheckResult, tol: number, resolved = 1): void {
  if (Deno.env.get("VSWIFT_GRAD_VERBOSE")) console.log(r);
  const names = Object.keys(r.relErr);
  let clear = 0;
  for (const name of names) {
    const noisy = r.norm[name] < 10 * r.noise[name];
    if (!noisy) clear++;
    const ok = r.relErr[name] <= tol || (noisy && r.absErr[name] <= r.noise[name]);
    if (!ok) {
      throw new Error(
        `Gradient of ${name}: relative error ${r.relErr[name].toExponential(2)} exceeds ${tol} ` +
          `(|numeric| ${r.norm[name].toExponential(2)}, f32 noise ${r.noise[name].toExponential(2)})`,
      );
    }
  }
  if (clear < resolved * names.length) {
    throw new Error(
      `Only ${clear} of ${names.length} gradients stand clear of f32 noise; the check is too weak`,
    );
  }
}

/** max |got - want| / max |want| over all elements. */
export function maxRelDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new RangeError(`${got.length} values against ${want.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(got[i] - want[i]));
    den = Math.max(den, Math.abs(want[i]));
  }
  return num / den;
}

/** The real Kinetics clips beside the project (../shared/data), or undefined where that folder is absent. */
export const SHARED_DATA: string | undefined = await (async () => {
  const dir = new URL("../../shared/data", import.meta.url).pathname;
  return await Deno.stat(`${dir}/k400_sample.csv`).then(() => dir, () => undefined);
})();

/** The Kinetics clips of ../shared/data/k400_sample, sorted; none where that folder is absent. */
export const K400_CLIPS: string[] = await (async () => {
  const dir = new URL("../../shared/data/k400_sample", import.meta.url).pathname;
  return await Array.fromAsync(Deno.readDir(dir)).then(
    (es) => es.filter((e) => e.isFile && e.name.endsWith(".mp4")).map((e) => `${dir}/${e.name}`).sort(),
    () => [] as string[],
  );
})();

/** The weights of the newest checkpoint of a run folder, by tensor name. */
export async function finalWeights(output: string): Promise<Map<string, Float32Array>> {
  const last = listCheckpoints(`${output}/checkpoints`).pop()!;
  const file = await loadSafetensors(`${last.path}/model.safetensors`);
  return new Map([...file.tensors].map(([k, t]) => [k, toFloats(t)]));
}

/** A temporary folder for one test file, removed when the file's tests end. */
export async function scratchDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  return dir;
}

/** The smallest pretraining model the task scripts take: tiny, one decoder block, 4 frames of 32 x 32. */
export const TINY_PRETRAIN_MODEL_FLAGS = [
  ...["--model.size", "tiny", "--model.decoder_depth", "1"],
  ...["--model.input_size", "32", "--model.frames", "4"],
];
