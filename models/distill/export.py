"""Writes a trained model of the pair (train.py's state dict) as an F32 GGUF file that
llama.cpp and pupil both load: `llama` architecture, byte-level BPE vocabulary with
llama.cpp's `gpt-2` pre-tokenizer. `pupil quantize` makes the committed types from it.

Usage: export.py ROLE OUTDIR OUT.gguf
"""

import json
import sys

import gguf
import numpy as np
import torch

from train import CONFIGS, CTX, EPS, ROPE_BASE, VOCAB, BOS


def vocabulary(tokenizer_json):
    tj = json.load(open(tokenizer_json, encoding="utf-8"))
    vocab = tj["model"]["vocab"]
    tokens = [None] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    special = {t["id"] for t in tj["added_tokens"] if t["special"]}
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    return tokens, types, merges


def main():
    role, out_dir, path = sys.argv[1], sys.argv[2], sys.argv[3]
    c = CONFIGS[role]
    sd = torch.load(f"{out_dir}/{role}.pt")
    tokens, types, merges = vocabulary(f"{out_dir}/tokenizer.json")
    assert len(tokens) == VOCAB

    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"pupil KJV {role}")
    w.add_description(
        f"The {role} of pupil's embedded distilled pair, trained on the King James Version "
        "(Debian bible-kjv-text); recipe in pupil's models/distill/."
    )
    w.add_license("MIT OR Apache-2.0")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(CTX)
    w.add_embedding_length(c["dim"])
    w.add_block_count(c["layers"])
    w.add_feed_forward_length(c["ffn"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_rope_dimension_count(c["dim"] // c["heads"])
    w.add_vocab_size(VOCAB)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(BOS)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def t(name, key):
        w.add_tensor(name, sd[key].float().contiguous().numpy().astype(np.float32))

    t("token_embd.weight", "embed.weight")  # [VOCAB, dim]
    for i in range(c["layers"]):
        p = f"blocks.{i}."
        t(f"blk.{i}.attn_norm.weight", p + "attn_norm")
        t(f"blk.{i}.attn_q.weight", p + "wq.weight")  # [heads*hd, dim]
        t(f"blk.{i}.attn_k.weight", p + "wk.weight")  # [kv*hd, dim]
        t(f"blk.{i}.attn_v.weight", p + "wv.weight")  # [kv*hd, dim]
        t(f"blk.{i}.attn_output.weight", p + "wo.weight")  # [dim, heads*hd]
        t(f"blk.{i}.ffn_norm.weight", p + "ffn_norm")
        t(f"blk.{i}.ffn_gate.weight", p + "w_gate.weight")  # [ffn, dim]
        t(f"blk.{i}.ffn_up.weight", p + "w_up.weight")  # [ffn, dim]
        t(f"blk.{i}.ffn_down.weight", p + "w_down.weight")  # [dim, ffn]
    t("output_norm.weight", "norm")
    t("output.weight", "out.weight")  # [VOCAB, dim]

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
