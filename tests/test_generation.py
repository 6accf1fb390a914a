"""Decoding (``generation.py``): KV-cached and uncached greedy decoding agree, decoding goes
on past the context, sampling is seeded and filtered (top-k, top-p), a stop token ends it, and
``complete`` returns the new text only, cut at the end of a document. (That it decodes what
transformers' ``generate`` decodes is tested on the exports, tests/test_gpt_hf.py.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny import VARIANTS, random_gpt, tiny
from tokenizers import Tokenizer

from llmworks.generation import EOT, complete, generate, sample


class Scripted(torch.nn.Module):
    """A decoder that "predicts" a fixed script of tokens, one per forward pass."""

    def __init__(self, script: list[int], vocab: int):
        super().__init__()
        self.script, self.vocab, self.calls = script, vocab, 0
        self.config = SimpleNamespace(block_size=64)

    def set_kv_cache(self, batch: int, max_len: int | None = None) -> None:
        pass

    def clear_kv_cache(self) -> None:
        pass

    def forward(self, idx: torch.Tensor, targets=None, input_pos: int = 0):
        logits = torch.zeros(idx.shape[0], idx.shape[1], self.vocab)
        logits[:, -1, self.script[self.calls]] = 1.0
        self.calls += 1
        return logits, None


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_and_uncached_greedy_generation_agree(variant):
    model = tiny(**VARIANTS[variant])
    prompt = torch.randint(0, 97, (2, 5))
    cached = generate(model, prompt, 20, temperature=0.0, use_cache=True)
    uncached = generate(model, prompt, 20, temperature=0.0, use_cache=False)
    assert cached.shape == (2, 25)
    assert torch.equal(cached, uncached)


def test_a_model_trains_after_decoding_and_on_what_it_decoded():
    """Decoding runs under ``torch.inference_mode``; neither what it leaves on the model (the
    rotary table it grew) nor the ids ``generate`` returns may be inference tensors, or the
    next training step could not save them for backward."""
    model = tiny(**VARIANTS["llama_gqa"])
    out = generate(model, torch.zeros(1, 3, dtype=torch.long), 20, temperature=0.0)  # table: 24
    model.train()
    _, loss = model(out[:, :-1], targets=out[:, 1:])
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_generation_past_block_size_keeps_going():
    model = tiny()
    out = generate(model, torch.zeros(1, 4, dtype=torch.long), 60, temperature=0.0)
    assert out.shape == (1, 64)


def test_seeded_sampling_is_reproducible():
    model = tiny(**VARIANTS["llama_gqa"])
    prompt = torch.randint(0, 97, (1, 4))
    runs = [
        generate(
            model,
            prompt,
            16,
            temperature=0.9,
            top_k=20,
            top_p=0.9,
            generator=torch.Generator().manual_seed(7),
        )
        for _ in range(2)
    ]
    other = generate(model, prompt, 16, temperature=0.9, generator=torch.Generator().manual_seed(8))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], other)


def test_stop_token_ends_generation():
    model = tiny()
    prompt = torch.zeros(1, 3, dtype=torch.long)
    greedy = generate(model, prompt, 10, temperature=0.0)
    stop = int(greedy[0, 5])
    out = generate(model, prompt, 10, temperature=0.0, stop_token=stop)
    assert out[0, -1].item() == stop and out.shape[1] <= 6


def test_top_k_and_top_p_filtering():
    logits = torch.tensor([[4.0, 3.0, 2.0, -10.0]])
    g = torch.Generator().manual_seed(0)
    picks = {int(sample(logits, 1.0, top_k=2, generator=g)) for _ in range(200)}
    assert picks == {0, 1}
    picks = {int(sample(logits, 1.0, top_p=0.5, generator=g)) for _ in range(200)}
    assert picks == {0}
    assert int(sample(logits, 0.0)) == 0


def test_complete_is_greedy_or_seeded(bpe_json: Path) -> None:
    tok = Tokenizer.from_file(str(bpe_json))
    model = random_gpt(vocab=tok.get_vocab_size())
    eot = tok.token_to_id(EOT)
    with torch.no_grad():  # keep EOT out of the way for this part
        model.lm_head.weight[eot] = 0.0
        model.wte.weight[eot] = 0.0
    prompt = "The cat"
    ids = tok.encode(prompt).ids
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    greedy = complete(model, tok, prompt, 12)
    assert greedy == tok.decode(ids[len(tok.encode(prompt).ids) :])

    a = complete(model, tok, prompt, 30, temperature=1.0, seed=1)
    b = complete(model, tok, prompt, 30, temperature=1.0, seed=1)
    c = complete(model, tok, prompt, 30, temperature=1.0, seed=2)
    assert a == b and a != c


def test_complete_cuts_at_end_of_text(bpe_json: Path) -> None:
    """Text after ``<|endoftext|>`` belongs to another document: it is never returned."""
    tok = Tokenizer.from_file(str(bpe_json))
    eot = tok.token_to_id(EOT)
    cat, dog = tok.encode(" cat").ids, tok.encode(" dog").ids

    assert complete(Scripted(cat + [eot] + dog, tok.get_vocab_size()), tok, "The", 10) == " cat"


def test_top_k_0_is_off_and_top_p_0_keeps_the_top_token_as_in_transformers():
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.tensor([[4.0, 3.0, 2.0, -10.0]])
    g = torch.Generator().manual_seed(0)
    unfiltered = {int(sample(logits, 1.0, generator=g)) for _ in range(300)}
    assert {int(sample(logits, 1.0, top_k=0, generator=g)) for _ in range(300)} == unfiltered
    kept = TopPLogitsWarper(0.0)(None, logits.clone()).isfinite()
    assert kept.tolist() == [[True, False, False, False]]
    assert {int(sample(logits, 1.0, top_p=0.0, generator=g)) for _ in range(50)} == {0}


def test_a_prompt_longer_than_the_context_is_kept_in_part_with_a_warning(
    bpe_json: Path, tmp_path: Path
) -> None:
    import shutil

    from conftest import run_stage

    model = tmp_path / "gpt"
    random_gpt(Tokenizer.from_file(str(bpe_json)).get_vocab_size()).save(model)  # context 64
    shutil.copy(bpe_json, model / "tokenizer.json")
    prompt = " ".join(f"word{i}" for i in range(80))
    n = len(Tokenizer.from_file(str(bpe_json)).encode(prompt).ids)
    assert n > 64
    proc = run_stage("generate", f"checkpoint={model}", f"prompt='{prompt}'",
                     "max_new_tokens=3", "logger=none", f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        f"the prompt is {n} tokens, longer than the model's context of 64: kept its last 64 "
        f"({n - 64} dropped from the start)"
    ) in proc.stdout + proc.stderr
