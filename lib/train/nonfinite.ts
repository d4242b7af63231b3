/**
 * The guard against non-finite steps: the loss (mean over the ranks) and the global gradient norm
 * (after the ranks' gradients are averaged, so every rank sees the same figures) are checked before every
 * update. A bad step is never applied. By default the run stops, naming the step and the last good
 * checkpoint; with `optim.skip_nonfinite: N` up to N bad steps in a row are skipped, each reported.
 */

/** The run stopped on a non-finite loss or gradient; nothing of that step was applied. */
export class NonFiniteStepError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NonFiniteStepError";
  }
}

export class NonFiniteGuard {
  private inARow = 0;
  /** Steps skipped over the run (for the summary). */
  skipped = 0;

  /** `limit`: consecutive bad steps to skip before stopping (0: stop at the first). */
  constructor(private readonly limit: number) {}

  /**
   * Decides about a step (1-based `step`) from its mean loss and gradient norm: "apply" when both are
   * finite, "skip" while under the limit, else throws NonFiniteStepError naming the step and `lastGood`.
   */
  check(
    step: number,
    loss: number,
    gradNorm: number,
    lastGood: string | undefined,
    say: (m: string) => void,
  ): "apply" | "skip" {
    if (Number.isFinite(loss) && Number.isFinite(gradNorm)) {
      this.inARow = 0;
      return "apply";
    }
    const what = `step ${step} has loss ${loss} and gradient norm ${gradNorm}`;
    if (this.inARow < this.limit) {
      this.inARow++;
      this.skipped++;
      say(`${what}: skipped, the weights are unchanged (${this.inARow} of at most ${this.limit} in a row)`);
      return "skip";
    }
    const why = this.limit > 0 ? ` (${this.limit + 1} in a row; optim.skip_nonfinite is ${this.limit})` : "";
    throw new NonFiniteStepError(
      `${what}${why}; stopping before the update, so nothing of it was applied. The last good checkpoint is ${
        lastGood ?? "none (none was saved yet)"
      }. Lower optim.lr or set optim.clip_grad, then resume from it` +
        (this.limit === 0 ? `, or set optim.skip_nonfinite N to skip such steps` : ""),
    );
  }
}
