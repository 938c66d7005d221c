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
# (gpu-check.md) go to $OUT, else BUNDLE/results. Exit status: 0 when every step passed.
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
# step NAME PATTERN COMMAND...: runs COMMAND into NAME.log; the table row quotes the lines
# matching PATTERN.
step() {
    local name=$1 pattern=$2
    shift 2
    echo "== $name: $*" >&2
    local start end rc
    start=$(date +%s.%N)
    "$@" >"$out/$name.log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    [ $rc -eq 0 ] || status=1
    local said
    said=$(grep -E "$pattern" "$out/$name.log" | awk '!seen[$0]++' | head -10 | cut -c1-240 | sed 's/|/\\|/g' |
        awk '{ printf "%s%s", (NR > 1 ? "<br>" : ""), $0 }')
    printf '| %s | %s | %.0f | %s |\n' "$name" "$([ $rc -eq 0 ] && echo pass || echo "FAIL ($rc)")" \
        "$(awk "BEGIN { print $end - $start }")" "$said" >>"$out/gpu-check.md"
    tail -3 "$out/$name.log" >&2
}

step ops 'test result|checks|failures|NVIDIA|Device' "$bundle/cuda_ops" --test-threads=1 --nocapture
step forward 'test result|mean KL|greedy|half' "$bundle/gpu_forward" --test-threads=1 --nocapture
bench=(bench -p 512 -n 128 -r 3 --gpu-layers 999)
step bench-gemma3-270m 'pp512|tg128|GPU:|load' "$bundle/pupil" "${bench[@]}" --synth gemma3-270m:Q4_K_M
step bench-llama-1b 'pp512|tg128|GPU:|load' "$bundle/pupil" "${bench[@]}" --synth llama-1b:Q4_K_M
step bench-teacher-f16 'pp512|tg128|GPU:|load' "$bundle/pupil" "${bench[@]}" -m models/distill/teacher-f16.gguf
step run-student 'load|t/s|tok/s' "$bundle/pupil" run -m models/distill/student-q4_0.gguf -p "Once upon a time" -n 32 \
    --temp 0 --gpu-layers 999

cat "$out/gpu-check.md"
exit $status
