/**
 * Compiles cuda/gpu/enum_check.cpp against the real cuBLASLt and NCCL headers when they can be found
 * (CUDA toolkit, or NVIDIA's pip wheels under Python's site-packages), so our hand-written declarations
 * are checked wherever the headers exist.
 */
const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

async function sitePackages(): Promise<string[]> {
  try {
    const out = await new Deno.Command("python3", {
      args: [
        "-c",
        "import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))",
      ],
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim());
  } catch {
    return [];
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Folders that hold `header`, in search order. */
async function findHeader(header: string): Promise<{ dir?: string; tried: string[] }> {
  const dirs = [Deno.env.get("CUDA_HOME"), Deno.env.get("CUDA_PATH"), "/usr/local/cuda"]
    .filter((d): d is string => !!d)
    .map((d) => `${d}/include`);
  dirs.push("/usr/include");
  for (const sp of await sitePackages()) {
    try {
      for (const e of Deno.readDirSync(`${sp}/nvidia`)) {
        if (e.isDirectory) dirs.push(`${sp}/nvidia/${e.name}/include`);
      }
    } catch {
      // no NVIDIA wheels in this site-packages
    }
  }
  for (const d of dirs) if (exists(`${d}/${header}`)) return { dir: d, tried: dirs };
  return { tried: dirs };
}

/** Result lines: "ok ...", "FAIL ..." or "skipped ...". */
export async function checkHeaders(): Promise<string[]> {
  const source = `${ROOT}cuda/gpu/enum_check.cpp`;
  if (!exists(source)) return [`FAIL ${source} is missing`];
  const lt = await findHeader("cublasLt.h");
  const nccl = await findHeader("nccl.h");
  if (!lt.dir || !nccl.dir) {
    const missing = [!lt.dir && "cublasLt.h", !nccl.dir && "nccl.h"].filter(Boolean).join(" and ");
    return [`skipped: ${missing} not found (looked in ${(lt.dir ? nccl : lt).tried.join(", ")})`];
  }
  const nvcc = exists("/usr/local/cuda/bin/nvcc") ? "/usr/local/cuda/bin/nvcc" : "nvcc";
  const args = [
    "-std=c++17",
    "-DVS_REAL_HEADERS",
    `-I${lt.dir}`,
    `-I${nccl.dir}`,
    "-c",
    source,
    "-o",
    "/dev/null",
  ];
  const out = await new Deno.Command(nvcc, { args, stdout: "piped", stderr: "piped" }).output();
  if (out.success) {
    return [`ok   enum values and struct sizes match ${lt.dir}/cublasLt.h and ${nccl.dir}/nccl.h`];
  }
  const log = new TextDecoder().decode(out.stderr).trim();
  return [`FAIL our declarations differ from the real headers:\n${log}`];
}
