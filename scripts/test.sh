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

# --release: the tests run real models and reference kernels, which need optimised code.
# The `llama` feature builds llama.cpp as the oracle the kernels and the model are checked against.
cargo test --release --workspace --features llama "$@"
