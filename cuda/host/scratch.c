/* Per-thread scratch buffers and the f32 staging copy used by the bf16 paths. */
#include <pthread.h>
#include <stdlib.h>

#include "host.h"

typedef struct {
  void* ptr[VS_SCRATCH_SLOTS];
  int64_t cap[VS_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
/* The thread-local pointer is the fast path; the key exists only so that the buffers of an exiting
 * thread (an OpenMP worker, an FFI worker thread) are freed by its destructor. */
static _Thread_local scratch_set* t_set;

static void free_set(void* p) {
  scratch_set* set = p;
  for (int i = 0; i < VS_SCRATCH_SLOTS; i++) {
    free(set->ptr[i]);
  }
  free(set);
}

static void make_key(void) {
  (void)pthread_key_create(&g_key, free_set);
}

void* vs_scratch(int slot, int64_t bytes) {
  if (slot < 0 || slot >= VS_SCRATCH_SLOTS || bytes < 0) {
    return NULL;
  }
  if (t_set == NULL) {
    pthread_once(&g_key_once, make_key);
    t_set = calloc(1, sizeof *t_set);
    if (t_set == NULL) {
      return NULL;
    }
    (void)pthread_setspecific(g_key, t_set);
  }
  if (bytes <= t_set->cap[slot] && t_set->ptr[slot] != NULL) {
    return t_set->ptr[slot];
  }
  if (bytes > INT64_MAX - 64) {
    return NULL;
  }
  /* Round up so aligned_alloc's size rule holds and a slightly larger request reuses the buffer. */
  int64_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) {
    rounded = 64;
  }
  free(t_set->ptr[slot]);
  t_set->ptr[slot] = aligned_alloc(64, (size_t)rounded);
  t_set->cap[slot] = t_set->ptr[slot] != NULL ? rounded : 0;
  return t_set->ptr[slot];
}

void vs_to_f32(int dtype, const void* src, float* dst, int64_t n) {
  if (dtype == VS_F32) {
    memcpy(dst, src, (size_t)n * sizeof(float));
    return;
  }
  const uint16_t* s = src;
#pragma omp parallel for schedule(static) num_threads(vs_team(n))
  for (int64_t i = 0; i < n; i++) {
    dst[i] = vs_bf16_to_f32(s[i]);
  }
}
