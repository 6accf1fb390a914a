"""Word2Vec's part of the evaluate stage: word similarity and analogies (gensim's benchmark
files), neighbours of the probe words, a 2-D map of the vectors, and averaged word vectors as
a representation to compare. Its settings are ``evaluate.word2vec``
(``conf/word2vec/default.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from llmworks.config import typed
from llmworks.errors import LlmworksError
from llmworks.evaluation import plots
from llmworks.evaluation.recorder import Recorder
from llmworks.evaluation.trained import load_tokenizer, model_dir
from llmworks.families.word2vec.benchmarks import keyed_vectors, neighbours, word_benchmarks
from llmworks.families.word2vec.model import Word2Vec
from llmworks.families.word2vec.module import VOCAB_FILE
from llmworks.families.word2vec.vectors import averaged_vectors
from llmworks.families.word2vec.vocab import WordVocab

MIN_MAP_WORDS = 4  # fewer points make no map (and no t-SNE perplexity fits)
MAP_METHODS = ("pca", "tsne")


@dataclass(frozen=True)
class WordMapConfig:
    """``evaluate.word2vec.word_map``: the probe words plus frequent words, in 2-D."""

    method: str  # pca | tsne
    n_words: int
    skip_most_frequent: int  # leave out the function words at the top of the vocabulary

    def __post_init__(self) -> None:
        if self.method not in MAP_METHODS:
            raise LlmworksError(
                f"evaluate.word2vec.word_map.method={self.method!r}: expected pca or tsne"
            )


@dataclass(frozen=True)
class Word2VecEvalConfig:
    """``evaluate.word2vec``."""

    probe_words: list[str]  # their neighbours are listed and they are marked on the map
    min_word_pairs: int  # a benchmark's rho needs this many covered pairs (else null)
    word_map: WordMapConfig


def settings(cfg: DictConfig) -> Word2VecEvalConfig:
    """Word2Vec's evaluation settings, checked before the stage does any work."""
    values = OmegaConf.to_container(cfg.evaluate.word2vec, resolve=True)
    word_map = typed(WordMapConfig, values.pop("word_map", {}), "evaluate.word2vec.word_map")
    return typed(Word2VecEvalConfig, values, "evaluate.word2vec", word_map=word_map)


def evaluate(rec: Recorder) -> None:
    """Word similarity and analogies, neighbours of the probe words, a map of the vectors,
    and averaged word vectors as a text embedder."""
    path = model_dir(rec.paths, "word2vec")
    vocab = WordVocab.load(path / VOCAB_FILE)
    vectors = Word2Vec.load(path).vectors.numpy()
    w = rec.cfg.word2vec
    subword = load_tokenizer(rec.paths, str(w.tokenizer)) if w.tokenizer else None
    lowercase = bool(w.lowercase)
    s = settings(rec.cfg)

    kv = keyed_vectors(vocab.words, vectors)
    probes = [p.lower() if lowercase else p for p in map(str, s.probe_words)]
    probes = list(dict.fromkeys(p for p in probes if p in kv.key_to_index))
    metrics = word_benchmarks(kv, s.min_word_pairs) | {"vocab_size": len(vocab.words)}
    rec.record("word2vec", metrics, "Word similarity and analogies")
    if probes:
        near = neighbours(kv, probes, k=8)
        rec.table(
            "word2vec_neighbours",
            "Nearest neighbours of the probe words",
            ["word", "neighbours"],
            [[p, ", ".join(f"{n} ({s:.2f})" for n, s in ns)] for p, ns in near.items()],
        )
    else:  # an empty table would say nothing; say why
        rec.skip(
            "word2vec neighbours",
            f"none of the probe words {list(map(str, s.probe_words))[:8]} is in this "
            "corpus's vocabulary; set evaluate.word2vec.probe_words to words of the corpus",
        )
    wm = s.word_map
    skip = min(wm.skip_most_frequent, max(len(vocab.words) - wm.n_words, 0))
    chosen = list(dict.fromkeys(probes + list(vocab.words[skip : skip + wm.n_words])))
    if len(chosen) < MIN_MAP_WORDS:
        rec.skip("word2vec map", f"{len(chosen)} words to place; it needs {MIN_MAP_WORDS}")
    else:
        out = plots.plot_word_map(
            chosen, kv[chosen], rec.assets / "word2vec_map.png", probes, method=wm.method
        )
        rec.figure("word2vec_map", out, "2-D map of word vectors")
    rec.embedder("word2vec_avg", averaged_vectors(vocab.words, vectors, lowercase, subword))
