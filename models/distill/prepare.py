"""Corpus and tokenizer for the embedded distilled pair.

Reads the King James Version text decoded from Debian's `bible-kjv-text` package
(`bible` dumps it, see make.sh), normalises it to one verse per line under chapter
headings, splits it into train and held-out by chapter (every 20th chapter, seeded by
position only, so the split is the same everywhere), and trains a byte-level BPE
tokenizer (GPT-2 pre-tokenizer) on the training part.

Usage: prepare.py RAW.txt OUTDIR VOCAB_SIZE
Writes OUTDIR/train.txt, OUTDIR/heldout.txt, OUTDIR/tokenizer.json.
"""

import re
import sys

from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

SPECIAL = ["<|endoftext|>"]


def chapters(raw: str):
    """Yields (heading, [verse lines]) from `bible`'s output, with wrapped lines joined."""
    heading, verses = None, []
    for line in raw.splitlines():
        if not line.strip():
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            verses.append(f"{m.group(1)} {m.group(2).strip()}")
        elif re.match(r"^[1-3A-Z][A-Za-z ]* \d+$", line.strip()) and not line.startswith(" "):
            if heading is not None:
                yield heading, verses
            heading, verses = line.strip(), []
        else:
            # A wrapped continuation of the previous verse.
            verses[-1] += " " + line.strip()
    if heading is not None:
        yield heading, verses


def main():
    raw_path, out_dir, vocab_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    raw = open(raw_path, encoding="utf-8").read()
    train, held = [], []
    for i, (heading, verses) in enumerate(chapters(raw)):
        block = heading + "\n" + "\n".join(verses) + "\n"
        (held if i % 20 == 19 else train).append(block)
    open(f"{out_dir}/train.txt", "w", encoding="utf-8").write("\n".join(train))
    open(f"{out_dir}/heldout.txt", "w", encoding="utf-8").write("\n".join(held))
    print(f"chapters: {len(train)} train, {len(held)} held out", file=sys.stderr)

    tok = Tokenizer(models.BPE())
    # GPT-2's byte-level pre-tokenizer: llama.cpp's `gpt-2` pre-tokenizer is the same regex.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([f"{out_dir}/train.txt"], trainer)
    tok.save(f"{out_dir}/tokenizer.json")
    n = len(tok.encode(open(f"{out_dir}/train.txt", encoding="utf-8").read()).ids)
    print(f"vocab {tok.get_vocab_size()}, train tokens {n}", file=sys.stderr)


if __name__ == "__main__":
    main()
