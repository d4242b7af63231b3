// The simulator's internal interface: what the device header (device.h), the PTX wrappers (ptx.h) and
// the runtime (runtime.cpp) call in the execution engine (scheduler.cpp) and the memory checker
// (memory.cpp). Everything here runs on the host; "thread" means a simulated CUDA thread (a fiber).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

namespace vsim {

struct LaunchCfg {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};

// Runs a kernel to completion: body(ctx) once per thread of every block, each block's threads as
// cooperative fibers. Returns cudaSuccess or the error of the first failing thread (message in
// last_detail()).
cudaError_t run_kernel(const void* fn, const char* expr, const LaunchCfg& cfg, void (*body)(void*), void* ctx);

// The detailed message of the last error this OS thread recorded (kernel, block, thread, what).
const char* last_detail();
void set_detail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Built-ins of the calling simulated thread.
const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();

// __syncthreads(): waits for every live thread of the block.
void syncthreads();

// Warp-synchronous exchange: this lane deposits `words` 32-bit words, waits for every lane of `mask`,
// and gets a pointer to all lanes' deposits ([lane * 16 + word]), valid until its next exchange.
const uint32_t* warp_exchange(const char* op, unsigned mask, const uint32_t* mine, int words);
int lane_id();

// Stops the calling kernel with an error naming the kernel, the block and the thread.
[[noreturn]] void kernel_error(cudaError_t code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Shared memory: the dynamic window, a static __shared__ variable (one per `tag` and block), 32-bit
// shared addresses (as cvta.to.shared gives) and checked access to them.
void* dynamic_smem();
// The first statement of every kernel with __launch_bounds__(max_threads) (inserted by rewrite.ts): a
// block of more threads fails the launch, as the driver refuses it.
void launch_bounds(long long max_threads);
void* static_smem(const void* tag, size_t bytes, size_t align);
uint32_t shared_address(const void* p);
void* shared_ptr(uint32_t addr, size_t bytes, size_t align, const char* op);

// Global memory: [p, p + bytes) must lie in one live allocation and p be `align`-aligned.
void check_global(const void* p, size_t bytes, size_t align, const char* op);

// cp.async of `size` bytes (4, 8 or 16): src_bytes read from global, the rest zero-filled, landing in
// shared memory only when a cp.async.wait_group releases its group.
void cp_async(uint32_t dst, const void* src, uint32_t size, uint32_t src_bytes);
void cp_async_commit();
void cp_async_wait(int pending);

}  // namespace vsim
