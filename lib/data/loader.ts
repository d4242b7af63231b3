/**
 * VideoLoader: list -> shard -> temporal sampling -> decode (in process or ffmpeg processes) -> bounded
 * prefetch queue -> batch assembly on the device (crop / resize / flip / normalise kernel, so only uint8
 * frames cross the bus).
 *
 * Every random draw comes from a generator keyed by (seed, data epoch, sample position, attempt, clip),
 * so the stream depends only on the seed and the rank: not on timing or the number of workers, and
 * resuming at step s reproduces the same batches.
 *
 * ```ts
 * const loader = new VideoLoader({ list: "train.csv", dataRoot: "videos", mode: "pretrain", batchSize: 8 });
 * const g = new Graph(arena);
 * const { video, labels, step } = (await loader.next(g))!; // video: (B, 3, T, H, W) on the open device
 * ```
 */
import type { Graph } from "../autograd.ts";
import { native } from "../ffi/native.ts";
import { copyToDevice, hostPointer } from "../ffi/pointers.ts";
import { allocPersistent, type Arena, freePersistent } from "../memory.ts";
import { concatMasks, type MaskRule, type TokenMask, tubeMask } from "../model/masking.ts";
import { type Box, cropResizeNormalize, cropResizeNormalizeAsync } from "../ops/augment.ts";
import { type PixelBox, randomErase } from "../ops/mix.ts";
import type { Rng } from "../rng.ts";
import { Tensor } from "../tensor.ts";
import {
  BufferPool,
  countFrames,
  DecodeError,
  frameBytes,
  type Frames,
  type PixelFormat,
  scaledSize,
  ShortDecodeError,
} from "./ffmpeg.ts";
import { decodeClip, type DecoderChoice, decoderChoice } from "./decode.ts";
import { ProbeCache, prober } from "./probe.ts";
import { type ListEntry, parseList } from "./list_file.ts";
import {
  epochPermutation,
  evalViews,
  rankPart,
  type ShardPlan,
  shardPlan,
  stepStart,
  stepVideos,
  type View,
} from "./shard.ts";
import { centerCrop, multiScaleCrop, randomResizedCrop, testCrop } from "./spatial.ts";
import { mixSeed, rngFor, STREAM } from "./seed.ts";
import {
  applyRandAugment,
  type AugmentStep,
  drawRandAugment,
  parseRandAugment,
  type RandAugmentConfig,
} from "./rand_augment.ts";
import { randomErasingBox } from "./random_erasing.ts";
import {
  pretrainIndices,
  type PretrainRule,
  segmentTestIndices,
  segmentTrainIndices,
  segmentValIndices,
  unionFrames,
} from "./temporal.ts";

export type LoaderMode = "pretrain" | "train" | "val" | "test";

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

export interface LoaderOptions {
  /** A list file (any of the formats of list_file.ts), or `entries`. */
  list?: string;
  entries?: ListEntry[];
  /** Joined with relative paths of `list`. */
  dataRoot?: string;
  mode: LoaderMode;
  /** Clips per batch on this rank (a multiple of `repeats`). */
  batchSize: number;
  /** Frames per clip (16). */
  frames?: number;
  /** Pretraining stride between frames (4). */
  samplingRate?: number;
  /** Pretraining short-video rule: V-SWIFT's (default) or VideoMAE v1's. */
  temporalRule?: PretrainRule;
  /** Output height and width (224). */
  inputSize?: number;
  /** Short side the frames are decoded at (ffmpeg scale): 256 for pretrain/train, inputSize otherwise. */
  shortSide?: number;
  /** Spatial augmentation of training: "multiscale" (pretrain default) or "rrc" (train default). */
  crop?: "multiscale" | "rrc";
  /** Area fraction range of the random resized crop ([0.08, 1], torchvision's and V-SWIFT's). */
  cropScale?: [number, number];
  /** Repeated sampling: clips drawn from each decoded video (1). */
  repeats?: number;
  /** Random horizontal flip in pretrain/train (off: V-SWIFT's default, right for SSv2). */
  flip?: boolean;
  /**
   * Train mode: timm's RandAugment config (V-SWIFT fine-tuning: "rand-m7-n4-mstd0.5-inc1"), one draw
   * per clip applied to its uint8 frames at the decoded resolution, before the crop. Off by default.
   */
  randAugment?: string;
  /**
   * Train mode: probability of random erasing a clip (V-SWIFT fine-tuning: 0.25): one box, the same in
   * every frame, filled with fresh N(0, 1) noise per channel and frame after normalisation. 0 by default.
   */
  randomErasing?: number;
  /** Antialiased resize when shrinking (true). */
  antialias?: boolean;
  /**
   * What ffmpeg pipes: "yuv420p" (the default: half the bytes of RGB and no colour conversion in ffmpeg;
   * the crop kernel converts with BT.601 after resampling) or "rgb24" (ffmpeg converts).
   */
  pixelFormat?: PixelFormat;
  /**
   * "auto" (in process through FFmpeg's libraries when available, else one ffmpeg process per video),
   * "inprocess" or "ffmpeg"; default VSWIFT_DECODER, else auto. Both give the same pixels.
   */
  decoder?: DecoderChoice;
  mean?: readonly number[];
  std?: readonly number[];
  seed?: number;
  rank?: number;
  worldSize?: number;
  /** Concurrent ffmpeg / ffprobe processes (the number of cores). */
  workers?: number;
  /** Batches decoded ahead of the one being consumed (2). */
  prefetch?: number;
  /** The compute dtype of the video tensor (f32). */
  dtype?: "f32" | "bf16";
  /** Test: temporal chunks (2) and spatial crops (3) per video. */
  testChunks?: number;
  testCrops?: number;
  /**
   * Limited-storage mode (V-SWIFT's --gpus_not_equal_num_shards): each node reads its own local list,
   * shuffled among its local ranks; an epoch is `samplesPerEpoch` videos over all ranks.
   */
  samplesPerEpoch?: number;
  localRank?: number;
  localWorldSize?: number;
  /** Also draw a tube mask per clip (returned as `mask`). */
  mask?: { ratio: number; tubelet?: number; patch?: number; rule?: MaskRule };
  /** V-SWIFT's --use_synthetic: one fixed random batch forever, no decoding (throughput tests). */
  synthetic?: boolean;
  /** A position() of an earlier loader with the same options: continue its stream. */
  resume?: LoaderPosition;
  /** A JSON file caching probe results across runs. */
  probeCache?: string;
  /** Replacement attempts for a video that fails to decode before the loader gives up (10). */
  maxReplacements?: number;
  /** Where reports of skipped videos go (console.error). */
  log?: (message: string) => void;
}

export interface LoaderPosition {
  step: number;
  epoch: number;
  mode: LoaderMode;
  seed: number;
  rank: number;
  worldSize: number;
  batchSize: number;
  repeats: number;
}

/** Identity of one clip of a batch. */
export interface SampleKey {
  /** Index into the list. */
  video: number;
  /** Which of the `repeats` clips of the video (pretrain / train). */
  clip: number;
  /** Test chunk and spatial split (0 otherwise). */
  chunk: number;
  split: number;
  /** A duplicate that evens out the ranks, or a stand-in for a video that failed: ignore in merges. */
  pad: boolean;
}

export interface Batch {
  /** (B, 3, T, H, W), normalised, in the compute dtype, in the step's arena. */
  video: Tensor;
  labels: Int32Array;
  keys: SampleKey[];
  epoch: number;
  /** Global step of this rank's stream (0-based). */
  step: number;
  /** Present when the `mask` option is set: one tube mask per clip. */
  mask?: TokenMask;
}

export interface SkipRecord {
  path: string;
  origin: string;
  reason: string;
  epoch: number;
  step: number;
}

export interface LoaderStats {
  steps: number;
  decodedVideos: number;
  decodedClips: number;
  skipped: SkipRecord[];
  /** Distinct files among `skipped` (a bad file is asked for again every epoch). */
  failedFiles: number;
  /** Milliseconds next() spent waiting for decoding. */
  waitedMs: number;
  /** Milliseconds next() spent in the crop/resize kernels (and uploads). */
  assembleMs: number;
}

interface ClipPlan {
  key: SampleKey;
  label: number;
  positions: Int32Array;
  box: Box;
  flip: boolean;
  /** RandAugment operations for this clip's frames (train mode). */
  augment?: AugmentStep[];
  /** A box of the output clip to fill with noise seeded by `seed` (train mode). */
  erase?: { box: PixelBox; seed: number };
}

interface JobResult {
  frames: Frames;
  clips: ClipPlan[];
  /** Videos that failed before this one stood in for them (counted when the batch is consumed). */
  skipped: SkipRecord[];
}

/** One video to decode and the clips to cut from it. */
interface Job {
  /** Index into the list of the video first asked for. */
  video: number;
  /** Identity for the random streams. */
  dataEpoch: number;
  position: number;
  step: number;
  /** Train modes: `repeats` clips; eval: the views of this video in this batch. */
  views?: View[];
}

class Semaphore {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await f();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

function positiveInt(name: string, v: number): number {
  if (!(Number.isInteger(v) && v >= 1)) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

export class VideoLoader {
  readonly mode: LoaderMode;
  readonly batchSize: number;
  readonly frames: number;
  readonly samplingRate: number;
  readonly inputSize: number;
  readonly shortSide: number;
  readonly repeats: number;
  readonly seed: number;
  readonly rank: number;
  readonly worldSize: number;
  /** Steps in one epoch on this rank (the same on every rank). */
  readonly stepsPerEpoch: number;
  readonly entries: ListEntry[];

  private readonly opts: LoaderOptions;
  private readonly randAugment?: RandAugmentConfig;
  private readonly mean: number[];
  private readonly std: number[];
  private readonly plan?: ShardPlan;
  private readonly views?: View[];
  private readonly sem: Semaphore;
  private readonly prefetch: number;
  private readonly pool = new BufferPool();
  private readonly probes: ProbeCache;
  private readonly abort = new AbortController();
  private readonly inflight = new Map<number, Promise<JobResult[]>>();
  private readonly perms = new Map<number, Int32Array>();
  private readonly failed = new Map<string, string>();
  private readonly log: (m: string) => void;
  private step: number;
  private closed = false;
  private staging?: Tensor;
  private syntheticFrames?: Uint8Array;
  private readonly counters: Omit<LoaderStats, "failedFiles"> = {
    steps: 0,
    decodedVideos: 0,
    decodedClips: 0,
    skipped: [],
    waitedMs: 0,
    assembleMs: 0,
  };

  constructor(opts: LoaderOptions) {
    this.opts = opts;
    this.mode = opts.mode;
    if (!["pretrain", "train", "val", "test"].includes(this.mode)) {
      throw new RangeError(`Unknown loader mode "${this.mode}"; use pretrain, train, val or test`);
    }
    this.batchSize = positiveInt("batchSize", opts.batchSize);
    this.frames = positiveInt("frames", opts.frames ?? 16);
    this.samplingRate = positiveInt("samplingRate", opts.samplingRate ?? 4);
    this.inputSize = positiveInt("inputSize", opts.inputSize ?? 224);
    const training = this.mode === "pretrain" || this.mode === "train";
    this.shortSide = positiveInt("shortSide", opts.shortSide ?? (training ? 256 : this.inputSize));
    this.repeats = training ? positiveInt("repeats", opts.repeats ?? 1) : 1;
    if (this.batchSize % this.repeats !== 0) {
      throw new RangeError(`batchSize ${this.batchSize} must be a multiple of repeats ${this.repeats}`);
    }
    this.seed = opts.seed ?? 0;
    this.worldSize = positiveInt("worldSize", opts.worldSize ?? 1);
    this.rank = opts.rank ?? 0;
    if (!(Number.isInteger(this.rank) && this.rank >= 0 && this.rank < this.worldSize)) {
      throw new RangeError(`rank ${this.rank} is not in [0, ${this.worldSize})`);
    }
    if (opts.randAugment && this.mode === "train") this.randAugment = parseRandAugment(opts.randAugment);
    const reprob = opts.randomErasing ?? 0;
    if (!(reprob >= 0 && reprob <= 1)) throw new RangeError(`randomErasing must be in [0, 1], got ${reprob}`);
    const cs = opts.cropScale;
    if (cs && !(cs.length === 2 && cs[0] > 0 && cs[0] <= cs[1] && cs[1] <= 1)) {
      throw new RangeError(`cropScale must be [min, max] with 0 < min <= max <= 1, got [${cs.join(", ")}]`);
    }
    this.mean = [...(opts.mean ?? IMAGENET_MEAN)];
    this.std = [...(opts.std ?? IMAGENET_STD)];
    this.sem = new Semaphore(positiveInt("workers", opts.workers ?? navigator.hardwareConcurrency ?? 2));
    this.prefetch = Math.max(0, Math.floor(opts.prefetch ?? 2));
    this.probes = new ProbeCache(opts.probeCache, prober(opts.decoder));
    this.log = opts.log ?? ((m) => console.error(m));

    if (opts.synthetic) {
      this.entries = [];
      this.stepsPerEpoch = Math.max(
        1,
        Math.floor((opts.samplesPerEpoch ?? 1_000_000) / this.worldSize / this.batchSize),
      );
    } else {
      if (opts.entries) this.entries = opts.entries;
      else if (opts.list) {
        let text: string;
        try {
          text = Deno.readTextFileSync(opts.list);
        } catch (e) {
          throw new Error(`Cannot read the list file ${opts.list}: ${(e as Error).message}`);
        }
        this.entries = parseList(text, { file: opts.list, dataRoot: opts.dataRoot });
      } else throw new RangeError("The loader needs `list` (a list file), `entries`, or `synthetic: true`");
      if (this.entries.length === 0) {
        throw new RangeError(`The list ${opts.list ?? "(entries)"} has no videos`);
      }
      if (training) {
        const perStep = this.batchSize / this.repeats;
        if (opts.samplesPerEpoch !== undefined) {
          const lws = positiveInt("localWorldSize", opts.localWorldSize ?? 1);
          this.plan = shardPlan(this.entries.length, lws, opts.localRank ?? 0, perStep);
          this.stepsPerEpoch = Math.floor(
            positiveInt("samplesPerEpoch", opts.samplesPerEpoch) / this.worldSize / perStep,
          );
          if (this.stepsPerEpoch < 1) {
            throw new RangeError(
              `samplesPerEpoch ${opts.samplesPerEpoch} gives no full step of ${perStep} videos on ${this.worldSize} ranks`,
            );
          }
        } else {
          this.plan = shardPlan(this.entries.length, this.worldSize, this.rank, perStep);
          this.stepsPerEpoch = this.plan.steps;
        }
      } else {
        const [s, k] = this.mode === "test"
          ? [positiveInt("testChunks", opts.testChunks ?? 2), positiveInt("testCrops", opts.testCrops ?? 3)]
          : [1, 1];
        this.views = evalViews(this.entries.length, s, k, this.worldSize, this.rank, this.batchSize);
        this.stepsPerEpoch = this.views.length / this.batchSize;
      }
    }
    this.step = 0;
    if (opts.resume) {
      const r = opts.resume;
      const mismatch = (["mode", "seed", "rank", "worldSize", "batchSize", "repeats"] as const).filter((k) =>
        r[k] !== (this as unknown as Record<string, unknown>)[k]
      );
      if (mismatch.length > 0) {
        throw new RangeError(
          `Cannot resume: the saved position has ${
            mismatch.map((k) => `${k} ${r[k]}`).join(", ")
          } but this loader ` +
            `has ${
              mismatch.map((k) => `${k} ${(this as unknown as Record<string, unknown>)[k]}`).join(", ")
            }`,
        );
      }
      this.step = positiveInt("resume.step", r.step + 1) - 1;
    }
    if (!opts.synthetic) this.schedule();
  }

  /** Where the stream stands: pass it as `resume` to continue with the next batch. */
  position(): LoaderPosition {
    return {
      step: this.step,
      epoch: Math.floor(this.step / this.stepsPerEpoch),
      mode: this.mode,
      seed: this.seed,
      rank: this.rank,
      worldSize: this.worldSize,
      batchSize: this.batchSize,
      repeats: this.repeats,
    };
  }

  stats(): LoaderStats {
    const failedFiles = new Set(this.counters.skipped.map((r) => r.path)).size;
    return { ...this.counters, skipped: [...this.counters.skipped], failedFiles };
  }

  /**
   * The next batch, allocated in `target` (an Arena or a Graph's arena). Training modes never end;
   * val/test return null after their one pass.
   */
  async next(target: Arena | Graph): Promise<Batch | null> {
    if (this.closed) throw new Error("The loader is closed");
    const arena: Arena = "arena" in target ? target.arena : target;
    const step = this.step;
    if (!this.training() && step >= this.stepsPerEpoch) return null;
    const [b, t, s] = [this.batchSize, this.frames, this.inputSize];
    const video = arena.alloc([b, 3, t, s, s], this.opts.dtype ?? "f32");
    const labels = new Int32Array(b);
    let keys: SampleKey[];
    if (this.opts.synthetic) {
      keys = this.assembleSynthetic(video);
    } else {
      this.schedule();
      const started = performance.now();
      const results = await this.inflight.get(step)!;
      this.inflight.delete(step);
      this.counters.waitedMs += performance.now() - started;
      for (const r of results) this.counters.skipped.push(...r.skipped);
      this.step++;
      this.schedule();
      const t0 = performance.now();
      keys = await this.assemble(video, labels, results);
      this.counters.assembleMs += performance.now() - t0;
    }
    if (this.opts.synthetic) this.step++;
    this.counters.steps++;
    const batch: Batch = { video, labels, keys, epoch: Math.floor(step / this.stepsPerEpoch), step };
    const m = this.opts.mask;
    if (m) {
      const tub = m.tubelet ?? 2;
      const patch = m.patch ?? 16;
      // One mask per clip, keyed by what the clip is (not by rank or batch slot), so that the stream
      // does not depend on how the batch is split over ranks.
      batch.mask = concatMasks(
        keys.map((k, i) =>
          tubeMask(rngFor(STREAM.mask, this.seed, batch.epoch, k.video, k.clip, k.video < 0 ? i : 0), {
            b: 1,
            slices: t / tub,
            perSlice: (s / patch) ** 2,
            ratio: m.ratio,
            rule: m.rule,
          })
        ),
      );
    }
    return batch;
  }

  /** Stops the decoders, frees the staging memory, saves the probe cache and reports skipped videos. */
  async close(): Promise<LoaderStats> {
    if (this.closed) return this.stats();
    this.closed = true;
    this.abort.abort();
    await Promise.allSettled([...this.inflight.values()]);
    this.inflight.clear();
    if (this.staging) freePersistent(this.staging);
    this.staging = undefined;
    try {
      this.probes.save();
    } catch (e) {
      this.log(`Could not save the probe cache ${this.opts.probeCache}: ${(e as Error).message}`);
    }
    const stats = this.stats();
    const n = stats.failedFiles;
    if (n > 0) {
      const times = stats.skipped.length;
      this.log(
        `${n} video file${n === 1 ? "" : "s"} failed to decode; a stand-in replaced ${
          n === 1 ? "it" : "them"
        } ${times} time${times === 1 ? "" : "s"}`,
      );
    }
    return stats;
  }

  private training(): boolean {
    return this.mode === "pretrain" || this.mode === "train";
  }

  /** Starts the jobs of the steps from the current one to `prefetch` ahead. */
  private schedule(): void {
    if (this.closed) return;
    for (let s = this.step; s <= this.step + this.prefetch; s++) {
      if (!this.training() && s >= this.stepsPerEpoch) break;
      if (this.inflight.has(s)) continue;
      const p = Promise.all(this.jobsOf(s).map((j) => this.runJob(j)));
      p.catch(() => {}); // reported by next()
      this.inflight.set(s, p);
    }
  }

  /** Data epoch and step inside it for a global step. */
  private dataStep(step: number): [number, number] {
    const per = this.plan!.steps;
    return [Math.floor(step / per), step % per];
  }

  private permutation(dataEpoch: number): Int32Array {
    let p = this.perms.get(dataEpoch);
    if (!p) {
      const node = this.opts.samplesPerEpoch !== undefined
        ? Math.floor(this.rank / (this.opts.localWorldSize ?? 1))
        : 0;
      p = epochPermutation(this.entries.length, this.seed, dataEpoch, node);
      this.perms.set(dataEpoch, p);
      for (const k of this.perms.keys()) if (k < dataEpoch - 1) this.perms.delete(k);
    }
    return p;
  }

  private jobsOf(step: number): Job[] {
    if (this.training()) {
      const [de, ds] = this.dataStep(step);
      const vids = stepVideos(this.plan!, this.permutation(de), ds);
      const base = stepStart(this.plan!, ds);
      return [...vids].map((v, i) => ({ video: v, dataEpoch: de, position: base + i, step }));
    }
    const views = this.views!.slice(step * this.batchSize, (step + 1) * this.batchSize);
    const jobs: Job[] = [];
    for (const v of views) {
      const last = jobs[jobs.length - 1];
      if (last && last.video === v.video) last.views!.push(v);
      else jobs.push({ video: v.video, dataEpoch: 0, position: v.video, step, views: [v] });
    }
    return jobs;
  }

  /** Decodes one job, replacing a video that fails by another one of the same shard. */
  private async runJob(job: Job): Promise<JobResult> {
    const max = this.opts.maxReplacements ?? 10;
    const reasons: string[] = [];
    const skipped: SkipRecord[] = [];
    let video = job.video;
    for (let attempt = 0; attempt <= max; attempt++) {
      const entry = this.entries[video];
      const known = this.failed.get(entry.path);
      try {
        if (known) throw new DecodeError(entry.path, known);
        const r = await this.decodeJob(job, video, attempt, attempt > 0);
        r.skipped = skipped;
        return r;
      } catch (e) {
        if (!(e instanceof DecodeError) || this.closed) throw e;
        const reason = e.detail;
        this.failed.set(entry.path, reason);
        reasons.push(`${entry.path} (${entry.origin}): ${reason}`);
        const epoch = Math.floor(job.step / this.stepsPerEpoch);
        skipped.push({ path: entry.path, origin: entry.origin, reason, epoch, step: job.step });
        // Once per file: it is asked for again every epoch.
        if (!known) this.log(`Skipping ${entry.path} (${entry.origin}), it failed to decode: ${reason}`);
        video = this.replacement(job, attempt);
      }
    }
    throw new Error(
      `${max + 1} videos in a row failed to decode; check the data and ffmpeg:\n  ${reasons.join("\n  ")}`,
    );
  }

  /** A stand-in for a failed video: a random video of this rank's part (train), the next one (eval). */
  private replacement(job: Job, attempt: number): number {
    if (this.training()) {
      const part = rankPart(this.plan!, this.permutation(job.dataEpoch));
      const r = rngFor(STREAM.replace, this.seed, job.dataEpoch, job.position, attempt);
      return part[r.int(part.length)];
    }
    return (job.video + 1 + attempt) % this.entries.length;
  }

  private async decodeJob(job: Job, video: number, attempt: number, standIn: boolean): Promise<JobResult> {
    const entry = this.entries[video];
    const signal = this.abort.signal;
    const info = this.probes.peek(entry.path) ??
      await this.sem.run(() => this.probes.get(entry.path, signal));
    const lo = Math.min(entry.start ?? 0, info.frames - 1);
    const hi = Math.min(entry.end ?? info.frames - 1, info.frames - 1);
    const f = hi - lo + 1;
    const n = this.frames;
    // Temporal draws first (they decide what to decode), then the spatial ones.
    const rngs: Rng[] = [];
    const indices: number[][] = [];
    const keys: SampleKey[] = [];
    if (job.views) {
      for (const v of job.views) {
        rngs.push(rngFor(STREAM.sample, this.seed, 0, v.video, v.chunk, v.split));
        indices.push(
          this.mode === "test"
            ? segmentTestIndices(f, n, v.chunk, this.opts.testChunks ?? 2)
            : segmentValIndices(f, n),
        );
        keys.push({ video: v.video, clip: 0, chunk: v.chunk, split: v.split, pad: v.pad || standIn });
      }
    } else {
      for (let c = 0; c < this.repeats; c++) {
        const r = rngFor(STREAM.sample, this.seed, job.dataEpoch, job.position, attempt, c);
        rngs.push(r);
        indices.push(
          this.mode === "pretrain"
            ? pretrainIndices(f, n, this.samplingRate, r, this.opts.temporalRule ?? "vswift")
            : segmentTrainIndices(f, n, r),
        );
        keys.push({ video, clip: c, chunk: 0, split: 0, pad: false });
      }
    }
    const u = unionFrames(indices.map((ix) => ix.map((i) => i + lo)));
    const { w, h } = scaledSize(info.width, info.height, this.shortSide);
    const clips: ClipPlan[] = keys.map((key, i) => {
      const r = rngs[i];
      let box: Box;
      let flip = false;
      if (this.mode === "test") box = testCrop(w, h, key.split, this.opts.testCrops ?? 3);
      else if (this.mode === "val") box = centerCrop(w, h, this.inputSize);
      else {
        const crop = this.opts.crop ?? (this.mode === "pretrain" ? "multiscale" : "rrc");
        box = crop === "multiscale"
          ? multiScaleCrop(w, h, this.inputSize, r)
          : randomResizedCrop(w, h, r, this.opts.cropScale);
        if (this.opts.flip) flip = r.float() < 0.5;
      }
      const plan: ClipPlan = { key, label: entry.label, positions: u.positions[i], box, flip };
      // Fine-tuning augmentation draws come after the crop's, so turning them on changes no crop.
      if (this.mode === "train") {
        if (this.randAugment) plan.augment = drawRandAugment(r, this.randAugment);
        const erase = randomErasingBox(r, this.inputSize, this.inputSize, {
          prob: this.opts.randomErasing ?? 0,
        });
        if (erase) {
          plan.erase = {
            box: erase,
            seed: mixSeed(STREAM.sample, this.seed, job.dataEpoch, job.position, attempt, i),
          };
        }
      }
      return plan;
    });
    // Only the pixels some clip's box covers are converted and piped.
    const x0 = Math.min(...clips.map((c) => Math.floor(c.box.x)));
    const y0 = Math.min(...clips.map((c) => Math.floor(c.box.y)));
    const x1 = Math.max(...clips.map((c) => Math.ceil(c.box.x + c.box.w)));
    const y1 = Math.max(...clips.map((c) => Math.ceil(c.box.y + c.box.h)));
    // RandAugment's rotations, shears and translations move pixels from outside the crop into it.
    const region = this.randAugment ? { x: 0, y: 0, w, h } : { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
    let frames: Frames;
    try {
      frames = await this.sem.run(() =>
        decodeClip({
          path: entry.path,
          info,
          indices: u.frames,
          shortSide: this.shortSide,
          region,
          // RandAugment works on RGB pixels as PIL does.
          pixelFormat: this.randAugment ? "rgb24" : this.opts.pixelFormat ?? "yuv420p",
          pool: this.pool,
          signal,
        }, this.opts.decoder ?? decoderChoice())
      );
    } catch (e) {
      if (!(e instanceof ShortDecodeError && e.short) || signal.aborted) throw e;
      // The container's frame count was too high: count the frames once and sample again.
      const exact = await this.sem.run(() => countFrames(entry.path, signal));
      if (exact >= info.frames) throw e;
      this.probes.set(entry.path, { ...info, frames: exact });
      return this.decodeJob(job, video, attempt, standIn);
    }
    this.counters.decodedVideos++;
    if (this.randAugment) frames = this.augmentClips(frames, clips);
    for (const c of clips) c.box = { ...c.box, x: c.box.x - frames.x, y: c.box.y - frames.y };
    return { frames, clips, skipped: [] };
  }

  /**
   * Gives every clip its own copy of its frames with its RandAugment draw applied (clips of one video
   * share decoded frames but not their augmentation); returns the frames of all clips back to back.
   */
  private augmentClips(frames: Frames, clips: ClipPlan[]): Frames {
    const { h, w } = frames;
    const size = h * w * 3;
    const total = clips.reduce((n, c) => n + c.positions.length, 0);
    const data = this.pool.acquire(total * size);
    let at = 0;
    for (const c of clips) {
      const first = at;
      const positions = new Int32Array(c.positions.length);
      c.positions.forEach((p, j) => {
        data.set(frames.data.subarray(p * size, (p + 1) * size), at * size);
        positions[j] = at++;
      });
      applyRandAugment(data.subarray(first * size, at * size), at - first, h, w, c.augment ?? []);
      c.positions = positions;
    }
    this.pool.release(frames.data);
    return { ...frames, data, n: total };
  }

  /**
   * Runs the crop/resize/normalise kernel for every clip into the batch tensor. With the host build the
   * kernels run off the main thread, so that the decoders' pipes are still read meanwhile.
   */
  private async assemble(video: Tensor, labels: Int32Array, results: JobResult[]): Promise<SampleKey[]> {
    const [t, s] = [this.frames, this.inputSize];
    const per = 3 * t * s * s;
    const keys: SampleKey[] = [];
    const host = native().backend === "host";
    let i = 0;
    for (const r of results) {
      const { data, n, h, w, format } = r.frames;
      const shape = format === "yuv420p" ? [n, (h * 3) / 2, w] : [n, h, w, 3];
      let src: Tensor;
      if (host) src = new Tensor(shape, "u8", hostPointer(data));
      else {
        const bytes = frameBytes(format, n, w, h);
        if (!this.staging || this.staging.numel < bytes) {
          if (this.staging) freePersistent(this.staging);
          this.staging = allocPersistent([Math.ceil(bytes * 1.25)], "u8");
        }
        copyToDevice(this.staging.ptr, data.subarray(0, bytes));
        src = new Tensor(shape, "u8", this.staging.ptr);
      }
      for (const c of r.clips) {
        if (i >= this.batchSize) break;
        await cropResizeNormalizeAsync(video.sub(i * per, [3, t, s, s]), src, {
          frameIdx: c.positions,
          box: c.box,
          flip: c.flip,
          antialias: this.opts.antialias ?? true,
          mean: this.mean,
          std: this.std,
          pixFormat: format,
        });
        if (c.erase) randomErase(video.sub(i * per, [3, t, s, s]), c.erase.box, c.erase.seed);
        labels[i] = c.label;
        keys.push(c.key);
        i++;
        this.counters.decodedClips++;
      }
      this.pool.release(data);
    }
    if (i !== this.batchSize) {
      throw new Error(`Internal error: assembled ${i} clips for a batch of ${this.batchSize}`);
    }
    return keys;
  }

  /** V-SWIFT's synthetic mode: the same random frames every step, through the same kernel. */
  private assembleSynthetic(video: Tensor): SampleKey[] {
    const [t, s] = [this.frames, this.inputSize];
    if (!this.syntheticFrames) {
      const r = rngFor(STREAM.synthetic, this.seed);
      this.syntheticFrames = new Uint8Array(this.batchSize * t * s * s * 3);
      for (let i = 0; i < this.syntheticFrames.length; i++) this.syntheticFrames[i] = r.int(255);
    }
    const per = 3 * t * s * s;
    const clip = t * s * s * 3;
    const host = native().backend === "host";
    if (!host && !this.staging) {
      this.staging = allocPersistent([this.syntheticFrames.length], "u8");
      copyToDevice(this.staging.ptr, this.syntheticFrames);
    }
    const keys: SampleKey[] = [];
    for (let i = 0; i < this.batchSize; i++) {
      const bytes = this.syntheticFrames.subarray(i * clip, (i + 1) * clip);
      const src = host
        ? new Tensor([t, s, s, 3], "u8", hostPointer(bytes))
        : this.staging!.sub(i * clip, [t, s, s, 3]);
      cropResizeNormalize(video.sub(i * per, [3, t, s, s]), src, {
        box: { x: 0, y: 0, w: s, h: s },
        mean: this.mean,
        std: this.std,
      });
      keys.push({ video: -1, clip: 0, chunk: 0, split: 0, pad: false });
    }
    return keys;
  }
}
