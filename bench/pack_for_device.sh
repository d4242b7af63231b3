#!/usr/bin/env bash
# Prepares a run on a lent GPU machine (which has no Deno, no network and maybe no OpenBLAS): packs the
# Deno binary and the host kernel library with its OpenBLAS into .carry/ (git-ignored). Carry
# node_modules, .carry and build with the command, then run bench/gpu_session.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
./vswift build >/dev/null
.tools/node_modules/deno/deno cache mod.ts tasks/*.ts bench/*.ts >/dev/null
mkdir -p .carry/lib
deno_bin=$(find .tools/node_modules -path '*@deno/linux-x64-glibc/deno' -type f | head -n 1)
[ -n "$deno_bin" ] || deno_bin=.tools/node_modules/deno/deno
xz -T2 -9 -c "$deno_bin" > .carry/deno.xz
cp build/libvswift_host.so .carry/lib/
ldd build/libvswift_host.so | awk '/openblas|gfortran|quadmath/ {print $3}' | xargs -r -I{} cp -L {} .carry/lib/
du -sh .carry node_modules
