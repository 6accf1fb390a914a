"""Stage 2 — train each configured tokenizer on the train split (or fetch a published one,
``type: pretrained``) and measure it on validation."""

from __future__ import annotations

import dataclasses
import logging
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from typing import Any

import datasets
from omegaconf import DictConfig
from tokenizers import Tokenizer

from llmworks.config import typed
from llmworks.corpus.prepare import load_corpus
from llmworks.errors import LlmworksError
from llmworks.io import scratch_dir, write_json
from llmworks.paths import Paths
from llmworks.tokenization.build import TokenizerSpec, add_bert_framing, build_tokenizer
from llmworks.tokenization.pinned import pinned_symbols, unpin, word_counts
from llmworks.tokenization.pretrained import PretrainedSpec, fetch, unk_token
from llmworks.tokenization.sample import training_sample
from llmworks.tokenization.unigram import train_unigram
from llmworks.tracking.lineage import log_lineage
from llmworks.tracking.runs import job_type, log_metrics, wandb_run
from llmworks.words import count_words

log = logging.getLogger(__name__)


def selected_tokenizers(cfg: DictConfig) -> list[str]:
    """The tokenizers a stage should handle: ``+only=<name>`` (how DVC runs one stage
    instance per tokenizer) or every tokenizer the experiment lists."""
    names = list(cfg.tokenizers)
    only = cfg.get("only")
    if only is None:
        return names
    wanted = [only] if isinstance(only, str) else list(only)
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise LlmworksError(f"only={unknown} names no configured tokenizer (have {names})")
    return wanted


Spec = TokenizerSpec | PretrainedSpec


def spec_from_config(node: DictConfig, name: str) -> Spec:
    """The typed spec of ``tokenizers.<name>``: trained, or published (``type: pretrained``)."""
    cls = PretrainedSpec if node.get("type") == "pretrained" else TokenizerSpec
    return typed(cls, node, f"tokenizers.{name}")


def make_tokenizer(spec: Spec, name: str, train: datasets.Dataset) -> Tokenizer:
    """Train the tokenizer a spec describes, or fetch the published one it names."""
    if isinstance(spec, PretrainedSpec):
        return fetch(spec, f"tokenizers.{name}")
    return train_tokenizer(spec, train)


def batch_iterator(split: datasets.Dataset, batch_size: int = 1000) -> Iterator[list[str]]:
    """Texts in batches straight from the Arrow table: the corpus is never one big string."""
    for start in range(0, len(split), batch_size):
        yield split[start : start + batch_size]["text"]


def latin_share(texts: Iterator[list[str]]) -> float:
    """The share of letters that are Latin (ASCII or accented Latin) in ``texts``."""
    chars: Counter[str] = Counter()
    for batch in texts:
        for text in batch:
            chars.update(text)
    letters = {ch: n for ch, n in chars.items() if ch.isalpha()}
    latin = sum(n for ch, n in letters.items() if unicodedata.name(ch, "").startswith("LATIN"))
    return latin / max(1, sum(letters.values()))


def resolve_strip_accents(spec: TokenizerSpec, train: datasets.Dataset) -> TokenizerSpec:
    """``strip_accents=auto``: strip, as lower-cased BERT does, when at least 90% of the
    train split's letters are Latin; keep accents otherwise, where stripping would change
    words (Russian й -> и). The decision is logged and stored in tokenizer.json."""
    if spec.type != "wordpiece" or spec.strip_accents != "auto":
        return spec
    share = latin_share(batch_iterator(train))
    strip = share >= 0.9
    log.info(
        "wordpiece: %.0f%% of the letters are Latin: %s accents (strip_accents=auto)",
        100 * share,
        "stripping" if strip else "keeping",
    )
    return dataclasses.replace(spec, strip_accents=strip)


def train_tokenizer(spec: TokenizerSpec, train: datasets.Dataset) -> Tokenizer:
    """Train one tokenizer; refuse a vocabulary that cannot hold the alphabet. Each trains
    the same twice: WordPiece starts from symbols fixed in advance (pinned.py), Unigram is
    trained by SentencePiece on one thread (unigram.py)."""
    spec = resolve_strip_accents(spec, train)
    if spec.type == "unigram":
        tok, _ = build_tokenizer(spec)
        counts = word_counts(tok, batch_iterator(train))
        tok = train_unigram(tok, counts, spec.vocab_size, list(spec.special_tokens), spec.unk_token)
    else:
        tok = _train_with_rust_trainer(spec, train)
    tok = _checked_size(tok, spec)
    if spec.bert_framing:
        add_bert_framing(tok)
    return tok


def _train_with_rust_trainer(spec: TokenizerSpec, train: datasets.Dataset) -> Tokenizer:
    """BPE and WordPiece, trained by ``tokenizers``' own trainers."""
    tok, trainer = build_tokenizer(spec)
    pinned = None
    if spec.type == "wordpiece":
        pinned = pinned_symbols(word_counts(tok, batch_iterator(train)), spec.limit_alphabet)
        tok, trainer = build_tokenizer(spec, pinned)
    try:
        tok.train_from_iterator(batch_iterator(train), trainer=trainer, length=len(train))
    except Exception as exc:  # the Rust trainer reports a too-small vocabulary as a bare Exception
        if "not large enough" in str(exc):
            raise LlmworksError(
                f"vocab_size={spec.vocab_size} is too small for the {spec.type} tokenizer: {exc}; "
                "raise vocab_size"
            ) from exc
        raise
    return unpin(tok, pinned) if pinned is not None else tok


def _checked_size(tok: Tokenizer, spec: TokenizerSpec) -> Tokenizer:
    """Refuse a vocabulary over ``vocab_size`` (the alphabet did not fit); warn when the
    corpus held fewer entries worth keeping."""
    got = tok.get_vocab_size()
    if got > spec.vocab_size:
        raise LlmworksError(
            f"vocab_size={spec.vocab_size} is smaller than the alphabet of the corpus plus "
            f"special tokens ({got} symbols are needed before any merge); raise vocab_size"
        )
    if got < spec.vocab_size:
        log.warning(
            "%s tokenizer: %d entries, fewer than vocab_size=%d: the corpus holds no more "
            "merges or pieces worth keeping",
            spec.type,
            got,
            spec.vocab_size,
        )
    return tok


def tokenizer_stats(tok: Tokenizer, texts: datasets.Dataset, spec: Spec) -> dict[str, Any]:
    """Compression and coverage on held-out text, comparable across tokenizer types."""
    unk = unk_token(tok) if isinstance(spec, PretrainedSpec) else spec.unk_token
    unk_id = tok.token_to_id(unk) if unk is not None else None
    n_tokens = n_bytes = n_words = n_unk = 0
    used: set[int] = set()
    for batch in batch_iterator(texts):
        for text, enc in zip(batch, tok.encode_batch(batch, add_special_tokens=False), strict=True):
            ids = enc.ids
            n_tokens += len(ids)
            n_bytes += len(text.encode("utf-8"))
            n_words += count_words(text)
            n_unk += sum(1 for i in ids if i == unk_id)
            used.update(ids)
    vocab = tok.get_vocab_size()
    return {
        "type": spec.type,
        "vocab_size": vocab,
        "tokens": n_tokens,
        "bytes_per_token": n_bytes / max(n_tokens, 1),
        "tokens_per_word": n_tokens / max(n_words, 1),
        "unk_rate": n_unk / max(n_tokens, 1),
        "vocab_used": len(used) / vocab,
    }


def tokenizer_stage(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Train the selected tokenizers, save ``tokenizer.json`` + stats for each."""
    paths = Paths.from_config(cfg)
    corpus = load_corpus(paths)
    results = {}
    for name in selected_tokenizers(cfg):
        spec = spec_from_config(cfg.tokenizers[name], name)
        start = time.perf_counter()
        train = corpus["train"]
        if isinstance(spec, TokenizerSpec):
            train = training_sample(
                train, spec.train_bytes, int(cfg.seed), f"tokenizers.{name}.train_bytes"
            )
        tok = make_tokenizer(spec, name, train)
        seconds = time.perf_counter() - start
        stats = tokenizer_stats(tok, corpus["validation"], spec)
        stats["train_seconds"] = round(seconds, 3)
        out = paths.tokenizer_dir(name)
        out.mkdir(parents=True, exist_ok=True)
        with scratch_dir(out, "tokenizer") as tmp:
            staged = tmp / paths.tokenizer(name).name
            tok.save(str(staged))
            staged.replace(paths.tokenizer(name))
        write_json(paths.tokenizer_stats(name), stats)
        with wandb_run(cfg, job_type(f"train_tokenizer@{name}")) as run:
            log_metrics(run, stats, prefix=f"tokenizer/{name}/")
            log_lineage(
                run,
                cfg,
                {"corpus": ("dataset", paths.corpus_dataset)},
                {f"tokenizer-{name}": ("tokenizer", paths.tokenizer(name))},
                {"tokenizer": spec.type, "vocab_size": stats["vocab_size"]}
                | ({"name": spec.name} if isinstance(spec, PretrainedSpec) else {}),
            )
        log.info("tokenizer %s: %s", name, stats)
        results[name] = stats
    return results
