"""Stage 3 — tokenize each split once into flat, memory-mappable token shards.

Training stages then read windows straight from disk and never re-tokenize. The format is
described in :mod:`llmworks.data.shards`.

Documents stream through in batches of at most ``encode.batch_size`` documents and
``encode.batch_bytes`` of text: each batch is encoded by the tokenizer's own threads (Rust; ``RAYON_NUM_THREADS`` caps them) and appended to the split's
``.bin`` file, so memory stays bounded by one batch whatever the corpus size, and no worker
process exists that could outlive a killed stage. With ``data.backend=litdata`` the training
split is also written as litdata chunks (``llmworks.data.streaming``), from the finished
``.bin``, before the new shards replace the old ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from omegaconf import DictConfig
from tokenizers import Tokenizer

from llmworks.config import typed
from llmworks.corpus.prepare import load_corpus
from llmworks.data.backend import CHUNKS_DIR, TRAIN, data_config
from llmworks.data.shards import META_FILE, SPLITS, dtype_for_vocab, tokenizer_hash
from llmworks.domains import positive
from llmworks.errors import LlmworksError
from llmworks.io import replace_dir, scratch_dir, write_json
from llmworks.paths import Paths
from llmworks.tokenization.files import read_tokenizer
from llmworks.tokenization.train import selected_tokenizers
from llmworks.tracking.lineage import log_lineage
from llmworks.tracking.runs import job_type, log_metrics, wandb_run
from llmworks.words import count_words

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 30.0  # a log line at most this often on a long split


READ_DOCS = 64  # documents read from Arrow at a time while a batch fills


@dataclass(frozen=True)
class EncodeConfig:
    """The ``encode`` section: at most ``batch_size`` documents and ``batch_bytes`` of text
    per batch the tokenizer encodes at once."""

    batch_size: int
    batch_bytes: int

    def __post_init__(self) -> None:
        for name in ("batch_size", "batch_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}={value!r}: expected a whole number")
        positive(batch_size=self.batch_size, batch_bytes=self.batch_bytes)


def text_batches(
    split: datasets.Dataset, batch_size: int, batch_bytes: int
) -> Iterator[tuple[list[str], int]]:
    """The split's texts in order, in batches of at most ``batch_size`` documents and, unless
    one document is larger, ``batch_bytes`` of UTF-8 (with each batch's byte count). The byte
    cap is what bounds memory: the tokenizer holds ~100 bytes per token of a batch (strings,
    offsets, masks) until it returns, and documents range from a line to a book."""
    texts: list[str] = []
    size = 0
    for start in range(0, len(split), READ_DOCS):
        for text in split[start : start + READ_DOCS]["text"]:
            n = len(text.encode("utf-8"))
            if texts and (len(texts) == batch_size or size + n > batch_bytes):
                yield texts, size
                texts, size = [], 0
            texts.append(text)
            size += n
    if texts:
        yield texts, size


def encode_split(
    split: datasets.Dataset,
    tokenizer: Tokenizer,
    separator_id: int,
    out_bin: Path,
    dtype: np.dtype,
    batch_size: int,
    batch_bytes: int,
) -> dict[str, Any]:
    """Tokenize one split into ``out_bin`` (each document followed by ``separator_id``) and
    its ``.offsets.npy``; returns the split's token, document, byte and word counts."""
    offsets = [np.zeros(1, dtype=np.int64)]
    n_tokens = n_bytes = n_words = n_docs = 0
    last_report = time.monotonic()
    with out_bin.open("wb") as f:
        for texts, size in text_batches(split, batch_size, batch_bytes):
            # _fast: the same ids without character offsets, which nothing here reads
            encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            lengths = np.fromiter((len(e.ids) + 1 for e in encodings), np.int64, len(encodings))
            ids = np.empty(int(lengths.sum()), dtype=dtype)
            ends = np.cumsum(lengths)
            for enc, end, length in zip(encodings, ends, lengths, strict=True):
                ids[end - length : end - 1] = enc.ids
                ids[end - 1] = separator_id
            f.write(ids.tobytes())
            offsets.append(n_tokens + ends)
            n_tokens += len(ids)
            n_bytes += size
            n_words += sum(count_words(t) for t in texts)
            n_docs += len(texts)
            if time.monotonic() - last_report > PROGRESS_SECONDS:
                log.info("encode %s: %d / %d documents", out_bin.stem, n_docs, len(split))
                last_report = time.monotonic()
    np.save(out_bin.with_suffix(".offsets.npy"), np.concatenate(offsets))
    return {"tokens": n_tokens, "docs": len(split), "bytes": n_bytes, "words": n_words}


def encode_corpus(
    corpus: datasets.DatasetDict,
    tokenizer_json: Path,
    out_dir: Path,
    eot_token: str,
    batch_size: int,
    batch_bytes: int,
    chunk_tokens: int | None = None,
) -> dict[str, Any]:
    """Encode every split into ``out_dir``; the old shards stay until the new ones are done.
    With ``chunk_tokens``, the training split is also written as litdata chunks of that many
    tokens (``out_dir/litdata/train``)."""
    tok = read_tokenizer(tokenizer_json)
    separator_id = tok.token_to_id(eot_token)
    if separator_id is None:
        raise LlmworksError(f"{tokenizer_json} has no end-of-text token {eot_token!r}")
    vocab_size = tok.get_vocab_size()
    dtype = dtype_for_vocab(vocab_size)
    with scratch_dir(out_dir.parent, out_dir.name) as tmp:
        staged = tmp / out_dir.name
        staged.mkdir()
        splits = {
            name: encode_split(
                corpus[name],
                tok,
                separator_id,
                staged / f"{name}.bin",
                dtype,
                batch_size,
                batch_bytes,
            )
            for name in SPLITS
            if name in corpus
        }
        chunks = {}
        if chunk_tokens is not None and TRAIN in splits:
            from llmworks.data.streaming import write_chunks  # imports torch: only when asked

            n = write_chunks(
                staged / f"{TRAIN}.bin", dtype, staged / CHUNKS_DIR / TRAIN, chunk_tokens
            )
            chunks = {"litdata": {TRAIN: {"chunks": n, "chunk_tokens": chunk_tokens}}}
            log.info("encode %s: wrote %d litdata chunk(s) of the training split", out_dir, n)
        meta = {
            "tokenizer": str(tokenizer_json),
            "tokenizer_sha256": tokenizer_hash(tokenizer_json),
            "vocab_size": vocab_size,
            "dtype": dtype.name,
            "separator": eot_token,
            "separator_id": separator_id,
            "splits": splits,
            **chunks,
        }
        write_json(staged / META_FILE, meta)
        replace_dir(staged, out_dir)
    return meta


def encode_stage(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Encode the corpus with each selected tokenizer into ``data/tokens/<name>/``."""
    paths = Paths.from_config(cfg)
    settings = typed(EncodeConfig, cfg.encode, "encode")  # a bad batch fails before any work
    data = data_config(cfg)
    corpus = load_corpus(paths)
    results = {}
    for name in selected_tokenizers(cfg):
        path = paths.tokenizer(name)
        if not path.is_file():
            raise LlmworksError(f"{path} does not exist; train the tokenizer first (dvc repro)")
        meta = encode_corpus(
            corpus,
            path,
            paths.tokens(name),
            str(cfg.tokenizers[name].eot_token),
            batch_size=settings.batch_size,
            batch_bytes=settings.batch_bytes,
            chunk_tokens=data.chunk_tokens if data.streams else None,
        )
        counts = {f"{s}/tokens": v["tokens"] for s, v in meta["splits"].items()}
        with wandb_run(cfg, job_type(f"encode@{name}")) as run:
            log_metrics(run, counts, prefix=f"tokens/{name}/")
            log_lineage(
                run,
                cfg,
                {
                    "corpus": ("dataset", paths.corpus_dataset),
                    f"tokenizer-{name}": ("tokenizer", path),
                },
                {f"tokens-{name}": ("dataset", paths.tokens(name))},
                counts,
            )
        log.info("encoded with %s: %s", name, meta["splits"])
        results[name] = meta
    return results
