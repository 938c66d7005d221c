"""Trains the teacher (cross-entropy) or the student (knowledge distillation) of the pair.

The model is the `llama` architecture exactly as llama.cpp computes it, so the weights
export to GGUF without any permutation: RMSNorm, rotary embeddings on adjacent pairs
(ggml's "normal" rope), grouped-query attention, SwiGLU feed-forward, no biases, untied
output matrix.

  train.py teacher OUTDIR            -> OUTDIR/teacher.pt
  train.py student OUTDIR            -> OUTDIR/student.pt (distilled from OUTDIR/teacher.pt)
  train.py control OUTDIR            -> OUTDIR/control.pt (the student's shape and seed, trained
                                        on the text alone: what distillation is measured against)

Everything is seeded; with the same thread count and CPU the run repeats bit for bit.
"""

import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

CONFIGS = {
    # ~13.8M parameters.
    "teacher": dict(dim=384, layers=6, heads=6, kv_heads=6, ffn=1024),
    # ~3.3M parameters: 4.2x smaller.
    "student": dict(dim=192, layers=4, heads=3, kv_heads=3, ffn=512),
}
CONFIGS["control"] = CONFIGS["student"]
TRAIN = {
    "teacher": dict(steps=800, lr=2e-3, seed=1),
    "student": dict(steps=800, lr=3e-3, seed=2),
}
TRAIN["control"] = TRAIN["student"]
SEQ = 256  # training window (tokens, BOS included)
BATCH = 16  # windows per step
CTX = 512  # context length written to the GGUF
VOCAB = 4096
EPS = 1e-5
ROPE_BASE = 10000.0
KD_T = 2.0  # distillation temperature
KD_ALPHA = 0.7  # weight of the soft (KL) term; the rest is cross-entropy on the text
BOS = 0


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, h, kv, hd = c["dim"], c["heads"], c["kv_heads"], c["dim"] // c["heads"]
        self.h, self.kv, self.hd = h, kv, hd
        self.attn_norm = torch.nn.Parameter(torch.ones(d))
        self.wq = torch.nn.Linear(d, h * hd, bias=False)
        self.wk = torch.nn.Linear(d, kv * hd, bias=False)
        self.wv = torch.nn.Linear(d, kv * hd, bias=False)
        self.wo = torch.nn.Linear(h * hd, d, bias=False)
        self.ffn_norm = torch.nn.Parameter(torch.ones(d))
        self.w_gate = torch.nn.Linear(d, c["ffn"], bias=False)
        self.w_up = torch.nn.Linear(d, c["ffn"], bias=False)
        self.w_down = torch.nn.Linear(c["ffn"], d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        y = rms_norm(x, self.attn_norm)
        q = self.wq(y).view(b, t, self.h, self.hd)
        k = self.wk(y).view(b, t, self.kv, self.hd)
        v = self.wv(y).view(b, t, self.kv, self.hd)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, enable_gqa=self.kv != self.h
        )
        x = x + self.wo(a.transpose(1, 2).reshape(b, t, -1))
        y = rms_norm(x, self.ffn_norm)
        return x + self.w_down(F.silu(self.w_gate(y)) * self.w_up(y))


class Llama(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = torch.nn.Embedding(VOCAB, c["dim"])
        self.blocks = torch.nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = torch.nn.Parameter(torch.ones(c["dim"]))
        self.out = torch.nn.Linear(c["dim"], VOCAB, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["layers"]) if name.endswith(("wo.weight", "w_down.weight")) else 0.02
                torch.nn.init.normal_(p, std=std)
        hd = c["dim"] // c["heads"]
        inv = ROPE_BASE ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.outer(torch.arange(CTX, dtype=torch.float64), inv)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, tokens):
        t = tokens.shape[1]
        x = self.embed(tokens)
        for blk in self.blocks:
            x = blk(x, self.cos[:t], self.sin[:t])
        return self.out(rms_norm(x, self.norm))


def rms_norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope(x, cos, sin):
    """Rotates adjacent pairs (x[2i], x[2i+1]) by position * base^(-2i/d), as ggml's normal rope."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


def batches(ids, steps, gen):
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - SEQ, (BATCH,), generator=gen)
        win = torch.stack([ids[s : s + SEQ] for s in starts])
        win[:, 0] = BOS  # every window starts as a document would: with BOS
        yield win[:, :-1], win[:, 1:]


def evaluate(model, ids):
    """Mean cross-entropy over consecutive held-out windows."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids) - SEQ, SEQ):
            win = ids[s : s + SEQ].clone()
            win[0] = BOS
            logits = model(win[None, :-1])
            total += F.cross_entropy(logits[0], win[1:], reduction="sum").item()
            n += SEQ - 1
    model.train()
    return total / n


def main():
    role, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(TRAIN[role]["seed"])
    tok = Tokenizer.from_file(f"{out}/tokenizer.json")
    train_ids = torch.tensor(tok.encode(open(f"{out}/train.txt", encoding="utf-8").read()).ids)
    held_ids = torch.tensor(tok.encode(open(f"{out}/heldout.txt", encoding="utf-8").read()).ids)
    model = Llama(CONFIGS[role])
    print(f"{role}: {sum(p.numel() for p in model.parameters()):,} parameters", file=sys.stderr)
    teacher = None
    if role == "student":
        teacher = Llama(CONFIGS["teacher"])
        teacher.load_state_dict(torch.load(f"{out}/teacher.pt"))
        teacher.eval()
    steps, lr = TRAIN[role]["steps"], TRAIN[role]["lr"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warm = steps // 20
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    )
    gen = torch.Generator().manual_seed(TRAIN[role]["seed"])
    t0 = time.time()
    log = []
    for step, (x, y) in enumerate(batches(train_ids, steps, gen)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        logits = logits.float()
        ce = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss = ce
        if teacher is not None:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                t_logits = teacher(x).float()
            kd = F.kl_div(
                F.log_softmax(logits / KD_T, -1).reshape(-1, VOCAB),
                F.log_softmax(t_logits / KD_T, -1).reshape(-1, VOCAB),
                log_target=True,
                reduction="batchmean",
            ) * (KD_T * KD_T)
            loss = KD_ALPHA * kd + (1 - KD_ALPHA) * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            tok_s = (step + 1) * BATCH * (SEQ - 1) / (time.time() - t0)
            print(f"step {step} loss {loss.item():.3f} ce {ce.item():.3f} ({tok_s:.0f} tok/s)", file=sys.stderr)
        if step % 200 == 199 or step == steps - 1:
            held = evaluate(model, held_ids)
            log.append(dict(step=step + 1, train_loss=loss.item(), heldout_ce=held))
            print(f"  held-out ce {held:.3f} (ppl {math.exp(held):.2f})", file=sys.stderr)
    torch.save(model.state_dict(), f"{out}/{role}.pt")
    json.dump(dict(config=CONFIGS[role], train=TRAIN[role], log=log, seconds=time.time() - t0),
              open(f"{out}/{role}-log.json", "w"), indent=1)


if __name__ == "__main__":
    main()
