// Finding and opening run-time libraries (cuBLASLt, NCCL) that the build does not link against.
#pragma once

#include <stddef.h>

namespace vsw {

struct LibrarySpec {
  const char* what;             // for messages: "cuBLASLt"
  const char* env_var;          // a file or a folder that overrides the search: "VSWIFT_CUBLASLT"
  const char* const* sonames;   // in order of preference: {"libcublasLt.so.13", ...}
  int n_sonames;
  const char* probe_symbol;     // a symbol the library must export to be accepted
};

// Searches, in order: the spec's environment variable; the CUDA toolkit (CUDA_HOME, CUDA_PATH,
// /usr/local/cuda); the nvidia/*/lib folders of Python environments (PYTHONPATH, VIRTUAL_ENV,
// CONDA_PREFIX, the usual system and user site-packages); then the system search path (plain dlopen of
// each soname). On success *handle is the dlopen handle and `path` (if not NULL) receives where it came
// from. On failure `message` receives a sentence listing every place tried and the loader's errors.
// Returns true on success.
bool open_library(const LibrarySpec& spec, void** handle, char* path, size_t path_len, char* message,
                  size_t message_len);

}  // namespace vsw
