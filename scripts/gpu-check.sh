#!/usr/bin/env bash
# The whole GPU check of issue 15 as one command, on a machine with an NVIDIA GPU (sm_80 or
# newer, a CUDA 13 driver) and no Rust: run it from the checkout's root after
# scripts/gpu-bundle.sh has built .gpu/ (on any machine) and .gpu/ has been carried here.
#
#   scripts/gpu-check.sh [BUNDLE]      (default .gpu)
#
# It finds CUDA's libraries (the toolkit's, else NVIDIA's pip wheels), then runs every GPU
# op against the CPU reference (cuda_ops), the forward pass against the CPU (gpu_forward),
# and the benchmarks with every block offloaded; each step's log and a results table
# (gpu-check.md) go to $OUT, else BUNDLE/results: five files. Exit status: 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-.gpu}
out=${OUT:-$bundle/results}
mkdir -p "$out"
for f in pupil gpu_forward cuda_ops; do
    [ -x "$bundle/$f" ] || { echo "$bundle/$f is missing: run scripts/gpu-bundle.sh first" >&2; exit 2; }
done

# libnvrtc and libcublas: the toolkit's folders, then every nvidia/*/lib of python's wheels.
dirs=()
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && dirs+=("$d")
done
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
for d in "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib; do
    [ -d "$d" ] && dirs+=("$d")
done
LD_LIBRARY_PATH=$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
# Compiled kernels and the random-weight models go to a scratch folder, not beside the logs.
cache=${TMPDIR:-/tmp}/pupil-gpu-check
export PUPIL_REQUIRE_GPU=1 PUPIL_ROOT=$PWD PUPIL_CUDA_CACHE=$cache/cuda PUPIL_CACHE_DIR=$cache

{
    echo "# pupil GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv 2>&1 | sed 's/^/    /'
    echo
    echo "| step | result | seconds | what it printed |"
    echo "| --- | --- | --- | --- |"
} >"$out/gpu-check.md"

status=0
# step NAME SECONDS PATTERN COMMAND...: runs COMMAND, killed after SECONDS (a hung kernel
# must not eat the rest of a short GPU lease), appending its output to the log of NAME's
# first word (ops, forward, bench, run: few files, for leases that return few); the table
# row quotes the lines matching PATTERN.
step() {
    local name=$1 limit=$2 pattern=$3
    shift 3
    local log="$out/${name%%-*}.log" part
    part=$(mktemp)
    echo "== $name: $*" >&2
    local start end rc
    start=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$part" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "killed after ${limit}s" >>"$part"
    end=$(date +%s.%N)
    { echo "== $name: $*"; cat "$part"; echo; } >>"$log"
    [ $rc -eq 0 ] || status=1
    local said
    said=$(grep -E "$pattern" "$part" | awk '!seen[$0]++' | head -12 | cut -c1-240 | sed 's/|/\\|/g' |
        awk '{ printf "%s%s", (NR > 1 ? "<br>" : ""), $0 }')
    printf '| %s | %s | %.0f | %s |\n' "$name" "$([ $rc -eq 0 ] && echo pass || echo "FAIL ($rc)")" \
        "$(awk "BEGIN { print $end - $start }")" "$said" >>"$out/gpu-check.md"
    tail -3 "$part" >&2
    rm -f "$part"
}

step ops 120 'test result|checks|failures|NVIDIA|Device' "$bundle/cuda_ops" --test-threads=1 --nocapture
step forward 240 'test result|mean KL|greedy|half|replayed|panicked' "$bundle/gpu_forward" --test-threads=1 --nocapture
bench=(bench -p 512 -n 128 -r 3 --gpu-layers 999)
said='pp512|tg128|GPU:|load'
step bench-gemma3-270m 90 "$said" "$bundle/pupil" "${bench[@]}" --synth gemma3-270m:Q4_K_M
step bench-llama-1b 150 "$said" "$bundle/pupil" "${bench[@]}" --synth llama-1b:Q4_K_M
step bench-teacher-f16 60 "$said" "$bundle/pupil" "${bench[@]}" -m models/distill/teacher-f16.gguf
# The same without recorded decode steps (CUDA graphs), and prompts through cuBLAS's GEMM.
step bench-gemma3-270m-no-graphs 60 "$said" env PUPIL_GPU_GRAPHS=0 "$bundle/pupil" "${bench[@]}" --synth gemma3-270m:Q4_K_M
step bench-llama-1b-no-graphs 60 "$said" env PUPIL_GPU_GRAPHS=0 "$bundle/pupil" "${bench[@]}" --synth llama-1b:Q4_K_M
step bench-llama-1b-gemm 60 "$said" env PUPIL_GPU_GEMM=1 "$bundle/pupil" "${bench[@]}" --synth llama-1b:Q4_K_M
# GPU_CHECK_PROFILE=1: each kernel's time in a few decode steps (Nsight Compute), ops queued
# one by one so that each is seen.
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ "${GPU_CHECK_PROFILE:-0}" = 1 ] && [ -n "$ncu" ]; then
    for m in llama-1b-Q4_K_M gemma3-270m-Q4_K_M; do
        step "ncu-$m" 90 'mmvq|attend|rms_norm|quantize|rope|kv_write|add|mul|gelu|silu' env PUPIL_GPU_GRAPHS=0 "$ncu" \
            --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
            "$bundle/pupil" run -m "$cache/synth/$m-v2.gguf" -p "Once upon a time" -n 8 --temp 0 --gpu-layers 999
    done
fi
step run-student 60 'load|t/s|tok/s' "$bundle/pupil" run -m models/distill/student-q4_0.gguf -p "Once upon a time" -n 32 \
    --temp 0 --gpu-layers 999

cat "$out/gpu-check.md"
exit $status
