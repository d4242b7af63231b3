/**
 * `deno task bench:loader`: clips per second and CPU per clip of the VideoLoader (decode + sample +
 * crop/resize/normalise into a batch) with each decoder, in process (FFmpeg's libraries) and one ffmpeg
 * process per video, against ffmpeg decoding the same files alone (`ffmpeg -threads 1 -i f -f null -`,
 * one process per file, as many at once as the loader has workers), with repeated sampling 1 and 4.
 * The three alternate within each trial and medians of per-trial ratios are printed; `--decoders`
 * picks the loader's decoders (default inprocess,ffmpeg). `--compare pyav` adds a VideoMAE-style
 * loader on PyAV and torch's DataLoader with as many worker processes (bench/pyav_loader.py).
 *
 * Data: --list/--data-root, or by default the Kinetics sample clips of ../shared/data cut into 3 s chunks
 * at short side 256 (runs/bench_loader/, made once), or synthetic 256 px videos when those are absent.
 * Probing is measured first (every file once, in process and with ffprobe), then cached (a warm-up pass
 * probes every file), as in training after the first epoch.
 */
import { type DeviceChoice, openNative } from "../lib/ffi/native.ts";
import { Arena } from "../lib/memory.ts";
import { ffmpegPath, runTool } from "../lib/data/ffmpeg.ts";
import type { DecoderChoice } from "../lib/data/decode.ts";
import { readList } from "../lib/data/list_file.ts";
import { openDecoder } from "../lib/ffi/decode.ts";
import { findPython } from "./torch_step.ts";
import { VideoLoader } from "../lib/data/loader.ts";
import { prepareDataset } from "../lib/data/prepare.ts";
import { probeClip } from "../lib/data/probe.ts";
import { ensureSyntheticDataset } from "../lib/data/synthetic.ts";
import { parseFlags } from "../lib/task_cli.ts";

const USAGE =
  "usage: deno task bench:loader [--list LIST] [--data-root DIR] [--workers N] [--batch 8] [--frames 16] [--sampling-rate 4]\n" +
  "  [--input-size 224] [--short-side 256] [--videos 96] [--repeats 1,4] [--dtype f32] [--device host] [--trials 3]\n" +
  "  [--pixel-format yuv420p]";
const { values: a } = parseFlags("deno task bench:loader", USAGE, {
  options: {
    list: { type: "string" },
    "data-root": { type: "string" },
    workers: { type: "string" },
    batch: { type: "string", default: "8" },
    frames: { type: "string", default: "16" },
    "sampling-rate": { type: "string", default: "4" },
    "input-size": { type: "string", default: "224" },
    "short-side": { type: "string", default: "256" },
    videos: { type: "string", default: "96" },
    repeats: { type: "string", default: "1,4" },
    dtype: { type: "string", default: "f32" },
    device: { type: "string", default: "host" },
    trials: { type: "string", default: "3" },
    "pixel-format": { type: "string", default: "yuv420p" },
    decoders: { type: "string", default: "inprocess,ffmpeg" },
    compare: { type: "string" },
  },
});
const root = decodeURIComponent(new URL("../", import.meta.url).pathname);
const workers = Number(a.workers ?? navigator.hardwareConcurrency ?? 2);
const videosWanted = Number(a.videos);

async function defaultData(): Promise<{ list: string; dataRoot: string; what: string }> {
  const shared = `${root}../shared/data`;
  const out = `${root}runs/bench_loader`;
  try {
    await Deno.stat(`${shared}/k400_sample.csv`);
    const entries = await readList(`${shared}/k400_sample.csv`, `${shared}/k400_sample`);
    const r = await prepareDataset({ entries, out: `${out}/k400_chunks` });
    return {
      list: r.list,
      dataRoot: `${out}/k400_chunks`,
      what: `Kinetics sample cut into 3 s chunks, short side 256`,
    };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const ds = await ensureSyntheticDataset({
    dir: `${out}/synthetic`,
    videos: 32,
    classes: 8,
    size: 256,
    frames: 90,
    fps: 30,
  });
  return { list: ds.list, dataRoot: ds.dataRoot, what: "synthetic 256 x 256, 90 frames at 30 fps" };
}

const data = a.list ? { list: a.list, dataRoot: a["data-root"] ?? "", what: a.list } : await defaultData();
const entries = await readList(data.list, data.dataRoot || undefined);
const files = [...new Set(entries.map((e) => e.path))];
await openNative({ device: a.device as DeviceChoice });

/**
 * CPU milliseconds used so far by this process and by its finished child processes (Linux /proc). Wall
 * clock favours whichever side runs more threads when other work shares the machine; CPU time does not.
 */
async function cpuMs(): Promise<{ self: number; children: number }> {
  try {
    // Deno lets only --allow-all read /proc/self; a child process may read this process's entry.
    const r = await runTool("cat", [`/proc/${Deno.pid}/stat`]);
    const f = new TextDecoder().decode(r.stdout).split(") ")[1].split(" ");
    const tick = 10; // USER_HZ = 100 on Linux
    return { self: (Number(f[11]) + Number(f[12])) * tick, children: (Number(f[13]) + Number(f[14])) * tick };
  } catch {
    return { self: NaN, children: NaN };
  }
}

/** `each` on every job, `workers` at a time: jobs/s and CPU ms (this process and its children) per job. */
async function timedPool<T>(
  jobs: T[],
  each: (job: T) => Promise<void>,
): Promise<{ rate: number; cpu: number }> {
  let next = 0;
  const c0 = await cpuMs();
  const t0 = performance.now();
  const work = async () => {
    while (next < jobs.length) await each(jobs[next++]);
  };
  await Promise.all(Array.from({ length: workers }, work));
  const secs = (performance.now() - t0) / 1000;
  const c1 = await cpuMs();
  return { rate: jobs.length / secs, cpu: (c1.children - c0.children + c1.self - c0.self) / jobs.length };
}

/** ffmpeg alone: every file decoded once per round, `workers` processes at a time. */
function ffmpegAlone(rounds: number): Promise<{ rate: number; cpu: number }> {
  return timedPool(Array.from({ length: rounds }, () => files).flat(), async (f) => {
    const r = await runTool(ffmpegPath(), [
      "-v",
      "error",
      "-nostdin",
      "-threads",
      "1",
      "-i",
      f,
      "-f",
      "null",
      "-",
    ]);
    if (r.code !== 0) throw new Error(`ffmpeg failed on ${f}: ${r.stderr}`);
  });
}

function loaderOptions(repeats: number, seed: number, decoder: DecoderChoice = "auto") {
  return {
    decoder,
    list: data.list,
    dataRoot: data.dataRoot || undefined,
    mode: "pretrain" as const,
    batchSize: Number(a.batch) * repeats,
    frames: Number(a.frames),
    samplingRate: Number(a["sampling-rate"]),
    inputSize: Number(a["input-size"]),
    shortSide: Number(a["short-side"]),
    repeats,
    workers,
    seed,
    dtype: a.dtype as "f32" | "bf16",
    pixelFormat: a["pixel-format"] as "yuv420p" | "rgb24",
    probeCache: `${root}runs/bench_loader/probe_cache.json`,
  };
}

/** One pass that probes every file (saved to the probe cache) and grows the arena. */
async function warmUp(repeats: number): Promise<void> {
  const opts = loaderOptions(repeats, 999);
  const loader = new VideoLoader(opts);
  for (let i = 0; i < Math.ceil(files.length / (opts.batchSize / repeats)) + 1; i++) {
    await loader.next(arena);
    arena.reset();
  }
  await loader.close();
}

/**
 * Clips per second of a fresh loader in steady state: its first batches (while the prefetch queue fills)
 * are not timed, then about --videos videos are; close() then stops what it prefetched, so nothing runs
 * on into the next measurement. (Work prefetched before the timed span and work done in it for batches
 * after it balance out in steady state.)
 */
async function loaderRate(
  repeats: number,
  seed: number,
  decoder: DecoderChoice,
): Promise<{ rate: number; cpu: number; waited: number; kernels: number }> {
  const opts = loaderOptions(repeats, seed, decoder);
  const steps = Math.max(2, Math.round(videosWanted / (opts.batchSize / repeats)));
  const loader = new VideoLoader(opts);
  for (let i = 0; i < 3; i++) {
    await loader.next(arena);
    arena.reset();
  }
  const before = loader.stats();
  const c0 = await cpuMs();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    await loader.next(arena);
    arena.reset();
  }
  const secs = (performance.now() - t0) / 1000;
  const c1 = await cpuMs();
  const st = await loader.close();
  return {
    rate: (steps * opts.batchSize) / secs,
    cpu: (c1.children - c0.children + c1.self - c0.self) / (steps * opts.batchSize),
    waited: (st.waitedMs - before.waitedMs) / steps,
    kernels: (st.assembleMs - before.assembleMs) / steps,
  };
}

/** Every file probed once (no cache), `workers` at a time: files/s and CPU ms per file. */
function probeCost(choice: DecoderChoice): Promise<{ rate: number; cpu: number }> {
  return timedPool(files, async (f) => {
    await probeClip(f, undefined, choice);
  });
}

/** The PyAV + DataLoader twin's clips/s and CPU ms per clip for repeated sampling k. */
async function pyavRate(python: string, repeats: number): Promise<{ rate: number; cpu: number }> {
  const spec = {
    files,
    frames: Number(a.frames),
    stride: Number(a["sampling-rate"]),
    size: Number(a["input-size"]),
    repeats,
    batch: Number(a.batch),
    workers,
    videos: videosWanted,
  };
  const script = decodeURIComponent(new URL("./pyav_loader.py", import.meta.url).pathname);
  const out = await new Deno.Command(python, {
    args: [script, JSON.stringify(spec)],
    stdout: "piped",
    stderr: "inherit",
    env: { OMP_NUM_THREADS: "1" },
  }).output();
  if (!out.success) throw new Error(`${script} failed (exit ${out.code}; see its output above)`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

if (a.compare !== undefined && a.compare !== "pyav") {
  throw new RangeError(`--compare takes pyav, got ${a.compare}`);
}
const python = a.compare ? await findPython(["torch", "av"], "--compare pyav") : undefined;

const arena = new Arena(64 << 20);
const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
const decoders = a.decoders.split(",") as DecoderChoice[];
for (const d of decoders) {
  if (d !== "inprocess" && d !== "ffmpeg") {
    throw new RangeError(`--decoders takes inprocess and ffmpeg, got ${d}`);
  }
}
const { decoder: nativeDecoder, why } = await openDecoder();
if (decoders.includes("inprocess")) {
  if (!nativeDecoder) {
    console.log(`the in-process decoder is unavailable (${why}): measuring the ffmpeg processes only`);
    decoders.splice(decoders.indexOf("inprocess"), 1);
  }
}
console.log(`data: ${data.what} (${files.length} files); ${workers} decode workers; ${Deno.build.arch}`);
console.log(
  `clip: ${a.frames} frames, stride ${a["sampling-rate"]}, decoded at short side ${a["short-side"]}, ` +
    `multi-scale crop to ${a["input-size"]}, ${a.dtype} output, decoded to ${a["pixel-format"]}`,
);
{
  // What a fresh dataset costs before its first batch (the loader caches probes after that).
  const costs: string[] = [];
  for (const p of (nativeDecoder ? ["inprocess", "ffmpeg"] : ["ffmpeg"]) as DecoderChoice[]) {
    const c = await probeCost(p);
    const what = p === "inprocess" ? "in process" : "ffprobe";
    costs.push(`${what} ${c.rate.toFixed(0)} files/s, CPU per file ${c.cpu.toFixed(1)} ms`);
  }
  console.log(`probing every file once, ${workers} at a time: ${costs.join("; ")}`);
}
const rounds = Math.max(1, Math.round(videosWanted / files.length));
const trials = Number(a.trials);
type Run = { rate: number; cpu: number; waited: number; kernels: number };
// Other work on the machine moves every figure; the baseline and the loaders alternate within a trial,
// and medians of the per-trial ratios are reported.
for (const k of a.repeats.split(",").map(Number)) {
  await warmUp(k);
  const base: { rate: number; cpu: number }[] = [];
  const runs = new Map<DecoderChoice, Run[]>(decoders.map((d) => [d, []]));
  const pyav: { rate: number; cpu: number }[] = [];
  const decoderUse = nativeDecoder?.stats();
  for (let t = 0; t < trials; t++) {
    base.push(await ffmpegAlone(rounds));
    for (const d of decoders) runs.get(d)!.push(await loaderRate(k, t + 1, d));
    if (python) pyav.push(await pyavRate(python, k));
  }
  console.log(
    `repeated sampling ${k}: ffmpeg alone ${median(base.map((b) => b.rate)).toFixed(1)} files/s, ` +
      `CPU per file ${median(base.map((b) => b.cpu)).toFixed(0)} ms`,
  );
  for (const [d, rs] of runs) {
    const ratios = rs.map((r, i) => r.rate / base[i].rate);
    const cpuRatios = rs.map((r, i) => base[i].cpu / r.cpu);
    const m = rs[ratios.indexOf(median(ratios))];
    console.log(
      `  loader, ${d === "inprocess" ? "in process" : "ffmpeg processes"}: ${
        median(rs.map((r) => r.rate)).toFixed(1)
      } clips/s, ${median(ratios).toFixed(2)} x ffmpeg alone (trials ${
        ratios.map((r) => r.toFixed(2)).join(", ")
      }); CPU per clip ${median(rs.map((r) => r.cpu)).toFixed(0)} ms: clips per CPU-second ${
        median(cpuRatios).toFixed(2)
      } x ffmpeg alone (per batch: waited ${m.waited.toFixed(0)} ms, kernels ${m.kernels.toFixed(0)} ms)`,
    );
  }
  for (const [d, rs] of python ? runs : []) {
    const rate = median(rs.map((r, i) => r.rate / pyav[i].rate));
    const cpu = median(rs.map((r, i) => pyav[i].cpu / r.cpu));
    console.log(
      `  PyAV + DataLoader (${workers} workers): ${
        median(pyav.map((p) => p.rate)).toFixed(1)
      } clips/s, CPU ` +
        `per clip ${median(pyav.map((p) => p.cpu)).toFixed(0)} ms; the loader ${
          d === "inprocess" ? "in process" : "with ffmpeg processes"
        } against it: ${rate.toFixed(2)} x clips/s, ${cpu.toFixed(2)} x clips per CPU-second`,
    );
  }
  const inproc = runs.get("inprocess");
  const proc = runs.get("ffmpeg");
  if (inproc && nativeDecoder && decoderUse) {
    // A worker reuses its decoder when the next clip has the same codec parameters (cuda/decode/decode.c).
    const now = nativeDecoder.stats();
    const opened = now.opened - decoderUse.opened;
    const reused = now.reused - decoderUse.reused;
    console.log(
      `  in process: ${reused} of ${
        opened + reused
      } decodes reused their worker's decoder, ${opened} opened one`,
    );
  }
  if (inproc && proc) {
    const cpu = median(inproc.map((r, i) => proc[i].cpu / r.cpu));
    const rate = median(inproc.map((r, i) => r.rate / proc[i].rate));
    console.log(
      `  in process against ffmpeg processes: ${rate.toFixed(2)} x clips/s, ${
        cpu.toFixed(2)
      } x clips per CPU-second`,
    );
  }
}
arena.dispose();
