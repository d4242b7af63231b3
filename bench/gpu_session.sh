#!/usr/bin/env bash
# Runs on a lent GPU machine after bench/pack_for_device.sh: the CUDA build, the self-test and the
# benchmarks. Writes the figures to bench/results/ and copies everything it printed to $OUT (if set).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/vswift-out}
mkdir -p "$out"
xz -dc .carry/deno.xz > /tmp/deno && chmod +x /tmp/deno
export PATH=/tmp:$PATH
export LD_LIBRARY_PATH=$PWD/.carry/lib:${LD_LIBRARY_PATH:-}
mkdir -p build
# The carried host library is the reference; newer than its sources, so it is not rebuilt.
cp .carry/lib/libvswift_host.so build/ && touch build/libvswift_host.so
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
deno task build:cuda 2>&1 | tee "$out/build_cuda.txt"
deno task doctor "$@" 2>&1 | tee "$out/doctor.txt"
deno task bench:kernels --record 2>&1 | tee "$out/bench_kernels.txt"
deno task bench:step --record 2>&1 | tee "$out/bench_step.txt"
cp bench/results/*.md "$out/" 2>/dev/null
