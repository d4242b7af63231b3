/**
 * V-SWIFT's per-step learning-rate schedule: a linear warmup from exactly 0 (numpy's linspace(0, base,
 * warmup), so the last warmup step reaches base) then a cosine from base down towards min_lr.
 */
export class CosineSchedule {
  constructor(
    readonly base: number,
    readonly min: number,
    readonly warmupSteps: number,
    readonly totalSteps: number,
  ) {
    if (!(totalSteps >= 1)) throw new RangeError(`A schedule needs at least one step, got ${totalSteps}`);
    if (!(warmupSteps >= 0 && warmupSteps <= totalSteps)) {
      throw new RangeError(`Warmup of ${warmupSteps} steps does not fit in ${totalSteps} steps`);
    }
  }

  /** The learning rate of step `step` (0-based); steps past the end keep the last value. */
  at(step: number): number {
    const s = Math.min(Math.max(step, 0), this.totalSteps - 1);
    const w = this.warmupSteps;
    if (s < w) return w === 1 ? 0 : (this.base * s) / (w - 1);
    const m = this.totalSteps - w;
    return this.min + 0.5 * (this.base - this.min) * (1 + Math.cos((Math.PI * (s - w)) / m));
  }
}
