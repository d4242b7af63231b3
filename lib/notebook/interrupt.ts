/**
 * Interrupting a training cell. Jupyter interrupts a kernel whose spec has no `interrupt_mode` (Deno's
 * has none) by sending it SIGINT; Deno's kernel ends the whole process on SIGINT unless a listener is
 * registered. So while a run is iterated, a listener turns the interrupt into the loop's abort signal:
 * the step in progress finishes, a checkpoint is saved and the cell ends normally, with the kernel, the
 * opened library and every variable still there. Running the cell again resumes from that checkpoint.
 */

/**
 * Iterates the run that `start` makes with an abort signal raised by SIGINT (Jupyter's interrupt, or
 * Ctrl-C in a terminal); the listener lives exactly as long as the iteration. A second interrupt while
 * the step finishes only repeats the notice (unlike the tasks, it must not end the kernel).
 */
export async function* stopOnInterrupt<T, R>(
  start: (signal: AbortSignal) => AsyncGenerator<T, R>,
  say: (message: string) => void = console.log,
): AsyncGenerator<T, R> {
  const stop = new AbortController();
  const onInterrupt = () => {
    say(
      stop.signal.aborted
        ? "interrupt: still finishing the step in progress"
        : "interrupt: stopping after this step and saving a checkpoint (run the cell again to resume)",
    );
    stop.abort();
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    return yield* start(stop.signal);
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}
