/**
 * What a training run writes about itself: log lines (rank 0, when printing), metrics.jsonl, TensorBoard,
 * a live progress line on a terminal, and the log window (the steps since the last log line, which the
 * speed, step time, data wait and mean loss are measured over).
 */
import { TensorBoardWriter } from "../io/tensorboard.ts";

/** Figures of one step that both training loops report. */
export interface WindowFigures {
  /** Mean loss over the window's steps. */
  lossMean: number;
  videosPerSecond: number;
  stepMs: number;
  /** Share of the window's time spent waiting for data, in percent. */
  dataWaitPercent: number;
}

export class RunLog {
  /** TensorBoard, on rank 0 when the config asks for it. */
  readonly tb?: TensorBoardWriter;
  private constructor(
    readonly say: (line: string) => void,
    private readonly jsonl: Deno.FsFile | undefined,
    tensorboard: string | undefined,
    private readonly live: boolean,
    private readonly waitedMs: () => number,
  ) {
    this.tb = tensorboard ? new TensorBoardWriter(tensorboard) : undefined;
    this.restartClock();
  }

  private start = 0;
  private waited = 0;
  private steps = 0;
  private lossSum = 0;

  /**
   * Opens the sinks of run folder `out`: rank 0 (`lead`) writes metrics.jsonl and, with `tensorboard`,
   * TensorBoard; `print` shows log lines (and a live progress line on a terminal with `progress`).
   * `waitedMs` is the loader's total time spent waiting, for the data-wait share.
   */
  static async open(o: {
    out: string;
    lead: boolean;
    print: boolean;
    tensorboard: boolean;
    progress: boolean;
    waitedMs: () => number;
  }): Promise<RunLog> {
    const jsonl = o.lead
      ? await Deno.open(`${o.out}/metrics.jsonl`, { write: true, create: true, append: true })
      : undefined;
    const say = (m: string) => {
      if (o.print && o.lead) console.log(m);
    };
    const tb = o.lead && o.tensorboard ? `${o.out}/tensorboard` : undefined;
    return new RunLog(
      say,
      jsonl,
      tb,
      o.progress && o.print && o.lead && Deno.stdout.isTerminal(),
      o.waitedMs,
    );
  }

  /** Counts a finished step with its loss (mean over the ranks) and returns the window's figures. */
  add(loss: number, globalBatch: number): WindowFigures {
    this.steps++;
    this.lossSum += loss;
    const elapsed = performance.now() - this.start;
    return {
      lossMean: this.lossSum / this.steps,
      videosPerSecond: (this.steps * globalBatch * 1000) / elapsed,
      stepMs: elapsed / this.steps,
      dataWaitPercent: (100 * (this.waitedMs() - this.waited)) / elapsed,
    };
  }

  /** Starts a new window after a log line. */
  reset(): void {
    this.restartClock();
    this.steps = 0;
    this.lossSum = 0;
  }

  /** Leaves time spent off the step (validation) out of the window's speed. */
  restartClock(): void {
    this.start = performance.now();
    this.waited = this.waitedMs();
  }

  /** Appends one JSON record to metrics.jsonl (rank 0). */
  async record(r: unknown): Promise<void> {
    await this.jsonl?.write(new TextEncoder().encode(JSON.stringify(r) + "\n"));
  }

  /** Rewrites the live progress line (a terminal only). */
  async progress(step: number, totalSteps: number, f: WindowFigures): Promise<void> {
    if (!this.live) return;
    const eta = ((totalSteps - step) * f.stepMs) / 1000;
    await Deno.stdout.write(
      new TextEncoder().encode(
        `\rstep ${step}/${totalSteps}  loss ${f.lossMean.toFixed(4)}  ${
          f.videosPerSecond.toFixed(1)
        } videos/s  ETA ${formatSeconds(eta)}   `,
      ),
    );
  }

  /** A log line, clearing the live progress line first. */
  async line(m: string): Promise<void> {
    if (this.live) await Deno.stdout.write(new TextEncoder().encode("\r\x1b[K"));
    this.say(m);
  }

  close(): void {
    this.tb?.close();
    this.jsonl?.close();
  }
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0
    ? `${h}h${String(m).padStart(2, "0")}m`
    : `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}
