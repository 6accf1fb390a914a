"""Tokenizer training throughput: llmworks' trainer against the raw `tokenizers` trainer.

Both train the same tokenizer (same model, pre-tokenizer, trainer settings) on the same
train split; runs alternate so that load on the machine hits both alike. Usage:

    python bench/bench_tokenizers.py [--repeats 3] [--types bpe wordpiece unigram]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from datetime import date

from omegaconf import OmegaConf

from llmworks.config import compose_config
from llmworks.corpus.prepare import corpus_stage, load_corpus
from llmworks.paths import Paths
from llmworks.tokenization.build import build_tokenizer
from llmworks.tokenization.train import spec_from_config, train_tokenizer


def raw_train(spec, texts: list[str]) -> float:
    """The same trainer driven directly, from an in-memory list (the cheapest possible feed),
    without the stage's extra pass that pins WordPiece's symbols (accents stripped, as the
    stage decides for this English corpus)."""
    if spec.strip_accents == "auto":
        spec = dataclasses.replace(spec, strip_accents=True)
    tok, trainer = build_tokenizer(spec)
    start = time.perf_counter()
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return time.perf_counter() - start


def ours(spec, train) -> float:
    start = time.perf_counter()
    train_tokenizer(spec, train)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--types", nargs="+", default=["bpe", "wordpiece", "unigram"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config([f"paths.data={tmp}", "logger=none"])
        OmegaConf.set_struct(cfg, False)
        corpus_stage(cfg)
        train = load_corpus(Paths.from_config(cfg))["train"]
        texts = train["text"]
        mb = sum(len(t.encode()) for t in texts) / 1e6
        print(
            f"# {date.today()} {platform.processor() or platform.machine()}, "
            f"train split {mb:.2f} MB, {len(texts)} documents"
        )
        print("| tokenizer | vocab | raw tokenizers MB/s | llmworks MB/s | ratio |")
        print("|---|---|---|---|---|")
        for name in args.types:
            spec = spec_from_config(cfg.tokenizers[name], name)
            raw_s, our_s = [], []
            for _ in range(args.repeats):
                raw_s.append(raw_train(spec, texts))
                our_s.append(ours(spec, train))
            raw_v, our_v = mb / statistics.median(raw_s), mb / statistics.median(our_s)
            print(
                f"| {name} | {spec.vocab_size} | {raw_v:.2f} | {our_v:.2f} | {our_v / raw_v:.2f}× |"
            )


if __name__ == "__main__":
    main()
