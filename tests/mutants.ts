/**
 * Known-wrong one-line changes that the test suite must catch (`deno task mutants`). Each names the
 * exact text it replaces (which must occur exactly once in its file, so a mutant that no longer applies
 * is reported rather than silently skipped) and the test files that should fail with it. A mutant must
 * still build: one caught only because the library no longer compiles proves nothing about the tests.
 */
export interface Mutant {
  id: string;
  /** Path from the repository root. */
  file: string;
  find: string;
  replace: string;
  /** Test files (from the repository root) that must fail with the mutant in place. */
  tests: string[];
}

const OPTIM = ["tests/optim_reference_test.ts"];
const FORWARD = ["tests/forward_reference_test.ts", "tests/torch_reference_test.ts"];
const FRAMES = ["tests/data_frames_test.ts"];

export const MUTANTS: Mutant[] = [
  {
    id: "loader ignores the sampling rate",
    file: "lib/data/loader.ts",
    find: "pretrainIndices(f, n, this.samplingRate,",
    replace: "pretrainIndices(f, n, 1,",
    tests: FRAMES,
  },
  {
    id: "loader swaps mean and std",
    file: "lib/data/loader.ts",
    find: "this.mean = [...(opts.mean ?? IMAGENET_MEAN)];",
    replace: "this.mean = [...(opts.mean ?? IMAGENET_STD)];",
    tests: FRAMES,
  },
  {
    id: "validation takes the first frame of each segment",
    file: "lib/data/temporal.ts",
    find: "(_, i) => i * seg + Math.floor(seg / 2));",
    replace: "(_, i) => i * seg);",
    tests: FRAMES,
  },
  {
    id: "AdamW weight decay with the wrong sign",
    file: "cuda/host/optim.c",
    find: "1.0 - (double)lr * (double)weight_decay",
    replace: "1.0 + (double)lr * (double)weight_decay",
    tests: OPTIM,
  },
  {
    id: "AdamW without the first-moment bias correction",
    file: "cuda/host/optim.c",
    find: "const double step_size = (double)lr / bc1;",
    // Still reads bc1, so the build's -Werror sees no unused variable: the tests must catch it.
    replace: "const double step_size = (double)lr / bc1 * bc1;",
    tests: OPTIM,
  },
  {
    id: "AdamW without the second-moment bias correction",
    file: "cuda/host/optim.c",
    find: "const double bc2_sqrt = sqrt(1.0 - pow(b2, (double)step));",
    replace: "const double bc2_sqrt = 1.0;",
    tests: OPTIM,
  },
  {
    id: "AdamW eps inside the square root",
    file: "cuda/host/optim.c",
    find: "sqrt((double)vi) / bc2_sqrt + e",
    replace: "sqrt((double)vi + e) / bc2_sqrt",
    tests: OPTIM,
  },
  {
    id: "gradient clipping disabled",
    file: "cuda/host/optim.c",
    find: "coef[0] = c > 1.0f ? 1.0f : c;",
    replace: "coef[0] = c > 1.0f ? 1.0f : 1.0f;",
    tests: OPTIM,
  },
  {
    id: "1-D parameters decay",
    file: "lib/train/adamw.ts",
    find: "if (p.shape.length <= 1) return false;",
    replace: "if (p.shape.length < 1) return false;",
    tests: OPTIM,
  },
  {
    id: "per-group learning-rate scales ignored",
    file: "lib/train/adamw.ts",
    find: "lr * r.lrScale,",
    replace: "lr,",
    tests: OPTIM,
  },
  {
    id: "attention scale 1/hd instead of 1/sqrt(hd)",
    file: "lib/ops/attention.ts",
    find: "scale = 1 / Math.sqrt(headDim),",
    replace: "scale = 1 / headDim,",
    tests: FORWARD,
  },
  {
    id: "v_bias packed as the key bias",
    file: "lib/ops/tokens.ts",
    find: "out.sub(2 * d, [d]).ptr, vBias.ptr",
    replace: "out.sub(d, [d]).ptr, vBias.ptr",
    tests: FORWARD,
  },
  {
    id: "LayerNorm eps outside the square root",
    file: "cuda/host/layernorm.c",
    find: "1.0 / sqrt(sq_dev_lanes(v, cols, mu) / (double)cols + (double)eps);",
    replace: "1.0 / (sqrt(sq_dev_lanes(v, cols, mu) / (double)cols) + (double)eps);",
    tests: FORWARD,
  },
  {
    id: "GELU with the tails of Phi swapped",
    file: "cuda/host/fmath.h",
    find: "const double far = x < 0.0 ? half_erfc : 1.0 - half_erfc;",
    replace: "const double far = x < 0.0 ? 1.0 - half_erfc : half_erfc;",
    tests: FORWARD,
  },
  {
    id: "pixel target with the biased standard deviation",
    file: "cuda/host/video.c",
    find: "sqrt(ss / (double)(px - 1))",
    replace: "sqrt(ss / (double)px)",
    tests: FORWARD,
  },
  {
    id: ".pth reader ignores strides",
    file: "lib/io/pth.ts",
    find: "if (this.contiguous) return src.slice(",
    replace: "if (this.numel > 0) return src.slice(",
    tests: ["tests/finetune_pth_test.ts"],
  },
  {
    id: "vs_fill leaves the last element",
    file: "cuda/host/elementwise.c",
    find: "      for (int64_t i = 0; i < n; i++) {\n        d[i] = value;",
    replace: "      for (int64_t i = 0; i < n - 1; i++) {\n        d[i] = value;",
    tests: ["tests/selftest_test.ts"],
  },
  {
    id: "V-SWIFT's mask keeps one token more per slice",
    file: "lib/model/masking.ts",
    find: "? Math.floor(perSlice * (1 - ratio))",
    replace: "? Math.ceil(perSlice * (1 - ratio))",
    tests: ["tests/model_test.ts"],
  },
  {
    id: "warmup reaches the base lr one step late",
    file: "lib/train/schedule.ts",
    find: "(this.base * s) / (w - 1)",
    replace: "(this.base * s) / w",
    tests: ["tests/pretrain_test.ts"],
  },
];
