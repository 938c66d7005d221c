#!/usr/bin/env bash
# pupil against llama.cpp, llama-bench style, with llama.cpp compiled for this CPU.
#
# Why a separate build: llama-cpp-sys-2 compiles ggml for the target features rustc is given
# (GGML_NATIVE off), and ggml picks its kernels at compile time, so a default build's
# llama.cpp does not use this CPU's best instructions (on an AVX-512 machine it reports AVX2
# at most): a comparison against it flatters pupil. `-C target-cpu=native` makes
# ggml build with GGML_NATIVE. The flag applies to pupil as well, but pupil does not depend on
# it: it detects the CPU at run time and dispatches its SIMD kernels (`pupil_kernels::cpu`), so
# its default build runs the same kernels (compare with `pupil bench` from a plain build).
#
# The build goes to its own target dir, so the normal build cache is not invalidated; the
# first run compiles llama.cpp (~8 minutes on 2 cores), later ones are incremental.
#
# Usage: scripts/bench.sh [pupil bench options]   e.g. scripts/bench.sh -r 3 -t 2
#        scripts/bench.sh --synth all -r 3 -t 2     the students' table: Gemma 3 270M,
#        Qwen2.5-0.5B/1.5B and Llama 3.2 1B stand-ins (written once into ~/.cache/pupil/synth)
# With no -m or --synth it measures Gemma 3 270M Q4_K_M, fetched first.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=target/native
RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=native" cargo build --release --features llama --bin pupil
for a in "$@"; do
    case "$a" in
        -m | --model | --model=* | --synth | --synth=*) exec target/native/release/pupil bench --against-llama "$@" ;;
    esac
done
models/fetch-gemma3-270m.sh >&2
exec target/native/release/pupil bench -m models/gemma-3-270m-q4_k_m.gguf --against-llama "$@"
