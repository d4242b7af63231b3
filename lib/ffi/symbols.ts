/**
 * The one Deno.dlopen symbol table: every entry point of cuda/vswift.h with its FFI signature.
 * Both libvswift_host.so and libvswift_cuda.so export exactly these.
 */
const P = "pointer" as const;
const I32 = "i32" as const;
const I64 = "i64" as const;
const F32 = "f32" as const;
const U32 = "u32" as const;

const fn = <const A extends readonly Deno.NativeType[]>(...parameters: A) =>
  ({ parameters, result: I32 }) as const;

/** vs_crop_resize_normalize's parameters (it has a nonblocking twin). */
const CROP_RESIZE = [
  I32,
  I32,
  I64,
  I64,
  I64,
  P,
  I64,
  P,
  F32,
  F32,
  F32,
  F32,
  I64,
  I64,
  I32,
  I32,
  P,
  P,
  P,
] as const;

export const SYMBOLS = {
  vs_abi_version: { parameters: [], result: I32 },
  vs_backend_name: { parameters: [], result: P },
  vs_last_error: { parameters: [], result: P },
  vs_device_count: fn(P),
  vs_init: fn(I32),
  vs_device_name: fn(I32, P, I32),
  vs_mem_info: fn(P, P),
  vs_set_threads: fn(I32),
  vs_malloc: fn(P, I64),
  vs_free: fn(P),
  vs_malloc_host: fn(P, I64),
  vs_free_host: fn(P),
  vs_memcpy: fn(P, P, I64, I32, P),
  vs_memset: fn(P, I32, I64, P),
  vs_stream_create: fn(P),
  vs_stream_destroy: fn(P),
  vs_stream_sync: fn(P),
  vs_device_sync: fn(),
  vs_event_create: fn(P),
  vs_event_destroy: fn(P),
  vs_event_record: fn(P, P),
  vs_event_elapsed_ms: fn(P, P, P),
  vs_stream_wait_event: fn(P, P),

  vs_cast: fn(I32, I32, I64, P, P, P),
  vs_fill: fn(I32, I64, F32, P, P),
  vs_add: fn(I32, I64, P, P, P, P),
  vs_axpby: fn(I32, I64, F32, P, F32, P, P),
  vs_add_bcast: fn(I32, I64, I64, P, P, P, P),
  vs_sum_outer: fn(I32, I64, I64, P, P, I32, P),
  vs_scale_rows: fn(I32, I64, I64, P, P, P, P),
  vs_gelu_fwd: fn(I32, I64, P, P, P),
  vs_gelu_bwd: fn(I32, I64, P, P, P, P),

  vs_gemm: fn(I32, I32, I32, I32, I64, I64, I64, F32, P, P, F32, P, P, I32, P, P),

  vs_layernorm_fwd: fn(I32, I64, I64, F32, P, P, P, P, P, P, P, P, P),
  vs_layernorm_bwd: fn(I32, I64, I64, P, P, P, P, P, P, I32, P, P, P),

  vs_attention_workspace_bytes: { parameters: [I32, I64, I64, I64, I64], result: I64 },
  vs_attention_fwd: fn(I32, I64, I64, I64, I64, F32, P, P, P, P),
  vs_attention_bwd: fn(I32, I64, I64, I64, I64, F32, P, P, P, P, P, P, I64, P),

  vs_gather_rows: fn(I32, I64, I64, I64, I64, P, I32, P, P, P),
  vs_scatter_rows: fn(I32, I64, I64, I64, I64, P, P, P, I32, P),
  vs_sinusoid_table: fn(I32, I64, I64, P, P),
  vs_mean_tokens_fwd: fn(I32, I64, I64, I64, P, P, P),
  vs_mean_tokens_bwd: fn(I32, I64, I64, I64, P, P, I32, P),
  vs_max_tokens_fwd: fn(I32, I64, I64, I64, P, P, P, P),
  vs_max_tokens_bwd: fn(I32, I64, I64, I64, P, P, P, I32, P),

  vs_patchify: fn(I32, I32, I64, I64, I64, I64, I64, I64, I64, P, P, P, I64, P, P),
  vs_patch_target: fn(I32, I64, I64, I64, I64, I64, I64, I64, F32, P, P, P, I64, P, P),

  vs_mse_fwd: fn(I32, I64, P, P, P, P),
  vs_mse_bwd: fn(I32, I64, P, P, P, P, P),
  vs_softmax_xent_fwd: fn(I32, I64, I64, P, P, P, P, P),
  vs_softmax_xent_bwd: fn(I32, I64, I64, P, P, P, P, P, P),

  vs_grad_norm: fn(I64, P, P, P),
  vs_clip_coef: fn(P, F32, P, P),
  vs_adamw: fn(I64, P, P, P, P, P, F32, F32, F32, F32, F32, I64, P, P),
  vs_nonfinite: fn(I32, I64, P, P, P),

  vs_nccl_available: { parameters: [], result: I32 },
  vs_nccl_unique_id: fn(P),
  vs_nccl_comm_init: fn(P, I32, P, I32),
  vs_nccl_comm_destroy: fn(P),
  vs_nccl_all_reduce: fn(P, I32, I64, P, P, I32, P),
  vs_nccl_broadcast: fn(P, I32, I64, P, P, I32, P),
  vs_nccl_group_start: fn(),
  vs_nccl_group_end: fn(),

  vs_crop_resize_normalize: fn(...CROP_RESIZE),
  // The same entry point run on a Deno worker thread (Native.callNonblocking), for the data loader.
  vs_crop_resize_normalize_nb: {
    parameters: CROP_RESIZE,
    result: I32,
    name: "vs_crop_resize_normalize",
    nonblocking: true,
  },

  vs_mix_batch: fn(I32, I64, I64, F32, P, P),
  vs_cutmix_batch: fn(I32, I64, I64, I64, I64, I64, I64, I64, I64, P, P),
  vs_random_erase: fn(I32, I64, I64, I64, I64, I64, I64, I64, I64, U32, P, P),
} as const;

export type NativeSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
