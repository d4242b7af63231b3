/**
 * Drives bench/torch_step.py: one long-lived python3 process running the PyTorch twin of our
 * pretraining step, so that bench:step can interleave its timed turns with ours.
 */
import type { ModelConfig } from "../lib/model/config.ts";

export interface TorchStep {
  /** Runs k steps in PyTorch; milliseconds per step and the last loss. */
  run(k: number): Promise<{ msPerStep: number; loss: number }>;
  close(): Promise<void>;
}

const SCRIPT = decodeURIComponent(new URL("./torch_step.py", import.meta.url).pathname);

/**
 * The first python3 that imports `modules`: VSWIFT_PYTHON, then python3 on PATH, then Debian's
 * /usr/bin/python3 (python3-torch and python3-av install there, and a pyenv or venv python3 on PATH may
 * shadow it). Throws with what to install when none does.
 */
export async function findPython(modules: string[], option: string): Promise<string> {
  const candidates = [Deno.env.get("VSWIFT_PYTHON"), "python3", "/usr/bin/python3"].filter((c): c is string =>
    !!c
  );
  const tried: string[] = [];
  for (const py of candidates) {
    try {
      const out = await new Deno.Command(py, {
        args: ["-c", `import ${modules.join(", ")}`],
        stdout: "null",
        stderr: "piped",
      })
        .output();
      if (out.success) return py;
      tried.push(`${py}: ${new TextDecoder().decode(out.stderr).trim().split("\n").at(-1)}`);
    } catch (e) {
      tried.push(`${py}: ${(e as Error).message}`);
    }
  }
  const debian = modules.map((m) => `python3-${m}`).join(" ");
  throw new Error(
    `${option} needs a python3 that imports ${modules.join(" and ")} (${
      tried.join("; ")
    }); on Debian: apt-get install ${debian}, or set VSWIFT_PYTHON`,
  );
}

/**
 * Starts the PyTorch step for model `cfg` at `batch` on `threads` threads and waits until it has
 * warmed up. OMP_WAIT_POLICY=passive keeps its idle OpenMP threads from spinning through our turns.
 */
export async function startTorchStep(
  cfg: ModelConfig,
  opts: { batch: number; threads: number; maskRatio: number },
): Promise<TorchStep> {
  const python = await findPython(["torch"], "--compare torch");
  const spec = JSON.stringify({
    ...cfg,
    batch: opts.batch,
    threads: opts.threads,
    maskRatio: opts.maskRatio,
  });
  const child = new Deno.Command(python, {
    args: [SCRIPT, spec],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
    env: { OMP_NUM_THREADS: String(opts.threads), OMP_WAIT_POLICY: "passive" },
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const readLine = async (): Promise<string> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${SCRIPT} exited early (see its output above)`);
      buffered += value;
    }
    const i = buffered.indexOf("\n");
    const line = buffered.slice(0, i);
    buffered = buffered.slice(i + 1);
    return line;
  };
  const ready = await readLine();
  if (ready !== "ready") throw new Error(`${SCRIPT} said "${ready}" instead of ready`);
  return {
    async run(k) {
      await writer.write(new TextEncoder().encode(`run ${k}\n`));
      const [seconds, loss] = (await readLine()).split(" ").map(Number);
      return { msPerStep: (seconds * 1000) / k, loss };
    },
    async close() {
      await writer.write(new TextEncoder().encode("quit\n")).catch(() => {});
      await writer.close().catch(() => {});
      await reader.cancel().catch(() => {});
      await child.status;
    },
  };
}
