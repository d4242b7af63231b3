/**
 * Records the kernel calls a piece of code makes through the binding, with their arguments and the
 * stream each one was queued on. Used to check that a training step never touches the legacy default
 * stream, and as the launch sequence the roofline model (bench/model.ts) prices, so that model follows
 * the code instead of a hand-written list.
 */
import type { Native } from "./native.ts";

/**
 * Entry points whose last argument is the stream they queue work on (cuda/vswift.h; tests/streams_test.ts
 * checks this list against the header).
 */
export const STREAM_LAST: ReadonlySet<string> = new Set([
  "vs_memcpy",
  "vs_memset",
  "vs_event_record",
  "vs_cast",
  "vs_fill",
  "vs_add",
  "vs_axpby",
  "vs_add_bcast",
  "vs_sum_outer",
  "vs_scale_rows",
  "vs_gelu_fwd",
  "vs_gelu_bwd",
  "vs_gemm",
  "vs_layernorm_fwd",
  "vs_layernorm_bwd",
  "vs_attention_fwd",
  "vs_attention_bwd",
  "vs_gather_rows",
  "vs_scatter_rows",
  "vs_sinusoid_table",
  "vs_mean_tokens_fwd",
  "vs_mean_tokens_bwd",
  "vs_max_tokens_fwd",
  "vs_max_tokens_bwd",
  "vs_patchify",
  "vs_patch_target",
  "vs_mse_fwd",
  "vs_mse_bwd",
  "vs_softmax_xent_fwd",
  "vs_softmax_xent_bwd",
  "vs_grad_norm",
  "vs_clip_coef",
  "vs_adamw",
  "vs_nonfinite",
  "vs_nccl_all_reduce",
  "vs_nccl_broadcast",
  "vs_crop_resize_normalize",
  "vs_mix_batch",
  "vs_cutmix_batch",
  "vs_random_erase",
]);

/** Where a call's work was queued: the library's compute stream, the legacy NULL stream, or another. */
export type StreamKind = "compute" | "legacy" | "other";

export interface LaunchRecord {
  kernel: string;
  /** The call's arguments as passed (numbers, bigints, pointers). */
  args: readonly unknown[];
  /** Undefined for calls that queue no device work on a stream (allocation, queries, events' waits). */
  stream?: StreamKind;
}

function streamKind(n: Native, kernel: string, args: readonly unknown[]): StreamKind | undefined {
  let s: unknown;
  if (STREAM_LAST.has(kernel)) s = args[args.length - 1];
  else if (kernel === "vs_stream_wait_event" || kernel === "vs_stream_sync") s = args[0];
  else return undefined;
  if (s === null) return "legacy";
  return n.stream !== null && Deno.UnsafePointer.equals(s as Deno.PointerObject, n.stream)
    ? "compute"
    : "other";
}

/**
 * Runs `fn` (awaiting it) and returns every kernel call it made through `n`, in order. With `dry`, work
 * queued on a stream is recorded but not run (allocations, frees and queries still run), so that a
 * full-size step can be priced on a small machine; its results are then garbage.
 */
export async function recordLaunches(
  n: Native,
  fn: () => unknown,
  opts: { dry?: boolean } = {},
): Promise<LaunchRecord[]> {
  const launches: LaunchRecord[] = [];
  const previous = n.observer;
  n.observer = (kernel, args) => {
    // An enclosing recorder sees the call too, and its dry run wins.
    const skip = previous?.(kernel, args) === true;
    launches.push({ kernel, args: [...args], stream: streamKind(n, kernel, args) });
    return skip || (opts.dry === true && STREAM_LAST.has(kernel) && kernel !== "vs_event_record");
  };
  try {
    await fn();
    return launches;
  } finally {
    n.observer = previous;
  }
}

/** A numeric argument of a recorded call (sizes are passed as numbers or bigints). */
export function numArg(r: LaunchRecord, i: number): number {
  const v = r.args[i];
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  throw new TypeError(`${r.kernel}: argument ${i} is ${v === null ? "NULL" : typeof v}, not a number`);
}

/** True when a pointer argument of a recorded call is NULL. */
export function isNullArg(r: LaunchRecord, i: number): boolean {
  return r.args[i] === null;
}
