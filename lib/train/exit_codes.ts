/**
 * The exit statuses of the training tasks (documented in the README), and the errors that choose them:
 * a run refused before it starts (a configuration change on resume, a model too large, --resume with
 * nothing to resume) is 2 like a bad flag; a run stopped on a non-finite step is 3.
 */
import { NonFiniteStepError } from "./nonfinite.ts";

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_REFUSED = 2;
export const EXIT_NONFINITE = 3;
/** A second Ctrl-C: quit at once without saving (128 + SIGINT). */
export const EXIT_QUIT = 130;

/** The run cannot start as asked; the message says what to change. */
export class RefusedToStart extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RefusedToStart";
  }
}

/** The exit status for an error that ended a training task. */
export function exitStatusOf(e: unknown): number {
  if (e instanceof NonFiniteStepError) return EXIT_NONFINITE;
  if (e instanceof RefusedToStart) return EXIT_REFUSED;
  return EXIT_FAILED;
}
