/* Library identity, the one host "device", memory, streams, events and the thread count. */
#define _GNU_SOURCE

#include <cblas.h>
#include <inttypes.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "host.h"

int vs_abi_version(void) {
  return VS_ABI_VERSION;
}

const char* vs_backend_name(void) {
  return "host";
}

/* ---------------------------------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------------------------------- */

static pthread_once_t g_defaults_once = PTHREAD_ONCE_INIT;
static int g_default_omp_threads = 1;
static int g_default_blas_threads = 1;
static int g_threads; /* 0: the OpenMP default */

/* Captured before the first vs_set_threads so that "0" can restore what the environment asked for. */
static void capture_defaults(void) {
  g_default_omp_threads = omp_get_max_threads();
  g_default_blas_threads = openblas_get_num_threads();
  if (g_default_omp_threads < 1) {
    g_default_omp_threads = 1;
  }
  if (g_default_blas_threads < 1) {
    g_default_blas_threads = 1;
  }
}

int vs_team(int64_t work) {
  if (work < 32768) {
    return 1;
  }
  int t = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
  if (t > 0) {
    return t;
  }
  pthread_once(&g_defaults_once, capture_defaults);
  return g_default_omp_threads;
}

int vs_set_threads(int threads) {
  if (threads < 0) {
    return vs_fail(VS_ERR_ARG, "vs_set_threads: threads must be >= 0 (0 = the OpenMP default), got %d", threads);
  }
  pthread_once(&g_defaults_once, capture_defaults);
  __atomic_store_n(&g_threads, threads, __ATOMIC_RELAXED);
  omp_set_num_threads(threads > 0 ? threads : g_default_omp_threads);
  /* OpenBLAS keeps its own pool for the GEMMs; its setting is process wide. */
  openblas_set_num_threads(threads > 0 ? threads : g_default_blas_threads);
  return VS_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Device
 * ------------------------------------------------------------------------------------------------- */

int vs_device_count(int* count) {
  VS_TRY(vs_check_ptr("vs_device_count", "count", count, 1));
  *count = 1;
  return VS_OK;
}

static int check_device(const char* kernel, int device) {
  if (device != 0) {
    return vs_fail(VS_ERR_ARG, "%s: device must be 0 in the host build (it has one device), got %d", kernel,
                   device);
  }
  return VS_OK;
}

int vs_init(int device) {
  VS_TRY(check_device("vs_init", device));
  pthread_once(&g_defaults_once, capture_defaults);
  return VS_OK;
}

/* Reads a "Key: value kB" line of /proc/meminfo, in bytes; -1 when absent. */
static int64_t meminfo_bytes(const char* key) {
  FILE* f = fopen("/proc/meminfo", "r");
  if (f == NULL) {
    return -1;
  }
  char line[256];
  int64_t result = -1;
  size_t key_len = strlen(key);
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
      long long kib = 0;
      if (sscanf(line + key_len + 1, "%lld", &kib) == 1) {
        result = (int64_t)kib * 1024;
      }
      break;
    }
  }
  fclose(f);
  return result;
}

int vs_mem_info(int64_t* free_bytes, int64_t* total_bytes) {
  VS_TRY(vs_check_ptr("vs_mem_info", "free_bytes", free_bytes, 1));
  VS_TRY(vs_check_ptr("vs_mem_info", "total_bytes", total_bytes, 1));
  const int64_t page = sysconf(_SC_PAGESIZE);
  int64_t total = meminfo_bytes("MemTotal");
  /* MemAvailable counts reclaimable cache, which is what an allocation can actually get. */
  int64_t avail = meminfo_bytes("MemAvailable");
  if (total < 0) {
    total = (int64_t)sysconf(_SC_PHYS_PAGES) * page;
  }
  if (avail < 0) {
    avail = (int64_t)sysconf(_SC_AVPHYS_PAGES) * page;
  }
  *free_bytes = avail;
  *total_bytes = total;
  return VS_OK;
}

static void cpu_model(char* out, size_t out_len) {
  snprintf(out, out_len, "unknown CPU");
  FILE* f = fopen("/proc/cpuinfo", "r");
  if (f == NULL) {
    return;
  }
  char line[512];
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "model name", 10) == 0) {
      const char* colon = strchr(line, ':');
      if (colon != NULL) {
        colon++;
        while (*colon == ' ' || *colon == '\t') {
          colon++;
        }
        snprintf(out, out_len, "%s", colon);
        size_t len = strlen(out);
        while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' ')) {
          out[--len] = '\0';
        }
      }
      break;
    }
  }
  fclose(f);
}

int vs_device_name(int device, char* buf, int buf_len) {
  VS_TRY(check_device("vs_device_name", device));
  VS_TRY(vs_check_ptr("vs_device_name", "buf", buf, 1));
  if (buf_len < 1) {
    return vs_fail(VS_ERR_ARG, "vs_device_name: buf_len must be >= 1, got %d", buf_len);
  }
  char model[256];
  cpu_model(model, sizeof model);
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
  vs_mem_info(&free_bytes, &total_bytes);
  /* OpenBLAS's kernel choice is named because a CPU it does not recognise gets its generic (Prescott)
   * kernels, several times slower; lib/ffi/openblas_core.ts explains and works around that. */
  snprintf(buf, (size_t)buf_len, "host: %s, %d threads, %.1f GiB RAM, OpenBLAS %s", model, vs_team(INT64_MAX),
           (double)total_bytes / (1024.0 * 1024.0 * 1024.0), openblas_get_corename());
  return VS_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------------------------------- */

static int aligned_malloc(const char* kernel, void** ptr, int64_t bytes) {
  VS_TRY(vs_check_ptr(kernel, "ptr", ptr, 1));
  if (bytes < 0) {
    return vs_fail(VS_ERR_ARG, "%s: bytes must be >= 0, got %" PRId64, kernel, bytes);
  }
  *ptr = NULL;
  if (bytes == 0) {
    return VS_OK;
  }
  if (bytes > INT64_MAX - 255) {
    return vs_fail(VS_ERR_NOMEM, "%s: could not allocate %" PRId64 " bytes", kernel, bytes);
  }
  /* aligned_alloc wants the size to be a multiple of the alignment. */
  int64_t rounded = (bytes + 255) / 256 * 256;
  *ptr = aligned_alloc(256, (size_t)rounded);
  if (*ptr == NULL) {
    return vs_fail(VS_ERR_NOMEM, "%s: could not allocate %" PRId64 " bytes", kernel, bytes);
  }
  return VS_OK;
}

int vs_malloc(void** ptr, int64_t bytes) {
  return aligned_malloc("vs_malloc", ptr, bytes);
}

int vs_free(void* ptr) {
  free(ptr);
  return VS_OK;
}

int vs_malloc_host(void** ptr, int64_t bytes) {
  return aligned_malloc("vs_malloc_host", ptr, bytes);
}

int vs_free_host(void* ptr) {
  free(ptr);
  return VS_OK;
}

int vs_memcpy(void* dst, const void* src, int64_t bytes, int kind, vs_stream stream) {
  static const char* k = "vs_memcpy";
  if (kind < VS_COPY_H2H || kind > VS_COPY_D2D) {
    return vs_fail(VS_ERR_ARG, "%s: kind must be 0..3 (H2H, H2D, D2H, D2D), got %d", k, kind);
  }
  if (bytes < 0) {
    return vs_fail(VS_ERR_ARG, "%s: bytes must be >= 0, got %" PRId64, k, bytes);
  }
  VS_TRY(vs_check_ptr(k, "dst", dst, bytes));
  VS_TRY(vs_check_ptr(k, "src", src, bytes));
  /* Every kind is a host copy here; memmove because nothing forbids a caller's ranges to overlap. */
  if (bytes > 0 && dst != src) {
    memmove(dst, src, (size_t)bytes);
  }
  return VS_OK;
}

int vs_memset(void* dst, int value, int64_t bytes, vs_stream stream) {
  if (bytes < 0) {
    return vs_fail(VS_ERR_ARG, "vs_memset: bytes must be >= 0, got %" PRId64, bytes);
  }
  VS_TRY(vs_check_ptr("vs_memset", "dst", dst, bytes));
  if (bytes > 0) {
    /* As cudaMemset: the low byte of value fills every byte. */
    memset(dst, value & 0xff, (size_t)bytes);
  }
  return VS_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Streams and events. Host kernels finish before they return, so streams are only tokens; they are
 * real allocations so that a handle is never NULL (NULL means the default stream).
 * ------------------------------------------------------------------------------------------------- */

int vs_stream_create(vs_stream* stream) {
  VS_TRY(vs_check_ptr("vs_stream_create", "stream", stream, 1));
  *stream = malloc(1);
  if (*stream == NULL) {
    return vs_fail(VS_ERR_NOMEM, "vs_stream_create: could not allocate a stream handle");
  }
  return VS_OK;
}

int vs_stream_destroy(vs_stream stream) {
  free(stream);
  return VS_OK;
}

int vs_stream_sync(vs_stream stream) {
  return VS_OK;
}

int vs_device_sync(void) {
  return VS_OK;
}

int vs_stream_wait_event(vs_stream stream, void* event) {
  VS_TRY(vs_check_ptr("vs_stream_wait_event", "event", event, 1));
  return VS_OK;
}

typedef struct {
  struct timespec when;
  int recorded;
} host_event;

int vs_event_create(void** event) {
  VS_TRY(vs_check_ptr("vs_event_create", "event", event, 1));
  *event = calloc(1, sizeof(host_event));
  if (*event == NULL) {
    return vs_fail(VS_ERR_NOMEM, "vs_event_create: could not allocate an event");
  }
  return VS_OK;
}

int vs_event_destroy(void* event) {
  free(event);
  return VS_OK;
}

int vs_event_record(void* event, vs_stream stream) {
  VS_TRY(vs_check_ptr("vs_event_record", "event", event, 1));
  host_event* e = event;
  clock_gettime(CLOCK_MONOTONIC, &e->when);
  e->recorded = 1;
  return VS_OK;
}

int vs_event_elapsed_ms(void* start, void* end, float* ms) {
  static const char* k = "vs_event_elapsed_ms";
  VS_TRY(vs_check_ptr(k, "start", start, 1));
  VS_TRY(vs_check_ptr(k, "end", end, 1));
  VS_TRY(vs_check_ptr(k, "ms", ms, 1));
  const host_event* a = start;
  const host_event* b = end;
  if (!a->recorded || !b->recorded) {
    return vs_fail(VS_ERR_ARG, "%s: both events must be recorded first (start %s, end %s)", k,
                   a->recorded ? "recorded" : "not recorded", b->recorded ? "recorded" : "not recorded");
  }
  double sec = (double)(b->when.tv_sec - a->when.tv_sec) + 1e-9 * (double)(b->when.tv_nsec - a->when.tv_nsec);
  *ms = (float)(sec * 1e3);
  return VS_OK;
}
