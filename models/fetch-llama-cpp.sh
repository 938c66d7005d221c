#!/usr/bin/env bash
# Unpack llama.cpp's tokenizer vocabularies (with their test vectors) and chat templates from
# PyPI's `llama-cpp-python` source distribution, checking the tarball's sha256.
#
# The sdist carries a whole llama.cpp tree under vendor/llama.cpp. What the tests read is
# copied to models/.cache/llama.cpp (git-ignored):
#   LICENSE                              llama.cpp's MIT licence
#   models/ggml-vocab-NAME.gguf[.inp|.out]  tokenizer-only GGUF files and their test vectors
#   models/templates/*.jinja             real models' chat templates
# The tarball itself stays in models/.cache for anything that needs more of the tree.
# Idempotent: a tree unpacked from the same tarball is left alone.
# Usage: models/fetch-llama-cpp.sh [--print-dir]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=0.3.36
sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
cache=$here/.cache
tarball=$cache/llama_cpp_python-$version.tar.gz
out=$cache/llama.cpp
stamp=$out/.source-sha256
py=$(command -v python3 || command -v python)

if [ "${1:-}" = "--print-dir" ]; then
    echo "$out"
    exit 0
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sha" ]; then
    echo "ok: $out (llama-cpp-python $version, sha256 verified)"
    exit 0
fi

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

mkdir -p "$cache"
if ! check "$tarball"; then
    rm -f "$tarball"
    # --no-binary for this package only: `:all:` would build cmake from source just for pip's
    # metadata step. --no-deps: only the tree is wanted, nothing is installed.
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary llama-cpp-python -d "$cache" "llama-cpp-python==$version"
fi
if ! check "$tarball"; then
    echo "error: $tarball has sha256 $(sha256sum "$tarball" | cut -d' ' -f1), expected $sha" >&2
    exit 1
fi

tmp=$(mktemp -d "$cache/llama.cpp.partial.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=llama_cpp_python-$version/vendor/llama.cpp
tar -xzf "$tarball" -C "$tmp" --strip-components=3 --wildcards \
    "$root/LICENSE" "$root/models/ggml-vocab-*" "$root/models/templates/*"
n_vocab=$(find "$tmp/models" -maxdepth 1 -name 'ggml-vocab-*.gguf' | wc -l)
n_tmpl=$(find "$tmp/models/templates" -name '*.jinja' | wc -l)
if [ "$n_vocab" -lt 10 ] || [ "$n_tmpl" -lt 50 ]; then
    echo "error: expected the vocabularies and templates in $tarball, found $n_vocab and $n_tmpl" >&2
    exit 1
fi
echo "$sha" > "$tmp/.source-sha256"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "ok: $out (llama-cpp-python $version: $n_vocab vocabularies, $n_tmpl templates)"
