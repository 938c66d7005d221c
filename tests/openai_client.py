"""The official `openai` Python client, unchanged, against `pupil serve` at argv[1].

Run by tests/serve_http.rs (`the_official_openai_client_works`); exits non-zero on the first
mismatch, printing what differed.
"""
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2] if len(sys.argv) > 2 else "none")

# Chat, whole: usage, finish_reason, the same text for the same seed.
chat = dict(model="student", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who made the light?"}])
a = client.chat.completions.create(**chat, max_tokens=12, temperature=0.8, seed=7)
b = client.chat.completions.create(**chat, max_tokens=12, temperature=0.8, seed=7)
assert a.object == "chat.completion", a
assert a.choices[0].message.role == "assistant", a
assert a.choices[0].finish_reason in ("stop", "length"), a
assert a.usage.completion_tokens <= 12 and a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens, a.usage
assert a.choices[0].message.content == b.choices[0].message.content, (a, b)

# Chat, streamed, with the usage chunk: the pieces add up to the whole answer.
g = client.chat.completions.create(**chat, max_tokens=12, temperature=0)
parts, usage, finish = [], None, None
for chunk in client.chat.completions.create(**chat, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}):
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        parts.append(c.delta.content or "")
        finish = c.finish_reason or finish
assert "".join(parts) == g.choices[0].message.content, (parts, g)
assert usage is not None and usage.completion_tokens == g.usage.completion_tokens, usage
assert finish == g.choices[0].finish_reason, finish

# Chat with logprobs.
lp = client.chat.completions.create(**chat, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
content = lp.choices[0].logprobs.content
assert len(content) == lp.usage.completion_tokens and all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content), content

# Completions: stop strings, max_tokens, echo with logprobs (lm-evaluation-harness's loglikelihood).
c = client.completions.create(model="student", prompt="And God said", max_tokens=30, temperature=0, stop=[","])
assert c.object == "text_completion" and "," not in c.choices[0].text and c.choices[0].finish_reason == "stop", c
e = client.completions.create(model="student", prompt="And God said, Let there be light", max_tokens=0, echo=True, logprobs=1, temperature=0)
lps = e.choices[0].logprobs
assert e.choices[0].text == "And God said, Let there be light", e.choices[0].text
assert lps.token_logprobs[0] is None and all(x <= 0 for x in lps.token_logprobs[1:]), lps
assert len(lps.tokens) == e.usage.prompt_tokens, (lps.tokens, e.usage)

# Streamed completion.
s = "".join(ch.choices[0].text for ch in client.completions.create(model="student", prompt="In the beginning", max_tokens=10, temperature=0, stream=True) if ch.choices)
w = client.completions.create(model="student", prompt="In the beginning", max_tokens=10, temperature=0)
assert s == w.choices[0].text, (s, w)

# Models, and an error the client raises as such.
assert [m.id for m in client.models.list().data] == ["student"]
try:
    client.completions.create(model="student", prompt="x", top_p=7)
    raise SystemExit("top_p=7 was accepted")
except openai.BadRequestError as err:
    assert "top_p" in str(err), err
print("ok")
