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

import torch
from omegaconf import OmegaConf

from llmworks.corpus.wiki_sample import iter_articles
from llmworks.evaluation.word_similarity import evaluate
from llmworks.training.word2vec_module import build_corpus, fit_word2vec


def run_ours(vocab, corpus, w, seed: int) -> dict:
    cpu = {"accelerator": "cpu", "devices": 1}
    module, _, wps = fit_word2vec(vocab, corpus, w, cpu, seed=seed)
    metrics, _ = evaluate(vocab.words, module.model.vectors.detach().numpy())
    return {"words_per_s": wps, **metrics}


def run_gensim(docs, w, seed: int) -> dict:
    from gensim.models import Word2Vec

    total = sum(len(d) for d in docs)
    model = Word2Vec(
        vector_size=int(w.dim), window=int(w.window), negative=int(w.negative),
        min_count=int(w.min_count), sample=float(w.sample), sg=int(bool(w.sg)), workers=2,
        alpha=float(w.alpha), min_alpha=float(w.min_alpha), seed=seed + 1,
    )  # fmt: skip
    model.build_vocab(docs)
    t0 = time.perf_counter()
    model.train(docs, total_examples=len(docs), epochs=int(w.epochs))
    seconds = time.perf_counter() - t0
    kv = model.wv
    metrics, _ = evaluate(kv.index_to_key, kv.vectors)
    return {"words_per_s": total * int(w.epochs) / seconds, **metrics}


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
    w0 = OmegaConf.load("conf/word2vec/default.yaml")
    w0.sg = not args.cbow
    if args.cbow:
        w0.alpha = 0.05  # gensim's CBOW default (our conf/word2vec/cbow.yaml)
    texts = [a["text"] for a in iter_articles()]
    vocab, corpus = build_corpus(texts, int(w0.min_count), True)
    from llmworks.data.word_vocab import tokenize

    docs = [tokenize(t) for t in texts]
    print(f"corpus {corpus.raw_words} words, vocab {len(vocab)}; {platform.processor()} "
          f"{torch.get_num_threads()} threads; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    rows = []
    for epochs in args.epochs:
        w = OmegaConf.merge(w0, {"epochs": epochs})
        for r in range(args.repeats):
            runs = [
                (f"ours-g{g}", run_ours, (vocab, corpus, OmegaConf.merge(w, {"group": g}), r))
                for g in (args.groups or [int(w.group)])
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
