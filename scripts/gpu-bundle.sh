#!/usr/bin/env bash
# Builds, on a development machine, what scripts/gpu-check.sh runs on a GPU machine that has
# no Rust toolchain and no network: the `pupil` binary and the GPU test binaries, with the
# `cuda` feature, without llama.cpp or debug info, stripped, into .gpu/ (git-ignored). Carry
# that folder to the GPU machine beside the checkout and run scripts/gpu-check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.gpu
mkdir -p "$dir"
export CARGO_TARGET_DIR=target/gpu CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true

# `cargo test --no-run` prints `Executable tests/x.rs (target/.../x-hash)`: take the path.
test_binary() {
    cargo test --release "$@" --no-run 2>&1 | tee /dev/stderr | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1
}

cargo build --release --features cuda --bin pupil
cp "$CARGO_TARGET_DIR/release/pupil" "$dir/pupil"
cp "$(test_binary --features cuda --test gpu_forward)" "$dir/gpu_forward"
cp "$(test_binary -p pupil-kernels --features cuda --test cuda_ops)" "$dir/cuda_ops"
ls -l "$dir"
du -sh "$dir"
