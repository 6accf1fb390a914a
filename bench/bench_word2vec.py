"""Word2Vec: ours (Lightning, closed-form SGD) against gensim on the embedded wiki sample.

Both train on the same lower-cased word lists with the same settings (skip-gram unless
--cbow, dim 100, window 5, 5 negatives, min_count 5, sample 1e-3, 2 threads / workers=2);
runs alternate ours/gensim so that a shared CPU slows both alike. Words/s counts corpus
words before subsampling over training time only, as gensim reports it.

    python bench/bench_word2vec.py --epochs 5 20 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from datetime import UTC, datetime

import lightning as L
import torch
from omegaconf import OmegaConf

from llmworks.config import compose_config, typed
from llmworks.corpus.wiki_sample import iter_articles
from llmworks.families.word2vec.benchmarks import keyed_vectors, word_benchmarks
from llmworks.families.word2vec.data import Word2VecData, word_corpus
from llmworks.families.word2vec.model import Word2VecConfig
from llmworks.families.word2vec.module import Word2VecModule
from llmworks.families.word2vec.settings import Word2VecDataConfig, Word2VecOptimConfig
from llmworks.words import tokenize

MIN_PAIRS = 30  # conf/word2vec: evaluate.word2vec.min_word_pairs


def run_ours(vocab, corpus, w, seed: int) -> dict:
    """The train@word2vec stage's module and data on a plain Trainer without validation;
    words/s over the whole fit (pair generation included)."""
    L.seed_everything(seed, verbose=False)
    config = typed(Word2VecConfig, w.model, "model", vocab_size=len(vocab))
    data = Word2VecData(
        vocab, corpus, corpus, typed(Word2VecDataConfig, w.data, "data"), config.sg,
        config.negative, seed,
    )  # fmt: skip
    epochs = int(w.train.max_epochs)
    optim = typed(Word2VecOptimConfig, w.optim, "optim")
    module = Word2VecModule(config, optim, vocab.counts, epochs * corpus.raw_words, seed)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=epochs, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    trainer.fit(module, data)
    seconds = time.perf_counter() - t0
    kv = keyed_vectors(vocab.words, module.model.vectors.numpy())
    return {"words_per_s": epochs * corpus.raw_words / seconds, **word_benchmarks(kv, MIN_PAIRS)}


def run_gensim(docs, w, seed: int) -> dict:
    from gensim.models import Word2Vec

    total = sum(len(d) for d in docs)
    epochs = int(w.train.max_epochs)
    model = Word2Vec(
        vector_size=int(w.model.dim), window=int(w.data.window), negative=int(w.model.negative),
        min_count=int(w.min_count), sample=float(w.data.sample), sg=int(bool(w.model.sg)),
        workers=2, alpha=float(w.optim.alpha), min_alpha=float(w.optim.min_alpha), seed=seed + 1,
    )  # fmt: skip
    model.build_vocab(docs)
    t0 = time.perf_counter()
    model.train(docs, total_examples=len(docs), epochs=epochs)
    seconds = time.perf_counter() - t0
    return {"words_per_s": total * epochs / seconds, **word_benchmarks(model.wv, MIN_PAIRS)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--repeats", type=int, default=1, help="seeds 0.. for each setting")
    ap.add_argument(
        "--groups",
        type=int,
        nargs="+",
        default=None,
        help="ours with these negative-sharing group sizes (default: the preset)",
    )
    ap.add_argument("--cbow", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.set_num_threads(2)
    w0 = compose_config(["word2vec=cbow" if args.cbow else "word2vec=default"]).word2vec
    texts = [a["text"] for a in iter_articles()]
    docs = [tokenize(t) for t in texts]
    vocab, (corpus,) = word_corpus([docs], int(w0.min_count))
    print(f"corpus {corpus.raw_words} words, vocab {len(vocab)}; {platform.processor()} "
          f"{torch.get_num_threads()} threads; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    rows = []
    for epochs in args.epochs:
        w = OmegaConf.merge(w0, {"train": {"max_epochs": epochs}})
        for r in range(args.repeats):
            runs = [
                (
                    f"ours-g{g}",
                    run_ours,
                    (vocab, corpus, OmegaConf.merge(w, {"model": {"group": g}}), r),
                )
                for g in (args.groups or [int(w.model.group)])
            ] + [("gensim", run_gensim, (docs, w, r))]
            for name, fn, fn_args in runs:
                row = {"impl": name, "epochs": epochs, "seed": r, **fn(*fn_args)}
                rows.append(row)
                print(
                    f"{name:8s} seed={r} epochs={epochs:2d} words/s={row['words_per_s']:9.0f} "
                    f"ws353={row['ws353_rho']:.3f} simlex={row['simlex_rho']:.3f} "
                    f"analogy={row['analogy_acc']:.3f} (coverage {row['analogy_coverage']:.2f})",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
