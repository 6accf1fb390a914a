"""Stage 3 — tokenize each split once into flat, memory-mappable token shards.

Training stages then read windows straight from disk and never re-tokenize. The format is
described in :mod:`llmworks.data.shards`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from omegaconf import DictConfig
from tokenizers import Tokenizer

from llmworks.corpus.prepare import load_corpus
from llmworks.data.shards import META_FILE, SPLITS, dtype_for_vocab, tokenizer_hash
from llmworks.errors import LlmworksError
from llmworks.io import replace_dir, write_json
from llmworks.paths import Paths
from llmworks.tokenization.train import selected_tokenizers
from llmworks.tracking import log_metrics, wandb_run

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _tokenizer(path: str) -> Tokenizer:
    # Loaded lazily in each datasets.map worker rather than pickled from the parent.
    return Tokenizer.from_file(path)


def _encode_batch(batch: dict[str, list], path: str, separator_id: int) -> dict[str, list]:
    encodings = _tokenizer(path).encode_batch(batch["text"], add_special_tokens=False)
    return {
        "ids": [enc.ids + [separator_id] for enc in encodings],
        "n_bytes": [len(t.encode("utf-8")) for t in batch["text"]],
    }


def encode_split(
    split: datasets.Dataset,
    tokenizer_json: Path,
    separator_id: int,
    out_bin: Path,
    dtype: np.dtype,
    num_proc: int,
    batch_size: int,
) -> dict[str, Any]:
    """Tokenize one split with ``datasets.map`` and stream the ids into ``out_bin``.

    The map's Arrow cache goes next to ``out_bin`` (a scratch directory), never into the
    corpus directory, which is a DVC output that must stay byte-identical.
    """
    encoded = split.map(
        _encode_batch,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc if num_proc and num_proc > 1 and len(split) >= num_proc else None,
        remove_columns=split.column_names,
        fn_kwargs={"path": str(tokenizer_json), "separator_id": separator_id},
        desc=f"encode {out_bin.stem}",
        cache_file_name=str(out_bin.parent / ".cache" / f"{out_bin.stem}.arrow"),
    )
    ids = encoded.data.column("ids")
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_tokens = int(offsets[-1])
    tokens = np.memmap(out_bin, dtype=dtype, mode="w+", shape=(max(n_tokens, 1),))
    pos = 0
    for chunk in ids.chunks:
        flat = chunk.flatten().to_numpy(zero_copy_only=False)
        tokens[pos : pos + flat.shape[0]] = flat
        pos += flat.shape[0]
    tokens.flush()
    del tokens
    if n_tokens == 0:  # np.memmap cannot map an empty file; keep the file truly empty
        out_bin.write_bytes(b"")
    np.save(out_bin.with_suffix(".offsets.npy"), offsets)
    return {
        "tokens": n_tokens,
        "docs": len(split),
        "bytes": int(np.sum(encoded["n_bytes"])) if len(encoded) else 0,
    }


def encode_corpus(
    corpus: datasets.DatasetDict,
    tokenizer_json: Path,
    out_dir: Path,
    eot_token: str,
    num_proc: int,
    batch_size: int,
) -> dict[str, Any]:
    """Encode every split into ``out_dir``; the old shards stay until the new ones are done."""
    tok = Tokenizer.from_file(str(tokenizer_json))
    separator_id = tok.token_to_id(eot_token)
    if separator_id is None:
        raise LlmworksError(f"{tokenizer_json} has no end-of-text token {eot_token!r}")
    vocab_size = tok.get_vocab_size()
    dtype = dtype_for_vocab(vocab_size)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-", dir=out_dir.parent) as tmp:
        staged = Path(tmp) / out_dir.name
        staged.mkdir()
        splits = {
            name: encode_split(
                corpus[name],
                tokenizer_json,
                separator_id,
                staged / f"{name}.bin",
                dtype,
                num_proc=num_proc,
                batch_size=batch_size,
            )
            for name in SPLITS
            if name in corpus
        }
        meta = {
            "tokenizer": str(tokenizer_json),
            "tokenizer_sha256": tokenizer_hash(tokenizer_json),
            "vocab_size": vocab_size,
            "dtype": dtype.name,
            "separator": eot_token,
            "separator_id": separator_id,
            "splits": splits,
        }
        write_json(staged / META_FILE, meta)
        shutil.rmtree(staged / ".cache", ignore_errors=True)
        replace_dir(staged, out_dir)
    return meta


def encode_stage(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Encode the corpus with each selected tokenizer into ``data/tokens/<name>/``."""
    paths = Paths.from_config(cfg)
    corpus = load_corpus(paths)
    num_proc = int(cfg.encode.num_proc or 1)
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
            num_proc=num_proc,
            batch_size=int(cfg.encode.batch_size),
        )
        counts = {f"{s}/tokens": v["tokens"] for s, v in meta["splits"].items()}
        with wandb_run(cfg, f"encode-{name}") as run:
            log_metrics(run, counts, prefix=f"tokens/{name}/")
        log.info("encoded with %s: %s", name, meta["splits"])
        results[name] = meta
    return results
