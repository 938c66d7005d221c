#!/usr/bin/env bash
# Rebuilds the embedded distilled pair from scratch: corpus -> tokenizer -> teacher ->
# student (knowledge distillation) -> GGUF -> pupil quantize. See README.md here.
#
#   models/distill/make.sh [WORKDIR]     (default WORKDIR: models/distill/.work, git-ignored)
#
# Needs: python3 (3.11) with venv and pip reaching PyPI, apt-get reaching Debian, cargo.
# Takes about an hour on 2 CPU cores (teacher ~30 min, student ~17 min, control ~10 min). Every step is seeded; outputs are bit-identical
# when rerun on the same CPU with the same thread count (PyTorch's CPU kernels may round
# differently on another CPU, so the sha256 sums in SHA256SUMS are this recipe's run, not
# a promise for every machine).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$here/.work}"
mkdir -p "$work"
cd "$work"

# 1. Tools, pinned.
if [ ! -x venv/bin/python ]; then
    python3 -m venv venv
    venv/bin/pip install -q torch==2.15.0 tokenizers==0.23.3 gguf==0.19.0 numpy
fi
py=venv/bin/python

# 2. Corpus: the King James Version (public domain) from Debian's bible-kjv-text, decoded by
#    the `bible` program of bible-kjv (same source package, 4.38).
if [ ! -s kjv.txt ]; then
    apt-get download bible-kjv=4.38 bible-kjv-text=4.38
    for deb in bible-kjv_4.38_*.deb bible-kjv-text_4.38_all.deb; do dpkg-deb -x "$deb" deb; done
    deb/usr/bin/bible -p deb/usr/lib "gen1:1-rev22:21" > kjv.txt
fi

# 3. Train / held-out split and the tokenizer (4096 tokens, byte-level BPE).
[ -s tokenizer.json ] || "$py" "$here/prepare.py" kjv.txt . 4096

# 4. Teacher (cross-entropy), then student (distilled from the teacher's logits).
export PYTHONPATH="$here"
[ -s teacher.pt ] || "$py" "$here/train.py" teacher .
[ -s student.pt ] || "$py" "$here/train.py" student .
# The control: the student's shape, seed and batches, trained on the text alone.
[ -s control.pt ] || "$py" "$here/train.py" control .

# 5. GGUF (F32), then the committed types with pupil's own quantizer.
"$py" "$here/export.py" teacher . teacher-f32.gguf
"$py" "$here/export.py" student . student-f32.gguf
"$py" "$here/export.py" control . control-f32.gguf
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
pupil="$root/target/release/pupil"
"$pupil" quantize teacher-f32.gguf "$here/teacher-f16.gguf" F16
"$pupil" quantize student-f32.gguf "$here/student-q8_0.gguf" Q8_0
"$pupil" quantize student-f32.gguf "$here/student-q4_0.gguf" Q4_0
"$pupil" quantize control-f32.gguf "$here/control-q4_0.gguf" Q4_0
cp heldout.txt "$here/heldout.txt"
cp teacher-log.json student-log.json control-log.json "$here/"
(cd "$here" && sha256sum teacher-f16.gguf student-q8_0.gguf student-q4_0.gguf control-q4_0.gguf heldout.txt)

# 6. What distillation bought: the distilled student and the control against the teacher.
"$pupil" compare --teacher "$here/teacher-f16.gguf" --student "$here/student-q4_0.gguf" --text heldout.txt --md
"$pupil" compare --teacher "$here/teacher-f16.gguf" --student "$here/control-q4_0.gguf" --text heldout.txt --md
# 7. The sequence level: each model writes, both grade (README.md, "Sequence level").
for s in student-q4_0 student-q8_0 control-q4_0; do
    "$pupil" compare --generate --teacher "$here/teacher-f16.gguf" --student "$here/$s.gguf" --text heldout.txt --md
done
