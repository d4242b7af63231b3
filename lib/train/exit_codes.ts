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

/**
 * A stop asked for before the first step (a signal during the rendezvous or the set-up): nothing was
 * trained, so there is nothing to save; the task ends with status 0 like any other stop.
 */
export class StoppedBeforeStart extends Error {
  constructor(during: string) {
    super(`stopped by a signal during ${during}, before the first step: nothing to save`);
    this.name = "StoppedBeforeStart";
  }
}

/** `work`, unless `signal` aborts first: then StoppedBeforeStart (the work is left to the exit). */
export function unlessStopped<T>(
  work: Promise<T>,
  signal: AbortSignal | undefined,
  during: string,
): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new StoppedBeforeStart(during));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** The exit status for an error that ended a training task. */
export function exitStatusOf(e: unknown): number {
  if (e instanceof StoppedBeforeStart) return EXIT_OK;
  if (e instanceof NonFiniteStepError) return EXIT_NONFINITE;
  if (e instanceof RefusedToStart) return EXIT_REFUSED;
  return EXIT_FAILED;
}
