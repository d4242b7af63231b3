/*
 * vswift kernel ABI.
 *
 * Every kernel the models, the data pipeline and the trainer need, declared once as plain C. Two
 * libraries implement this header: libvswift_host.so (cuda/host/, C with OpenMP and OpenBLAS, the
 * numerical reference) and libvswift_cuda.so (cuda/gpu/, CUDA kernels, cuBLASLt, NCCL). The TypeScript
 * binding in lib/ffi/ opens one of them and calls the same symbols; only where pointers point differs.
 *
 * Conventions
 * - Every entry point returns an int status (vs_status); on failure vs_last_error() holds a sentence that
 *   names the kernel and the offending values. The message is per thread and valid until the next call.
 * - Pointers named like tensors point to device memory (host memory in the host build). Parameters
 *   documented as "host" point to host memory in both builds.
 * - Tensors are dense, row-major, with the shape given in the comment: x: (rows, cols) means x[r * cols + c].
 * - `dtype` arguments take vs_dtype values. bf16 is stored as the upper half of an IEEE float (round to
 *   nearest even on conversion) and computed in f32 in both builds.
 * - Parameter gradients (dgamma, dbeta, bias sums, AdamW state) are always f32.
 * - `stream` is a cudaStream_t in the CUDA build (NULL = default stream) and ignored by the host build.
 *   Kernels are asynchronous with respect to the host in the CUDA build; scalars they produce (losses,
 *   norms) stay in device memory so that a step needs no synchronisation.
 */
#ifndef VSWIFT_H
#define VSWIFT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VS_ABI_VERSION 1

typedef enum { VS_F32 = 0, VS_BF16 = 1, VS_U8 = 2, VS_I32 = 3 } vs_dtype;

typedef enum {
  VS_OK = 0,
  VS_ERR_ARG = 1,         /* a size, pointer or flag is out of range */
  VS_ERR_DTYPE = 2,       /* the dtype (combination) is not supported by this kernel */
  VS_ERR_ALIGN = 3,       /* a pointer or leading dimension breaks an alignment rule */
  VS_ERR_UNSUPPORTED = 4, /* not available in this build (NCCL in the host build, ...) */
  VS_ERR_NOMEM = 5,       /* an allocation failed */
  VS_ERR_LIBRARY = 6,     /* a run-time library (cuBLASLt, NCCL, OpenBLAS) could not be opened */
  VS_ERR_CUDA = 7,        /* the CUDA runtime reported an error */
  VS_ERR_BLAS = 8,        /* cuBLASLt returned an error or found no algorithm */
  VS_ERR_NCCL = 9,        /* NCCL returned an error */
  VS_ERR_DEVICE_FAULT = 10 /* an earlier kernel faulted on the device (illegal address, trap, ...): the CUDA
                              context is unusable until the process exits; the message names the call
                              that found it (with VSWIFT_SYNC_LAUNCH=1, the kernel that faulted) */
} vs_status;

/* GEMM epilogues, one contract for every build (the host build is its reference). The product is
 * accumulated in f32 (or better); "rounded" means rounded to c_dtype, once, where stated.
 *   BIAS:      C = alpha * op(A) op(B) + beta * C + bias[col], rounded once. bias is required.
 *   GELU_BIAS: aux = op(A) op(B) + bias[col], rounded once; C = gelu(aux) evaluated on aux as stored
 *              (the rounded pre-activation), rounded. So DGELU's gelu'(aux) differentiates exactly the
 *              function the forward applied. bias may be NULL (no bias). GELU is the exact erf form.
 *   DGELU:     C = round(op(A) op(B)) * gelu'(aux), rounded: the product is rounded to c_dtype before
 *              the multiplication, as an unfused GEMM and elementwise pass compute it.
 * GELU_BIAS and DGELU need alpha 1 and beta 0. The CUDA build's opt-in VSWIFT_CUBLASLT_GELU=1 (cuBLASLt's
 * fused epilogues) departs from this contract: tanh-approximated GELU on the unrounded product. */
typedef enum {
  VS_EPI_NONE = 0,      /* C = alpha * op(A) op(B) + beta * C */
  VS_EPI_BIAS = 1,      /* C = alpha * op(A) op(B) + beta * C + bias[col] */
  VS_EPI_GELU_BIAS = 2, /* aux = op(A) op(B) + bias[col]; C = gelu(aux); needs alpha 1, beta 0 */
  VS_EPI_DGELU = 3      /* C = round(op(A) op(B)) * gelu'(aux); needs alpha 1, beta 0 */
} vs_epilogue;

typedef enum { VS_COPY_H2H = 0, VS_COPY_H2D = 1, VS_COPY_D2H = 2, VS_COPY_D2D = 3 } vs_copy_kind;

typedef void* vs_stream;

/* ---------------------------------------------------------------------------------------------------
 * Library, devices, memory, streams, events
 * ------------------------------------------------------------------------------------------------- */

int vs_abi_version(void);
/* "host" or "cuda". */
const char* vs_backend_name(void);
/* The message of the last failed call on this thread ("" when none). */
const char* vs_last_error(void);

/* Number of usable devices: 1 for the host build; CUDA devices for the CUDA build (0 without a driver). */
int vs_device_count(int* count);
/* Selects the device for this thread and initialises it (CUDA context, library handles are lazy). */
int vs_init(int device);
/* Writes a NUL-terminated description of the device (name, memory, compute capability) into buf. */
int vs_device_name(int device, char* buf, int buf_len);
/* free and total bytes of device memory (host build: the machine's RAM). Both host pointers. */
int vs_mem_info(int64_t* free_bytes, int64_t* total_bytes);
/* Host build: OpenMP threads used by the kernels (0 = the OpenMP default). CUDA build: ignored. */
int vs_set_threads(int threads);

/* 256-byte aligned allocation of device memory; *ptr is NULL for bytes == 0. */
int vs_malloc(void** ptr, int64_t bytes);
int vs_free(void* ptr);
/* Page-locked host memory (CUDA build) or plain aligned memory (host build), for staging copies. */
int vs_malloc_host(void** ptr, int64_t bytes);
int vs_free_host(void* ptr);
int vs_memcpy(void* dst, const void* src, int64_t bytes, int kind, vs_stream stream);
int vs_memset(void* dst, int value, int64_t bytes, vs_stream stream);

int vs_stream_create(vs_stream* stream);
int vs_stream_destroy(vs_stream stream);
int vs_stream_sync(vs_stream stream);
int vs_device_sync(void);

/* Timing events: elapsed milliseconds between two recorded events (host build: wall clock). */
int vs_event_create(void** event);
int vs_event_destroy(void* event);
int vs_event_record(void* event, vs_stream stream);
/* Waits for `end` to complete, then writes the milliseconds between the two into *ms (host). */
int vs_event_elapsed_ms(void* start, void* end, float* ms);
/* Work queued on `stream` after this call waits until `event` (recorded on another stream) completes,
 * without blocking the host: how gradient all-reduces overlap the backward pass. Host build: no-op,
 * its kernels finish before they return. */
int vs_stream_wait_event(vs_stream stream, void* event);

/* ---------------------------------------------------------------------------------------------------
 * Elementwise and reductions
 * ------------------------------------------------------------------------------------------------- */

/* dst[i] = (dst_dtype) src[i]. Supports f32 <-> bf16 and u8 -> f32/bf16 (value, not scaled). */
int vs_cast(int src_dtype, int dst_dtype, int64_t n, const void* src, void* dst, vs_stream stream);
/* dst[i] = value. */
int vs_fill(int dtype, int64_t n, float value, void* dst, vs_stream stream);
/* out = a + b, elementwise over n values; out may alias a or b. */
int vs_add(int dtype, int64_t n, const void* a, const void* b, void* out, vs_stream stream);
/* y = alpha * x + beta * y over n values (beta 0 ignores the old y, even NaN). */
int vs_axpby(int dtype, int64_t n, float alpha, const void* x, float beta, void* y, vs_stream stream);
/* out: (outer, inner) = a: (outer, inner) + b: (inner) broadcast over outer; out may alias a. */
int vs_add_bcast(int dtype, int64_t outer, int64_t inner, const void* a, const void* b, void* out,
                 vs_stream stream);
/* out: (inner) f32, out[i] (+)= sum over o of x[o, i]; accumulate 0 overwrites. */
int vs_sum_outer(int dtype, int64_t outer, int64_t inner, const void* x, float* out, int accumulate,
                 vs_stream stream);
/* out: (rows, inner) = x * scale[row]; scale: (rows) f32 (per-sample stochastic depth). */
int vs_scale_rows(int dtype, int64_t rows, int64_t inner, const void* x, const float* scale, void* out,
                  vs_stream stream);
/* y = gelu(x) = x * Phi(x), the exact erf form. */
int vs_gelu_fwd(int dtype, int64_t n, const void* x, void* y, vs_stream stream);
/* dx = dy * gelu'(x). */
int vs_gelu_bwd(int dtype, int64_t n, const void* x, const void* dy, void* dx, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * GEMM
 * A is stored (m, k), or (k, m) when trans_a; B is stored (k, n), or (n, k) when trans_b; C is (m, n).
 * All dense row-major. ab_dtype: f32 or bf16; c_dtype: f32, or bf16 when ab_dtype is bf16.
 * Accumulation is f32. bias: (n) in c_dtype; aux: (m, n) in c_dtype (see vs_epilogue).
 * A Linear y = x W^T + b is (trans_a 0, trans_b 1); its weight gradient dW += dy^T x is
 * (trans_a 1, trans_b 0, beta 1, c f32); its input gradient dx = dy W is (0, 0).
 * The CUDA build needs pointers aligned to their element size; 16-byte aligned pointers and rows of
 * a multiple of 16 bytes get the fastest (tensor-core) kernels.
 * ------------------------------------------------------------------------------------------------- */
int vs_gemm(int ab_dtype, int c_dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
            float alpha, const void* a, const void* b, float beta, void* c, const void* bias, int epilogue,
            void* aux, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * LayerNorm over the last dimension, f32 statistics.
 * ------------------------------------------------------------------------------------------------- */

/* x, residual, sum_out, y: (rows, cols); gamma, beta: (cols); mean, rstd: (rows) f32.
 * Without a residual: y = (x - mean) * rstd * gamma + beta.
 * With a residual: sum_out = x + residual (needed), and y normalises sum_out. */
int vs_layernorm_fwd(int dtype, int64_t rows, int64_t cols, float eps, const void* x, const void* residual,
                     void* sum_out, const void* gamma, const void* beta, void* y, float* mean, float* rstd,
                     vs_stream stream);
/* x: the normalised input (sum_out when the forward had a residual). dx (+)= d/dx; dgamma, dbeta += sums
 * (f32, always accumulated). */
int vs_layernorm_bwd(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                     const float* mean, const float* rstd, const void* dy, void* dx, int accumulate_dx,
                     float* dgamma, float* dbeta, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * Attention: non-causal softmax(q k^T * scale) v per (batch, head).
 * qkv: (b, n, 3, heads, head_dim) as the qkv Linear writes it; out, dout: (b, n, heads, head_dim);
 * lse: (b, heads, n) f32, natural-log log-sum-exp of the scaled logits, saved by the forward.
 * dqkv: (b, n, 3, heads, head_dim), overwritten. dtype: f32 or bf16 (the CUDA build: bf16, head_dim
 * 32..128 in steps of 8). The workspace holds backward scratch; its size comes from
 * vs_attention_workspace_bytes (0 is valid when it says 0).
 * ------------------------------------------------------------------------------------------------- */
int64_t vs_attention_workspace_bytes(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim);
int vs_attention_fwd(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim, float scale,
                     const void* qkv, void* out, float* lse, vs_stream stream);
int vs_attention_bwd(int dtype, int64_t b, int64_t n, int64_t heads, int64_t head_dim, float scale,
                     const void* qkv, const void* out, const void* dout, const float* lse, void* dqkv,
                     void* workspace, int64_t workspace_bytes, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * Tokens
 * ------------------------------------------------------------------------------------------------- */

/* dst: (b, n_idx, c); dst[i, j] = src[i, idx[i, j]] with src: (b, n_src, c), or src: (n_src, c) shared
 * by every batch entry when src_shared. idx: (b, n_idx) i32 in [0, n_src). */
int vs_gather_rows(int dtype, int64_t b, int64_t n_src, int64_t n_idx, int64_t c, const void* src,
                   int src_shared, const int32_t* idx, void* dst, vs_stream stream);
/* dst: (b, n_dst, c); dst[i, idx[i, j]] (+)= src[i, j] with src: (b, n_idx, c). Indices within one batch
 * entry must be distinct; rows not named are left as they are. */
int vs_scatter_rows(int dtype, int64_t b, int64_t n_dst, int64_t n_idx, int64_t c, const void* src,
                    const int32_t* idx, void* dst, int accumulate, vs_stream stream);
/* out: (n_pos, d), angle = pos / 10000^(2 floor(j / 2) / d), sin for even j, cos for odd j; computed
 * in float64 and rounded once. */
int vs_sinusoid_table(int dtype, int64_t n_pos, int64_t d, void* out, vs_stream stream);
/* out: (b, c) = mean over the n tokens of x: (b, n, c). */
int vs_mean_tokens_fwd(int dtype, int64_t b, int64_t n, int64_t c, const void* x, void* out,
                       vs_stream stream);
/* dx: (b, n, c) (+)= dout[i, :] / n. */
int vs_mean_tokens_bwd(int dtype, int64_t b, int64_t n, int64_t c, const void* dout, void* dx,
                       int accumulate, vs_stream stream);
/* out: (b, c) = max over the n tokens of x: (b, n, c); argmax: (b, c) i32, the token that gave it (the
 * first one on ties; a NaN wins over any number, so NaNs propagate as in torch.max). */
int vs_max_tokens_fwd(int dtype, int64_t b, int64_t n, int64_t c, const void* x, void* out, int32_t* argmax,
                      vs_stream stream);
/* dx: (b, n, c): dx[i, argmax[i, ch], ch] (+)= dout[i, ch]; without accumulate every other element is set
 * to 0, with it every other element is left as it is. argmax: (b, c) i32 in [0, n). */
int vs_max_tokens_bwd(int dtype, int64_t b, int64_t n, int64_t c, const void* dout, const int32_t* argmax,
                      void* dx, int accumulate, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * Video to patches
 * video: (b, c, t, h, w) in in_dtype (f32, bf16, or u8 which is normalised on the fly as
 * (v / 255 - mean[ch]) / std[ch] with mean_std = {mean[0..c), std[0..c)} in host memory; NULL for float
 * input). Tokens: T' = t / tubelet, Hp = h / patch, Wp = w / patch; token index = (tau * Hp + hy) * Wp + wx.
 * idx: (b, n_idx) i32 token indices to produce, or NULL for all N = T' Hp Wp tokens in order
 * (then n_idx must equal N).
 * ------------------------------------------------------------------------------------------------- */

/* out: (b, n_idx, c * tubelet * patch * patch) in out_dtype, features in (c, dt, dy, dx) order (the Conv3d
 * weight order). */
int vs_patchify(int in_dtype, int out_dtype, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w,
                int64_t tubelet, int64_t patch, const float* mean_std, const void* video,
                const int32_t* idx, int64_t n_idx, void* out, vs_stream stream);
/* target: (b, n_idx, tubelet * patch * patch * c) f32, features in (dt, dy, dx, c) order, each
 * (token, channel) normalised by its mean and unbiased std: (v - mean) / (std + eps). */
int vs_patch_target(int in_dtype, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w, int64_t tubelet,
                    int64_t patch, float eps, const float* mean_std, const void* video, const int32_t* idx,
                    int64_t n_idx, float* target, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * Losses (the loss is a device f32 scalar; dloss is a device f32 scalar, 1 for a plain backward)
 * ------------------------------------------------------------------------------------------------- */

/* loss[0] = mean over n of (pred - target)^2; the MAE loss over the masked tokens' predictions. */
int vs_mse_fwd(int dtype, int64_t n, const void* pred, const float* target, float* loss, vs_stream stream);
/* dpred = 2 (pred - target) / n * dloss[0]. */
int vs_mse_bwd(int dtype, int64_t n, const void* pred, const float* target, const float* dloss,
               void* dpred, vs_stream stream);
/* logits: (rows, classes); targets: (rows, classes) f32 soft targets; loss[0] = mean over rows of
 * -sum_k targets * log_softmax(logits); lse: (rows) f32 saved. */
int vs_softmax_xent_fwd(int dtype, int64_t rows, int64_t classes, const void* logits, const float* targets,
                        float* loss, float* lse, vs_stream stream);
/* dlogits = (softmax(logits) * sum_k targets - targets) * dloss[0] / rows. */
int vs_softmax_xent_bwd(int dtype, int64_t rows, int64_t classes, const void* logits, const float* targets,
                        const float* lse, const float* dloss, void* dlogits, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * Optimiser
 * ------------------------------------------------------------------------------------------------- */

/* norm[0] = sqrt(sum of g[i]^2) over n f32 values (one flat gradient buffer). */
int vs_grad_norm(int64_t n, const float* g, float* norm, vs_stream stream);
/* coef[0] = min(1, max_norm / (norm[0] + 1e-6)), as torch.nn.utils.clip_grad_norm_. */
int vs_clip_coef(const float* norm, float max_norm, float* coef, vs_stream stream);
/* AdamW as torch.optim.AdamW over n values: g = grad * (grad_scale ? grad_scale[0] : 1);
 * param *= 1 - lr * weight_decay; m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
 * param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
 * param, grad, m, v: f32; param_bf16, when not NULL, receives the bf16 copy of the updated param.
 * step counts from 1. */
int vs_adamw(int64_t n, float* param, void* param_bf16, const float* grad, float* m, float* v, float lr,
             float beta1, float beta2, float eps, float weight_decay, int64_t step, const float* grad_scale,
             vs_stream stream);
/* flag[0] = 1 if any of the n values is NaN or infinite, else left as it is (callers zero it first). */
int vs_nonfinite(int dtype, int64_t n, const void* x, int32_t* flag, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * Collectives (NCCL in the CUDA build; the host build returns VS_ERR_UNSUPPORTED, its process group
 * lives in lib/dist/). id: 128 bytes, host memory. op: 0 sum, 1 average.
 * ------------------------------------------------------------------------------------------------- */
int vs_nccl_available(void);
int vs_nccl_unique_id(uint8_t* id);
int vs_nccl_comm_init(void** comm, int nranks, const uint8_t* id, int rank);
int vs_nccl_comm_destroy(void* comm);
int vs_nccl_all_reduce(void* comm, int dtype, int64_t count, const void* send, void* recv, int op,
                       vs_stream stream);
int vs_nccl_broadcast(void* comm, int dtype, int64_t count, const void* send, void* recv, int root,
                      vs_stream stream);
int vs_nccl_group_start(void);
int vs_nccl_group_end(void);

/* ---------------------------------------------------------------------------------------------------
 * Data augmentation: decoded uint8 frames to one normalised clip of a batch.
 * frames: n_frames frames of h x w pixels, device memory, in pix_fmt: VS_PIX_RGB24 (n_frames, h, w, 3)
 * interleaved RGB, or VS_PIX_YUV420P (n_frames, 3 h / 2, w): per frame the Y plane (h, w) then U and V
 * (h / 2, w / 2), h and w even, BT.601 limited range (ffmpeg's default conversion matrix), converted
 * to RGB after resampling, clamped to [0, 255]. The clip is frames frame_idx[0..t) (host array of t indices
 * in [0, n_frames), t <= 256; NULL means 0..t-1, then t <= n_frames). The same box crops every frame:
 * x0, y0, crop_w, crop_h in source pixels (floats; the box must lie inside the frame), resized to
 * (out_h, out_w) with the pixel-centre convention (align_corners false): output pixel ox samples source
 * x = x0 + (ox + 0.5) * crop_w / out_w, likewise y (chroma planes: the same box halved). Weights are a
 * triangle filter over source pixel centres, normalised over the taps inside the crop window (so edges
 * replicate, as resizing the cropped image): bilinear with radius 1, or with antialias and a shrinking
 * axis a radius of the scale factor (PIL / DALI antialias). flip mirrors the output horizontally.
 * value = (v / 255 - mean[c]) / std[c], mean_std = {mean[3], std[3]} in host memory.
 * out: (3, t, out_h, out_w) in out_dtype (f32 or bf16), written at this pointer: one sample's slice of a
 * (B, 3, T, H, W) batch.
 * ------------------------------------------------------------------------------------------------- */
typedef enum { VS_PIX_RGB24 = 0, VS_PIX_YUV420P = 1 } vs_pix_fmt;

int vs_crop_resize_normalize(int out_dtype, int pix_fmt, int64_t n_frames, int64_t h, int64_t w,
                             const uint8_t* frames, int64_t t, const int32_t* frame_idx, float x0, float y0,
                             float crop_w, float crop_h, int64_t out_h, int64_t out_w, int antialias, int flip,
                             const float* mean_std, void* out, vs_stream stream);

/* ---------------------------------------------------------------------------------------------------
 * Fine-tuning augmentation on a batch: mixup, CutMix and random erasing (timm's recipe as V-SWIFT uses
 * it). The partner of sample i is sample b - 1 - i (the batch reversed, timm's flip(0)); the kernels work
 * in place and read each pair before writing it, so no copy of the batch is needed.
 * ------------------------------------------------------------------------------------------------- */

/* x: (b, inner) in dtype (f32 or bf16), in place: x[i] = lam * x[i] + (1 - lam) * x[b - 1 - i], all
 * from the values before the call (the middle sample of an odd batch keeps its values). */
int vs_mix_batch(int dtype, int64_t b, int64_t inner, float lam, void* x, vs_stream stream);
/* x: (b, planes, h, w), in place: the box rows [y0, y1) x columns [x0, x1) of every plane of sample i
 * take the values sample b - 1 - i had there (the samples of a pair swap the box). One box for all
 * planes: a video seen as (B, C T, H, W) gets the same box in every frame and channel. */
int vs_cutmix_batch(int dtype, int64_t b, int64_t planes, int64_t h, int64_t w, int64_t y0, int64_t y1,
                    int64_t x0, int64_t x1, void* x, vs_stream stream);
/* x: (c, t, h, w), one clip, in place: the box rows [y0, y0 + eh) x columns [x0, x0 + ew) of every
 * channel and frame become standard normal noise (fresh per channel, frame and pixel). The noise is a
 * function of (seed, element) only, so both builds write the same values: element
 * e = ((ch * t + f) * eh + (y - y0)) * ew + (x - x0); with m(v) the murmur3 32-bit finaliser and
 * key(k) = m(seed ^ m(k + 0x9e3779b9)) (uint32 arithmetic), u1 = (key(2e) + 0.5) / 2^32,
 * u2 = key(2e + 1) / 2^32, value = sqrt(-2 ln u1) cos(2 pi u2) computed in double, rounded to f32 (then
 * to bf16). */
int vs_random_erase(int dtype, int64_t c, int64_t t, int64_t h, int64_t w, int64_t y0, int64_t x0,
                    int64_t eh, int64_t ew, uint32_t seed, void* x, vs_stream stream);

#ifdef __cplusplus
}
#endif

#endif /* VSWIFT_H */
