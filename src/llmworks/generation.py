"""Decoding: text from any causal LM that has a KV cache, streamed token by token.

A model decodes here when it has ``config.block_size``, ``set_kv_cache(batch)`` /
``clear_kv_cache()`` and ``forward(idx, input_pos=...) -> (logits, _)`` (our GPT, whatever
its architecture). ``stream`` prefills the prompt once and then feeds one new token per step
against the cache; ``sample`` picks a token (greedy, temperature, top-k, top-p) and
``penalize_repetition`` applies the repetition controls exactly as ``transformers``'
``generate`` does, so the two decode the same text from the same weights.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, Protocol

import torch
from tokenizers import Tokenizer
from torch import nn

EOT = "<|endoftext|>"


class Decoder(Protocol):
    """What decoding needs of a model."""

    config: Any  # with block_size

    def __call__(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, input_pos: int = 0
    ) -> tuple[torch.Tensor, Any]: ...

    def set_kv_cache(self, batch: int, max_len: int | None = None) -> None: ...

    def clear_kv_cache(self) -> None: ...


@torch.inference_mode()  # no autograd bookkeeping at all: a decode step is a few hundred tiny ops
def stream(
    model: Decoder,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_token: int | Collection[int] | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
) -> Iterator[torch.Tensor]:
    """Yield the next ``(B, 1)`` token ids one at a time; see ``generate``. They are
    inference tensors (read them; ``.clone()`` one to write into it or to train on it)."""
    block_size = model.config.block_size
    context = idx[:, -block_size:]
    history = idx  # prompt + everything generated: what the repetition constraints read
    track = repetition_penalty != 1.0 or no_repeat_ngram_size > 0
    stops = _stop_ids(stop_token, idx.device)
    done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    # the cache holds what this call can reach, not the model's whole context (which may be
    # 128k positions: gigabytes of cache for a short answer)
    cache_len = min(block_size, context.shape[1] + max_new_tokens)
    if use_cache:
        model.set_kv_cache(idx.shape[0], cache_len)
    try:
        logits, _ = model(context)  # prefill: the whole prompt in one pass
        for _ in range(max_new_tokens):
            last = logits[:, -1]
            if track:
                last = penalize_repetition(
                    last.float(), history, repetition_penalty, no_repeat_ngram_size
                )
            nxt = sample(last, temperature, top_k, top_p, generator)
            if stops is not None:  # finished rows keep emitting the (first) stop token
                nxt = torch.where(done[:, None], torch.full_like(nxt, int(stops[0])), nxt)
                done |= torch.isin(nxt[:, 0], stops)
            yield nxt
            if stops is not None and bool(done.all()):
                return
            if track:
                history = torch.cat([history, nxt], dim=1)
            context = torch.cat([context, nxt], dim=1)
            if not use_cache:
                context = context[:, -block_size:]
                logits, _ = model(context)
            elif context.shape[1] <= cache_len:  # decode: one new token, cached past
                logits, _ = model(nxt, input_pos=context.shape[1] - 1)
            else:  # context full: keep the last half of the window and prefill again
                context = context[:, -block_size // 2 :]
                logits, _ = model(context)
    finally:
        if use_cache:
            model.clear_kv_cache()


@torch.no_grad()  # not inference_mode: what it returns is an ordinary tensor (see stream)
def generate(model: Decoder, idx: torch.Tensor, max_new_tokens: int, **kwargs: Any) -> torch.Tensor:
    """Continue ``idx`` ``(B, T)`` by up to ``max_new_tokens`` tokens and return the whole
    sequence. ``temperature=0`` is greedy; otherwise sample after ``top_k`` / ``top_p``
    (nucleus) filtering, reproducibly when a seeded ``generator`` is given.
    ``repetition_penalty`` and ``no_repeat_ngram_size`` act as Hugging Face's ``generate``
    arguments of those names (see ``penalize_repetition``). Stops early
    once every row has produced ``stop_token`` (an id, or a collection of ids: an
    instruction-tuned model may end its turn with any of several). With ``use_cache`` (the default) the
    prompt is encoded once and each step feeds only the new token. ``model`` may be
    ``torch.compile(model, dynamic=True)``: the same tokens, a step about twice as fast on a
    CPU, after seconds of compiling (bench/README.md, "KV-cached decoding")."""
    new = list(stream(model, idx, max_new_tokens, **kwargs))
    return torch.cat([idx, *new], dim=1)


def _stop_ids(stop: int | Collection[int] | None, device: torch.device) -> torch.Tensor | None:
    if stop is None:
        return None
    ids = [stop] if isinstance(stop, int) else list(stop)
    return torch.tensor(ids, dtype=torch.long, device=device) if ids else None


def penalize_repetition(
    logits: torch.Tensor, history: torch.Tensor, penalty: float, ngram: int
) -> torch.Tensor:
    """``logits`` ``(B, vocab)`` of the next token after ``history`` ``(B, L)``, with two
    classic cures for a small model's loops, as ``transformers`` applies them:
    ``penalty`` > 1 shrinks the logit of every token already in ``history`` (divided when
    positive, multiplied when negative: CTRL, Keskar et al. 2019); ``ngram`` > 0 forbids any
    token that would repeat an ``ngram``-gram already in ``history``. 1.0 and 0 change nothing."""
    if penalty != 1.0:
        seen = logits.gather(1, history)
        logits = logits.scatter(1, history, torch.where(seen < 0, seen * penalty, seen / penalty))
    if ngram > 0 and history.shape[1] >= ngram:
        grams = history.unfold(1, ngram, 1)  # (B, L - ngram + 1, ngram)
        prefix = history[:, history.shape[1] - ngram + 1 :]  # what the next token would extend
        repeats = (grams[:, :, :-1] == prefix[:, None, :]).all(dim=-1)  # (B, L - ngram + 1)
        banned = torch.zeros_like(logits, dtype=torch.bool)
        rows, at = repeats.nonzero(as_tuple=True)
        banned[rows, grams[rows, at, -1]] = True
        logits = logits.masked_fill(banned, float("-inf"))
    return logits


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` ``(B, vocab)``: argmax at temperature 0, else sample."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:  # 0 or None: off, as in transformers
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already reach top_p (the top one always stays)
        drop_sorted = cum - sorted_logits.softmax(dim=-1) >= top_p
        drop_sorted[..., 0] = False  # top_p=0 keeps the top token only (transformers' meaning)
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)


def complete(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
) -> str:
    """The continuation of ``prompt`` (new text only), cut at the end-of-text token.

    ``temperature=0`` is greedy; otherwise sampling is seeded, so the same model, prompt and
    seed always give the same text on the same kind of device (the evaluation's fixed
    samples; CPU and CUDA draw from different random streams)."""
    eot = tokenizer.token_to_id(EOT)
    ids = tokenizer.encode(prompt).ids or [eot]
    weight = next(model.parameters(), None)
    device = weight.device if weight is not None else torch.device("cpu")
    out = generate(
        model.eval(),
        torch.tensor([ids], device=device),
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop_token=eot,
        generator=torch.Generator(device).manual_seed(seed),
        repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
    )[0, len(ids) :].tolist()
    if eot is not None and eot in out:
        out = out[: out.index(eot)]
    return tokenizer.decode(out)
