#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the llama.cpp oracle needs to build
# (cmake, libclang for bindgen) and HAProxy (the server's scale-out test), fetches the test
# model, llama.cpp's vocabularies and templates and the openai client, then runs every test
# optimised.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null || need+=(libclang-dev)
# The server's scale-out test runs two replicas behind HAProxy.
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

models/fetch-gemma3-270m.sh
models/fetch-llama-cpp.sh

# The official OpenAI Python client, which the server's tests drive unchanged.
venv=models/.cache/venv
if ! "$venv/bin/python" -c "import openai" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "openai==3.57.0"
fi

# NVRTC, to compile every CUDA kernel for sm_80 and sm_90 (no GPU needed): NVIDIA's wheel,
# pinned to 13.0, whose output a CUDA 13.0 driver loads. The tests must find it, not skip.
nvrtc=models/.cache/nvrtc
if [ ! -e "$nvrtc/nvidia/cu13/lib/libnvrtc.so.13" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$nvrtc" "nvidia-cuda-nvrtc==13.0.88"
fi
export LD_LIBRARY_PATH="$PWD/$nvrtc/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PUPIL_REQUIRE_NVRTC=1

# --release: the tests run real models and reference kernels, which need optimised code.
# The `llama` feature builds llama.cpp as the oracle the kernels and the model are checked against;
# `cuda` builds the GPU path (no CUDA needed to build it; its GPU tests skip without a GPU).
cargo test --release --workspace --features llama,cuda "$@"
