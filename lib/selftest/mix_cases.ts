/**
 * Self-test cases of the fine-tuning augmentation kernels (mixup, CutMix, random erasing), on the batch
 * shapes of ViT-B fine-tuning, in both dtypes. The kernels work in place, so every buffer is an input
 * that is also compared.
 */
import type { Rng } from "../rng.ts";
import { code, type KernelCase, randn, TOL } from "./kernel_case.ts";

/** mixup (odd and even batches), CutMix and random erasing cases. */
export function mixCases(rng: Rng): KernelCase[] {
  const out: KernelCase[] = [];
  const [c, t, h, w] = [3, 16, 224, 224];
  const clip = c * t * h * w;
  for (const dt of ["f32", "bf16"] as const) {
    for (const b of [4, 5]) {
      out.push({
        name: `vs_mix_batch ${dt} (batch ${b} of 16 x 224 x 224 clips, lam 0.37)`,
        tol: TOL[dt],
        buffers: { x: { dtype: dt, n: b * clip, data: randn(rng, b * clip), output: true } },
        call: (k, p) => k.call("vs_mix_batch", code(dt), b, clip, 0.37, p.x, null),
      });
    }
    out.push({
      name: `vs_cutmix_batch ${dt} (batch 5, box rows 17..150, columns 3..224)`,
      tol: TOL[dt],
      buffers: { x: { dtype: dt, n: 5 * clip, data: randn(rng, 5 * clip), output: true } },
      call: (k, p) => k.call("vs_cutmix_batch", code(dt), 5, c * t, h, w, 17, 150, 3, 224, p.x, null),
    });
    out.push({
      name: `vs_random_erase ${dt} (one clip, a 101 x 57 box)`,
      tol: TOL[dt],
      buffers: { x: { dtype: dt, n: clip, data: randn(rng, clip), output: true } },
      call: (k, p) =>
        k.call("vs_random_erase", code(dt), c, t, h, w, 40, 120, 101, 57, 0xdeadbeef, p.x, null),
    });
  }
  return out;
}
