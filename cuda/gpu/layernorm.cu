// LayerNorm over the last dimension with f32 statistics (biased variance, as PyTorch).
//
// Fast path: one warp per row, the row held in registers as 16-byte packs, so x is read once (forward)
// and x, dy once (backward). It needs cols to be a multiple of the pack width, 16-byte aligned pointers
// and a row that fits the register budget (12 packs a lane: 3072 bf16 or 1536 f32 columns); anything
// else takes the generic path (one block per row, values re-read from L1/L2). The backward keeps its
// per-lane dgamma / dbeta column sums in registers up to 1024 columns; wider rows (ViT-H 1280, ViT-g
// 1408) keep them in shared memory, one (2, cols) slice per warp, with 4 warps a block.
//
// dgamma and dbeta are reduced deterministically: every block of the backward kernel writes its partial
// column sums (warps combined in a fixed order), a second kernel adds the block partials in block order
// and accumulates into the outputs. No float atomics anywhere, so results repeat bit for bit.
#include "map.cuh"

namespace vsw {
namespace {

constexpr int kLnWarps = 8;  // warps per block in the warp-per-row kernels
constexpr int kLnThreads = kLnWarps * 32;
constexpr int kLnWideWarps = 4;  // warps per block of the backward with column sums in shared memory

// ------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------

template <typename T, int NP, bool RES>
__global__ void __launch_bounds__(kLnThreads)
    ln_fwd_warp(int64_t rows, int cols, float eps, const T* x, const T* res, T* sum_out, const T* gamma,
                const T* beta, T* y, float* mean_out, float* rstd_out) {
  constexpr int E = int(16 / sizeof(T));
  const int lane = threadIdx.x & 31;
  const int npacks = cols / E;
  const int64_t warps_total = int64_t(gridDim.x) * kLnWarps;
  for (int64_t row = int64_t(blockIdx.x) * kLnWarps + (threadIdx.x >> 5); row < rows; row += warps_total) {
    const int64_t base = row * cols;
    float v[NP][E];
    float sum = 0.0f;
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      const int pk = p * 32 + lane;
      if (pk < npacks) {
        load_pack<T, E>(x + base + int64_t(pk) * E, v[p]);
        if constexpr (RES) {
          float r[E];
          load_pack<T, E>(res + base + int64_t(pk) * E, r);
          // The sum is stored in T and the normalisation uses the stored value, so that the backward
          // (which receives sum_out as its x) sees exactly what the forward normalised.
#pragma unroll
          for (int j = 0; j < E; ++j) v[p][j] = to_f(from_f<T>(v[p][j] + r[j]));
          store_pack<T, E>(sum_out + base + int64_t(pk) * E, v[p]);
        }
#pragma unroll
        for (int j = 0; j < E; ++j) sum += v[p][j];
      }
    }
    const float mean = warp_sum(sum) / float(cols);
    float ss = 0.0f;
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      if (p * 32 + lane < npacks) {
#pragma unroll
        for (int j = 0; j < E; ++j) {
          const float d = v[p][j] - mean;
          ss += d * d;
        }
      }
    }
    const float var = warp_sum(ss) / float(cols);
    const float rstd = 1.0f / sqrtf(var + eps);
    if (lane == 0) {
      if (mean_out) mean_out[row] = mean;
      if (rstd_out) rstd_out[row] = rstd;
    }
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      const int pk = p * 32 + lane;
      if (pk < npacks) {
        float g[E], b[E], o[E];
        load_pack<T, E>(gamma + int64_t(pk) * E, g);
        load_pack<T, E>(beta + int64_t(pk) * E, b);
#pragma unroll
        for (int j = 0; j < E; ++j) o[j] = (v[p][j] - mean) * rstd * g[j] + b[j];
        store_pack<T, E>(y + base + int64_t(pk) * E, o);
      }
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(256)
    ln_fwd_block(int64_t rows, int cols, float eps, const T* x, const T* res, T* sum_out, const T* gamma,
                 const T* beta, T* y, float* mean_out, float* rstd_out) {
  __shared__ float red[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * cols;
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      float v = to_f(x[base + c]);
      if (res != nullptr) {
        const T s = from_f<T>(v + to_f(res[base + c]));
        sum_out[base + c] = s;
        v = to_f(s);
      }
      sum += v;
    }
    // The block reduction's barriers also order the sum_out stores above before the re-reads below.
    const float mean = block_sum(sum, red) / float(cols);
    const T* src = res != nullptr ? sum_out : x;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const float d = to_f(src[base + c]) - mean;
      ss += d * d;
    }
    const float var = block_sum(ss, red) / float(cols);
    const float rstd = 1.0f / sqrtf(var + eps);
    if (threadIdx.x == 0) {
      if (mean_out) mean_out[row] = mean;
      if (rstd_out) rstd_out[row] = rstd;
    }
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      y[base + c] = from_f<T>((to_f(src[base + c]) - mean) * rstd * to_f(gamma[c]) + to_f(beta[c]));
    }
  }
}

// Packs per lane for which the warp kernels are instantiated; a row takes the smallest that fits.
constexpr int kNpChoices[] = {1, 2, 3, 4, 5, 6, 8, 10, 12};

template <typename T, bool RES, int I = 0>
void launch_ln_fwd_warp(int np, unsigned grid, cudaStream_t s, int64_t rows, int cols, float eps, const T* x,
                        const T* res, T* sum_out, const T* gamma, const T* beta, T* y, float* mean, float* rstd) {
  if constexpr (I < int(sizeof(kNpChoices) / sizeof(kNpChoices[0]))) {
    if (np <= kNpChoices[I]) {
      ln_fwd_warp<T, kNpChoices[I], RES>
          <<<grid, kLnThreads, 0, s>>>(rows, cols, eps, x, res, sum_out, gamma, beta, y, mean, rstd);
    } else {
      launch_ln_fwd_warp<T, RES, I + 1>(np, grid, s, rows, cols, eps, x, res, sum_out, gamma, beta, y, mean, rstd);
    }
  }
}

template <typename T>
int ln_fwd(const char* fn, int64_t rows, int cols, float eps, const T* x, const T* res, T* sum_out, const T* gamma,
           const T* beta, T* y, float* mean, float* rstd, cudaStream_t s) {
  constexpr int E = int(16 / sizeof(T));
  const int np = (cols / E + 31) / 32;
  const bool warp_ok = cols % E == 0 && np <= 12 && aligned16(x) && aligned16(gamma) && aligned16(beta) &&
                       aligned16(y) && (res == nullptr || (aligned16(res) && aligned16(sum_out)));
  if (warp_ok) {
    const unsigned grid = grid_for((rows + kLnWarps - 1) / kLnWarps, 1, 16);
    if (res != nullptr) {
      launch_ln_fwd_warp<T, true>(np, grid, s, rows, cols, eps, x, res, sum_out, gamma, beta, y, mean, rstd);
    } else {
      launch_ln_fwd_warp<T, false>(np, grid, s, rows, cols, eps, x, res, sum_out, gamma, beta, y, mean, rstd);
    }
  } else {
    ln_fwd_block<T><<<grid_for(rows, 1, 32), 256, 0, s>>>(rows, cols, eps, x, res, sum_out, gamma, beta, y, mean,
                                                          rstd);
  }
  return vs_check_launch(warp_ok ? "vs_layernorm_fwd (ln_fwd_warp)" : "vs_layernorm_fwd (ln_fwd_block)");
}

// ------------------------------------------------------------------------------------------------
// Backward
//
// With xhat = (x - mean) * rstd and g = gamma * dy:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dgamma = sum_rows dy * xhat,  dbeta = sum_rows dy.
// ------------------------------------------------------------------------------------------------

// Adds E values to 16-byte aligned shared memory as float4s (2-way bank conflicts at most).
template <int E>
__device__ __forceinline__ void smem_add(float* p, const float* v) {
#pragma unroll
  for (int j = 0; j < E; j += 4) {
    float4 a = *reinterpret_cast<float4*>(p + j);
    a.x += v[j];
    a.y += v[j + 1];
    a.z += v[j + 2];
    a.w += v[j + 3];
    *reinterpret_cast<float4*>(p + j) = a;
  }
}

// Adds the warps' register column sums in warp order (fixed, hence reproducible) through `acc_smem`
// (2, cols) and writes the block's partial to `out`.
template <int E, int NP>
__device__ __forceinline__ void ln_bwd_combine_regs(const float (&dg)[NP][E], const float (&db)[NP][E],
                                                    float* acc_smem, float* out, int cols, int npacks, int lane,
                                                    int warp) {
  for (int w = 0; w < kLnWarps; ++w) {
    if (warp == w) {
#pragma unroll
      for (int p = 0; p < NP; ++p) {
        const int pk = p * 32 + lane;
        if (pk < npacks) {
#pragma unroll
          for (int j = 0; j < E; ++j) {
            const int c = pk * E + j;
            acc_smem[c] = (w == 0 ? 0.0f : acc_smem[c]) + dg[p][j];
            acc_smem[cols + c] = (w == 0 ? 0.0f : acc_smem[cols + c]) + db[p][j];
          }
        }
      }
    }
    __syncthreads();
  }
  for (int c = threadIdx.x; c < 2 * cols; c += blockDim.x) out[c] = acc_smem[c];
}

// partial: (gridDim.x, 2, cols): row 0 dgamma, row 1 dbeta partials of this block.
// SMEM_ACC: the column sums live in shared memory, (kLnWideWarps, 2, cols), each lane only ever
// touching its own columns of its warp's slice (no races, no atomics), instead of 2 NP E registers.
template <typename T, int NP, bool SMEM_ACC>
__global__ void __launch_bounds__(kLnThreads)
    ln_bwd_warp(int64_t rows, int cols, const T* x, const T* gamma, const float* mean, const float* rstd, const T* dy,
                T* dx, int accumulate, float* partial) {
  constexpr int E = int(16 / sizeof(T));
  constexpr int kW = SMEM_ACC ? kLnWideWarps : kLnWarps;
  constexpr int kAccP = SMEM_ACC ? 1 : NP;  // register accumulators (unused with SMEM_ACC)
  extern __shared__ float acc_smem[];       // (2, cols), or (kW, 2, cols) with SMEM_ACC
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int npacks = cols / E;
  const float inv_cols = 1.0f / float(cols);
  float* const warp_acc = acc_smem + (SMEM_ACC ? int64_t(warp) * 2 * cols : 0);
  float dg[kAccP][E], db[kAccP][E];
#pragma unroll
  for (int p = 0; p < kAccP; ++p) {
#pragma unroll
    for (int j = 0; j < E; ++j) dg[p][j] = db[p][j] = 0.0f;
  }
  if constexpr (SMEM_ACC) {
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      const int pk = p * 32 + lane;
      if (pk < npacks) {
#pragma unroll
        for (int j = 0; j < E; j += 4) {
          *reinterpret_cast<float4*>(warp_acc + pk * E + j) = make_float4(0.f, 0.f, 0.f, 0.f);
          *reinterpret_cast<float4*>(warp_acc + cols + pk * E + j) = make_float4(0.f, 0.f, 0.f, 0.f);
        }
      }
    }
  }
  const int64_t warps_total = int64_t(gridDim.x) * kW;
  for (int64_t row = int64_t(blockIdx.x) * kW + warp; row < rows; row += warps_total) {
    const int64_t base = row * cols;
    const float mu = mean[row], rs = rstd[row];
    float xh[NP][E], gd[NP][E];
    float s1 = 0.0f, s2 = 0.0f;
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      const int pk = p * 32 + lane;
      if (pk < npacks) {
        float xv[E], dv[E], gv[E];
        load_pack<T, E>(x + base + int64_t(pk) * E, xv);
        load_pack<T, E>(dy + base + int64_t(pk) * E, dv);
        load_pack<T, E>(gamma + int64_t(pk) * E, gv);
#pragma unroll
        for (int j = 0; j < E; ++j) {
          xh[p][j] = (xv[j] - mu) * rs;
          gd[p][j] = gv[j] * dv[j];
          s1 += gd[p][j];
          s2 += gd[p][j] * xh[p][j];
        }
        if constexpr (SMEM_ACC) {
          float t[E];
#pragma unroll
          for (int j = 0; j < E; ++j) t[j] = dv[j] * xh[p][j];
          smem_add<E>(warp_acc + pk * E, t);
          smem_add<E>(warp_acc + cols + pk * E, dv);
        } else {
#pragma unroll
          for (int j = 0; j < E; ++j) {
            dg[p][j] += dv[j] * xh[p][j];
            db[p][j] += dv[j];
          }
        }
      }
    }
    const float m1 = warp_sum(s1) * inv_cols, m2 = warp_sum(s2) * inv_cols;
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      const int pk = p * 32 + lane;
      if (pk < npacks) {
        float o[E];
#pragma unroll
        for (int j = 0; j < E; ++j) o[j] = rs * (gd[p][j] - m1 - xh[p][j] * m2);
        if (accumulate) {
          float old[E];
          load_pack<T, E>(dx + base + int64_t(pk) * E, old);
#pragma unroll
          for (int j = 0; j < E; ++j) o[j] += old[j];
        }
        store_pack<T, E>(dx + base + int64_t(pk) * E, o);
      }
    }
  }
  float* out = partial + int64_t(blockIdx.x) * 2 * cols;
  if constexpr (SMEM_ACC) {
    // Sum the warps' slices in warp order (fixed, hence reproducible).
    __syncthreads();
    for (int c = threadIdx.x; c < 2 * cols; c += blockDim.x) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kW; ++w) sum += acc_smem[int64_t(w) * 2 * cols + c];
      out[c] = sum;
    }
  } else {
    ln_bwd_combine_regs<E, NP>(dg, db, acc_smem, out, cols, npacks, lane, warp);
  }
}

template <typename T>
__global__ void __launch_bounds__(256)
    ln_bwd_dx_block(int64_t rows, int cols, const T* x, const T* gamma, const float* mean, const float* rstd,
                    const T* dy, T* dx, int accumulate) {
  __shared__ float red[32];
  const float inv_cols = 1.0f / float(cols);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * cols;
    const float mu = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const float xh = (to_f(x[base + c]) - mu) * rs;
      const float g = to_f(gamma[c]) * to_f(dy[base + c]);
      s1 += g;
      s2 += g * xh;
    }
    const float m1 = block_sum(s1, red) * inv_cols;
    const float m2 = block_sum(s2, red) * inv_cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const float xh = (to_f(x[base + c]) - mu) * rs;
      const float g = to_f(gamma[c]) * to_f(dy[base + c]);
      float o = rs * (g - m1 - xh * m2);
      if (accumulate) o += to_f(dx[base + c]);
      dx[base + c] = from_f<T>(o);
    }
  }
}

// Column partials of dy * xhat and dy for the generic path: block (32 columns, 8 row lanes) over one chunk
// of rows; partial: (chunks, 2, cols).
template <typename T>
__global__ void __launch_bounds__(256)
    ln_bwd_params_partial(int64_t rows, int cols, int64_t rows_per_chunk, const T* x, const float* mean,
                          const float* rstd, const T* dy, float* partial) {
  __shared__ float red_g[8][33], red_b[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  float ag = 0.0f, ab = 0.0f;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const float d = to_f(dy[r * cols + c]);
      ag += d * ((to_f(x[r * cols + c]) - mean[r]) * rstd[r]);
      ab += d;
    }
  }
  red_g[threadIdx.y][threadIdx.x] = ag;
  red_b[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float sg = 0.0f, sb = 0.0f;
#pragma unroll
    for (int y = 0; y < 8; ++y) {
      sg += red_g[y][threadIdx.x];
      sb += red_b[y][threadIdx.x];
    }
    float* out = partial + int64_t(blockIdx.y) * 2 * cols;
    out[c] = sg;
    out[cols + c] = sb;
  }
}

// dgamma[c] += sum over parts of partial[part][0][c]; dbeta likewise with [1].
__global__ void ln_bwd_params_final(int cols, int64_t parts, const float* partial, float* dgamma, float* dbeta) {
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < 2 * cols; c += gridDim.x * blockDim.x) {
    float s = 0.0f;
    for (int64_t k = 0; k < parts; ++k) s += partial[k * 2 * cols + c];
    if (c < cols) {
      dgamma[c] += s;
    } else {
      dbeta[c - cols] += s;
    }
  }
}

// Register accumulators for rows up to 32 values a lane; shared-memory accumulators for 33 to 48 (only
// the sizes each path can take are instantiated).
template <typename T, bool SMEM_ACC, int I = 0>
void launch_ln_bwd_warp(int np, unsigned grid, size_t smem, cudaStream_t s, int64_t rows, int cols, const T* x,
                        const T* gamma, const float* mean, const float* rstd, const T* dy, T* dx, int accumulate,
                        float* partial) {
  constexpr int kChoices = int(sizeof(kNpChoices) / sizeof(kNpChoices[0]));
  if constexpr (I < kChoices) {
    constexpr int kVals = kNpChoices[I] * int(16 / sizeof(T));
    constexpr bool kTakes = SMEM_ACC ? kVals > 32 && kVals <= 48 : kVals <= 32;
    if constexpr (!kTakes) {
      // Not a size this path takes: only the other path's sizes below it, or none.
      launch_ln_bwd_warp<T, SMEM_ACC, I + 1>(np, grid, smem, s, rows, cols, x, gamma, mean, rstd, dy, dx,
                                             accumulate, partial);
    } else if (np <= kNpChoices[I]) {
      ln_bwd_warp<T, kNpChoices[I], SMEM_ACC><<<grid, SMEM_ACC ? kLnWideWarps * 32 : kLnThreads, smem, s>>>(
          rows, cols, x, gamma, mean, rstd, dy, dx, accumulate, partial);
    } else {
      launch_ln_bwd_warp<T, SMEM_ACC, I + 1>(np, grid, smem, s, rows, cols, x, gamma, mean, rstd, dy, dx,
                                             accumulate, partial);
    }
  }
}

template <typename T>
int ln_bwd(const char* fn, int64_t rows, int cols, const T* x, const T* gamma, const float* mean, const float* rstd,
           const T* dy, T* dx, int accumulate, float* dgamma, float* dbeta, cudaStream_t s) {
  constexpr int E = int(16 / sizeof(T));
  float* partial = nullptr;
  VSW_TRY(stream_scratch(fn, s, &partial));
  const int64_t scratch_floats = int64_t(kScratchBytes / sizeof(float));
  const int np = (cols / E + 31) / 32;
  // The row's values live in registers (up to 12 packs a lane, as the forward). The per-lane
  // dgamma/dbeta accumulators do too up to 32 values a lane (1024 columns); wider rows keep them in
  // shared memory, a (2, cols) f32 slice per warp of a 4-warp block (48 KiB up to 1536 columns).
  const bool packs_ok = cols % E == 0 && np <= 12 && aligned16(x) && aligned16(gamma) && aligned16(dy) &&
                        aligned16(dx);
  const bool regs = np * E <= 32;
  const int warps = regs ? kLnWarps : kLnWideWarps;
  const size_t smem = size_t(regs ? 2 : 2 * kLnWideWarps) * size_t(cols) * sizeof(float);
  const bool warp_ok = packs_ok && smem <= 48 * 1024 && np * E <= 48;
  int64_t parts = 0;
  if (warp_ok) {
    int64_t grid = int64_t(sm_count()) * (regs ? 2 : 4);
    const int64_t by_rows = (rows + warps - 1) / warps;
    if (grid > by_rows) grid = by_rows;
    if (grid > scratch_floats / (2 * int64_t(cols))) grid = scratch_floats / (2 * int64_t(cols));
    if (grid < 1) grid = 1;
    if (regs) {
      launch_ln_bwd_warp<T, false>(np, unsigned(grid), smem, s, rows, cols, x, gamma, mean, rstd, dy, dx,
                                   accumulate, partial);
    } else {
      launch_ln_bwd_warp<T, true>(np, unsigned(grid), smem, s, rows, cols, x, gamma, mean, rstd, dy, dx, accumulate,
                                  partial);
    }
    VSW_TRY(vs_check_launch(regs ? "vs_layernorm_bwd (ln_bwd_warp)" : "vs_layernorm_bwd (ln_bwd_warp, smem sums)"));
    parts = grid;
  } else {
    ln_bwd_dx_block<T><<<grid_for(rows, 1, 32), 256, 0, s>>>(rows, cols, x, gamma, mean, rstd, dy, dx, accumulate);
    VSW_TRY(vs_check_launch("vs_layernorm_bwd (ln_bwd_dx_block)"));
    const int64_t col_tiles = (cols + 31) / 32;
    int64_t chunks = (int64_t(sm_count()) * 4 + col_tiles - 1) / col_tiles;
    if (chunks > (rows + 63) / 64) chunks = (rows + 63) / 64;
    if (chunks > scratch_floats / (2 * int64_t(cols))) chunks = scratch_floats / (2 * int64_t(cols));
    if (chunks > 65535) chunks = 65535;
    if (chunks < 1) chunks = 1;
    const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
    chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    const dim3 grid{unsigned(col_tiles), unsigned(chunks), 1u};
    const dim3 block{32u, 8u, 1u};
    ln_bwd_params_partial<T><<<grid, block, 0, s>>>(rows, cols, rows_per_chunk, x, mean, rstd, dy, partial);
    VSW_TRY(vs_check_launch("vs_layernorm_bwd (ln_bwd_params_partial)"));
    parts = chunks;
  }
  ln_bwd_params_final<<<grid_for(2 * int64_t(cols), 256, 4), 256, 0, s>>>(cols, parts, partial, dgamma, dbeta);
  return vs_check_launch("vs_layernorm_bwd (ln_bwd_params_final)");
}

}  // namespace
}  // namespace vsw

using namespace vsw;

int vs_layernorm_fwd(int dtype, int64_t rows, int64_t cols, float eps, const void* x, const void* residual,
                     void* sum_out, const void* gamma, const void* beta, void* y, float* mean, float* rstd,
                     vs_stream stream) {
  static const char* fn = "vs_layernorm_fwd";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "rows", rows));
  VSW_TRY(check_size(fn, "cols", cols));
  if (cols == 0 || cols > 0x7fffffff) {
    return vs_fail(VS_ERR_ARG, "%s: cols = %lld must be in [1, 2^31)", fn, (long long)cols);
  }
  if (!(eps >= 0.0f)) return vs_fail(VS_ERR_ARG, "%s: eps = %g must be >= 0", fn, double(eps));
  if (rows == 0) return VS_OK;
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "gamma", gamma));
  VSW_TRY(check_ptr(fn, "beta", beta));
  VSW_TRY(check_ptr(fn, "y", y));
  if (residual != nullptr) VSW_TRY(check_ptr(fn, "sum_out (needed with a residual)", sum_out));
  // mean and rstd may be NULL when no backward follows (evaluation).
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return ln_fwd<T>(fn, rows, int(cols), eps, static_cast<const T*>(x), static_cast<const T*>(residual),
                     static_cast<T*>(sum_out), static_cast<const T*>(gamma), static_cast<const T*>(beta),
                     static_cast<T*>(y), mean, rstd, as_stream(stream));
  });
}

int vs_layernorm_bwd(int dtype, int64_t rows, int64_t cols, const void* x, const void* gamma, const float* mean,
                     const float* rstd, const void* dy, void* dx, int accumulate_dx, float* dgamma, float* dbeta,
                     vs_stream stream) {
  static const char* fn = "vs_layernorm_bwd";
  VSW_TRY(check_float_dtype(fn, dtype));
  VSW_TRY(check_size(fn, "rows", rows));
  VSW_TRY(check_size(fn, "cols", cols));
  if (cols == 0 || cols > (1 << 20)) {
    return vs_fail(VS_ERR_ARG, "%s: cols = %lld must be in [1, 2^20]", fn, (long long)cols);
  }
  if (rows == 0) return VS_OK;  // dgamma and dbeta gain nothing
  VSW_TRY(check_ptr(fn, "x", x));
  VSW_TRY(check_ptr(fn, "gamma", gamma));
  VSW_TRY(check_ptr(fn, "mean", mean));
  VSW_TRY(check_ptr(fn, "rstd", rstd));
  VSW_TRY(check_ptr(fn, "dy", dy));
  VSW_TRY(check_ptr(fn, "dx", dx));
  VSW_TRY(check_ptr(fn, "dgamma", dgamma));
  VSW_TRY(check_ptr(fn, "dbeta", dbeta));
  return with_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    return ln_bwd<T>(fn, rows, int(cols), static_cast<const T*>(x), static_cast<const T*>(gamma), mean, rstd,
                     static_cast<const T*>(dy), static_cast<T*>(dx), accumulate_dx, dgamma, dbeta, as_stream(stream));
  });
}
