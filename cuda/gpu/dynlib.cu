// Library search for dlopen. cuBLASLt and NCCL come from wherever the user has them: a path named in an
// environment variable, the CUDA toolkit, pip wheels (nvidia-cublas-cu12, nvidia-nccl-cu12, the cu13
// wheels) or conda, and finally the system loader path.
#include <dlfcn.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "dynlib.h"

namespace vsw {
namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
}

const char* env(const char* name) {
  const char* v = getenv(name);
  return (v != nullptr && v[0] != '\0') ? v : nullptr;
}

std::string join(const std::string& dir, const char* name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// Natural order: digit runs compare as numbers, so python3.13 sorts after python3.9.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = a[i] >= '0' && a[i] <= '9', db = b[j] >= '0' && b[j] <= '9';
    if (da && db) {
      size_t i2 = i, j2 = j;
      while (i2 < a.size() && a[i2] >= '0' && a[i2] <= '9') ++i2;
      while (j2 < b.size() && b[j2] >= '0' && b[j2] <= '9') ++j2;
      const unsigned long long x = strtoull(a.substr(i, i2 - i).c_str(), nullptr, 10);
      const unsigned long long y = strtoull(b.substr(j, j2 - j).c_str(), nullptr, 10);
      if (x != y) return x < y;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// Adds every folder matching a glob pattern, newest version first (python3.12 before python3.10), so that
// the order is reproducible and favours the environment most likely in use.
void add_glob(std::vector<std::string>& out, const std::string& pattern) {
  glob_t g;
  memset(&g, 0, sizeof(g));
  if (glob(pattern.c_str(), GLOB_NOSORT | GLOB_ONLYDIR, nullptr, &g) == 0) {
    std::vector<std::string> found;
    for (size_t i = 0; i < g.gl_pathc; ++i) found.emplace_back(g.gl_pathv[i]);
    for (size_t i = 0; i < found.size(); ++i) {
      for (size_t j = i + 1; j < found.size(); ++j) {
        if (natural_less(found[i], found[j])) found[i].swap(found[j]);
      }
    }
    for (const std::string& f : found) out.push_back(f);
  }
  globfree(&g);
}

struct Search {
  const LibrarySpec& spec;
  std::vector<std::string> tried;   // places, in order, for the failure message
  std::vector<std::string> errors;  // loader errors for files that exist but did not load
  void* handle = nullptr;
  std::string path;

  explicit Search(const LibrarySpec& s) : spec(s) {}

  bool seen(const std::string& place) const {
    for (const std::string& t : tried) {
      if (t == place) return true;
    }
    return false;
  }

  // dlopen one candidate file; keeps it only if it exports the probe symbol.
  bool try_file(const std::string& file) {
    dlerror();
    void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = dlerror();
      errors.push_back(file + ": " + (e ? e : "dlopen failed"));
      return false;
    }
    if (spec.probe_symbol != nullptr && dlsym(h, spec.probe_symbol) == nullptr) {
      errors.push_back(file + ": does not export " + spec.probe_symbol);
      dlclose(h);
      return false;
    }
    handle = h;
    path = file;
    return true;
  }

  bool try_dir(const std::string& dir) {
    if (dir.empty() || seen(dir)) return false;
    tried.push_back(dir);
    if (!is_dir(dir)) return false;
    for (int i = 0; i < spec.n_sonames; ++i) {
      std::string f = join(dir, spec.sonames[i]);
      if (is_file(f) && try_file(f)) return true;
    }
    return false;
  }

  bool try_dirs(const std::vector<std::string>& dirs) {
    for (const std::string& d : dirs) {
      if (try_dir(d)) return true;
    }
    return false;
  }

  bool from_env() {
    const char* v = env(spec.env_var);
    if (v == nullptr) {
      tried.push_back(std::string("$") + spec.env_var + " (unset)");
      return false;
    }
    std::string p(v);
    if (is_dir(p)) return try_dir(p);
    tried.push_back(std::string("$") + spec.env_var + "=" + p);
    if (!is_file(p)) {
      errors.push_back(p + ": no such file or folder");
      return false;
    }
    return try_file(p);
  }

  bool from_toolkit() {
    std::vector<std::string> dirs;
    const char* roots[] = {env("CUDA_HOME"), env("CUDA_PATH"), "/usr/local/cuda"};
    for (const char* r : roots) {
      if (r == nullptr) continue;
      dirs.push_back(join(r, "lib64"));
      dirs.push_back(join(r, "lib"));
#if defined(__aarch64__)
      dirs.push_back(join(r, "targets/sbsa-linux/lib"));
#else
      dirs.push_back(join(r, "targets/x86_64-linux/lib"));
#endif
    }
    return try_dirs(dirs);
  }

  bool from_python() {
    // Folders that may hold an `nvidia` package (pip wheels put the libraries in nvidia/<name>/lib).
    std::vector<std::string> roots;
    if (const char* pp = env("PYTHONPATH")) {
      std::string s(pp);
      size_t start = 0;
      while (start <= s.size()) {
        size_t end = s.find(':', start);
        if (end == std::string::npos) end = s.size();
        if (end > start) roots.push_back(s.substr(start, end - start));
        start = end + 1;
      }
    }
    if (const char* venv = env("VIRTUAL_ENV")) add_glob(roots, join(venv, "lib/python3*/site-packages"));
    if (const char* conda = env("CONDA_PREFIX")) add_glob(roots, join(conda, "lib/python3*/site-packages"));
    add_glob(roots, "/usr/local/lib/python3*/dist-packages");
    roots.push_back("/usr/lib/python3/dist-packages");
    if (const char* home = env("HOME")) {
      add_glob(roots, join(home, ".local/lib/python3*/site-packages"));
      add_glob(roots, join(home, ".pyenv/versions/*/lib/python3*/site-packages"));
    }
    add_glob(roots, "/opt/conda/lib/python3*/site-packages");
    add_glob(roots, "/usr/local/lib/python3*/site-packages");

    std::vector<std::string> dirs;
    std::string searched;  // the existing roots, for the message when none holds an nvidia package
    for (const std::string& r : roots) {
      if (!is_dir(r)) continue;
      add_glob(dirs, join(r, "nvidia/*/lib"));
      searched += (searched.empty() ? "" : ", ") + r;
    }
    // Conda packages (nccl, libcublas) install straight into the environment's lib folder.
    if (const char* conda = env("CONDA_PREFIX")) dirs.push_back(join(conda, "lib"));
    if (dirs.empty()) {
      tried.push_back("nvidia/*/lib (none found) under " + (searched.empty() ? std::string("no site-packages") : searched));
      return false;
    }
    return try_dirs(dirs);
  }

  bool from_system() {
    tried.push_back("the system loader path");
    for (int i = 0; i < spec.n_sonames; ++i) {
      if (try_file(spec.sonames[i])) return true;
    }
    return false;
  }
};

}  // namespace

bool open_library(const LibrarySpec& spec, void** handle, char* path, size_t path_len, char* message,
                  size_t message_len) {
  Search s(spec);
  bool ok = s.from_env() || s.from_toolkit() || s.from_python() || s.from_system();
  if (ok) {
    *handle = s.handle;
    if (path != nullptr && path_len > 0) snprintf(path, path_len, "%s", s.path.c_str());
    return true;
  }
  *handle = nullptr;
  std::string msg = std::string("cannot open ") + spec.what + " (";
  for (int i = 0; i < spec.n_sonames; ++i) msg += std::string(i ? ", " : "") + spec.sonames[i];
  msg += "); set " + std::string(spec.env_var) + " to the library file or its folder. Tried: ";
  for (size_t i = 0; i < s.tried.size(); ++i) msg += (i ? ", " : "") + s.tried[i];
  if (!s.errors.empty()) {
    msg += ". Loader errors: ";
    for (size_t i = 0; i < s.errors.size(); ++i) msg += (i ? "; " : "") + s.errors[i];
  }
  msg += ".";
  if (message != nullptr && message_len > 0) {
    if (msg.size() >= message_len && message_len > 4) {
      // Keep the head (what and where) and mark the cut: the start of the list is the useful part.
      msg.resize(message_len - 4);
      msg += "...";
    }
    snprintf(message, message_len, "%s", msg.c_str());
  }
  return false;
}

}  // namespace vsw
