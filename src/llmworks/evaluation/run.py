"""Stage ``evaluate``: every trained artifact measured on the held-out test split, pictured,
and compared on one task.

Writes ``<paths.metrics>/evaluation.json`` (DVC metrics; names are stable across runs:
``tokenizers.<name>.*``, ``word2vec.*``, ``bert.test_*``, ``gpt.test_*``,
``representations.<embedder>.{accuracy,mrr}``), ``<paths.report>/assets/`` (PNG figures,
samples, token views, for the ``report`` stage) and one W&B run (``job_type=evaluate``) with
the same metrics, the figures as images and the samples and comparison as tables.

A part that cannot be evaluated (a model not trained, artifacts that do not fit together)
is skipped with a warning and its reason in ``assets/skipped.json``, which the report lists;
so the stage also works on a run that trained only some of the models.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from omegaconf import DictConfig
from tokenizers import Tokenizer

from llmworks.corpus.prepare import load_corpus
from llmworks.errors import LlmworksError
from llmworks.evaluation import plots
from llmworks.evaluation.attention import attention_maps, token_labels
from llmworks.evaluation.embedders import (
    bag_of_words_embedder,
    bert_embedder,
    gpt_embedder,
    word2vec_embedder,
)
from llmworks.evaluation.heldout import causal_lm_metrics, masked_lm_metrics
from llmworks.evaluation.representations import Embedder, compare, paragraph_task
from llmworks.evaluation.token_view import pieces, to_html
from llmworks.io import replace_dir, write_json
from llmworks.models.persistence import WEIGHTS_FILE
from llmworks.tokenization.train import (
    load_tokenizer,
    spec_from_config,
    tokenizer_path,
    tokenizer_stats,
)
from llmworks.tracking import log_images, log_metrics, log_table, wandb_run

log = logging.getLogger(__name__)

METRICS_FILE = "evaluation.json"
ASSETS_DIR = "assets"
SAMPLES_FILE = "samples.json"
TOKEN_VIEWS_FILE = "token_views.json"
NEIGHBOURS_FILE = "neighbours.json"
SKIPPED_FILE = "skipped.json"
MIN_MAP_WORDS = 4  # fewer points make no map (and no t-SNE perplexity fits)
# models/<name>/csv/metrics.csv: Lightning's CSVLogger log of each training stage
TRAINED_MODELS = ("word2vec", "bert", "gpt")


def evaluation_paths(cfg: DictConfig) -> tuple[Path, Path]:
    return Path(cfg.paths.metrics) / METRICS_FILE, Path(cfg.paths.report) / ASSETS_DIR


class Evaluation:
    """Collects metrics, embedders, figures and tables while the sections run."""

    def __init__(self, cfg: DictConfig, corpus: datasets.DatasetDict, assets: Path):
        self.cfg, self.corpus, self.assets = cfg, corpus, assets
        self.metrics: dict[str, Any] = {}
        self.embedders: dict[str, Embedder] = {}
        self.figures: dict[str, Path] = {}
        self.tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
        self.skipped: dict[str, str] = {}  # part -> why it was not evaluated
        self.device = eval_device(str(cfg.evaluate.device))

    def skip(self, part: str, reason: str) -> None:
        log.warning("evaluate: skipping %s: %s", part, reason)
        self.skipped[part] = reason

    def run(self, section: Callable[[], None]) -> None:
        """Run one section; if it cannot (a model not trained, artifacts that do not fit
        together) it is skipped with its reason and leaves nothing half-written."""
        before = {k: dict(getattr(self, k)) for k in ("metrics", "embedders", "figures", "tables")}
        try:
            section()
        except LlmworksError as exc:
            for key, value in before.items():
                setattr(self, key, value)
            self.skip(section.__name__.replace("_", " "), str(exc))

    @property
    def models(self) -> Path:
        return Path(self.cfg.paths.models)

    # ------------------------------------------------------------------ tokenizers

    def tokenizers(self) -> None:
        """Compression and coverage of every trained tokenizer on the test split, and one
        sentence cut into coloured tokens by each."""
        ev = self.cfg.evaluate
        text = str(ev.token_view_text)
        results, views = {}, {}
        for name in self.cfg.tokenizers:
            if not tokenizer_path(self.cfg, name).is_file():
                self.skip(f"tokenizer {name}", f"no {tokenizer_path(self.cfg, name)}")
                continue
            tok = load_tokenizer(self.cfg, name)
            spec = spec_from_config(self.cfg.tokenizers[name])
            stats = tokenizer_stats(tok, self.corpus["test"], spec)
            results[name] = {k: v for k, v in stats.items() if k != "type"}
            parts = pieces(tok, text)
            n_tokens = len(tok.encode(text, add_special_tokens=False).ids)
            views[name] = {"html": to_html(parts), "tokens": n_tokens}
        if results:
            self.metrics["tokenizers"] = results
            write_json(self.assets / TOKEN_VIEWS_FILE, {"text": text, "views": views})
            header = ["tokenizer", *next(iter(results.values()))]
            self.tables["tokenizers"] = (
                header,
                [[n, *r.values()] for n, r in results.items()],
            )

    # ------------------------------------------------------------------ word2vec

    def word2vec(self) -> None:
        from llmworks.evaluation.word_similarity import evaluate
        from llmworks.export.word2vec_format import load

        path = self.models / "word2vec" / "vectors.bin"
        if not path.is_file():
            raise LlmworksError(f"no {path}: the word2vec stage has not run")
        w = self.cfg.word2vec
        words, vectors = load(path, binary=True)
        vocab = set(words)
        probes = [str(p).lower() if w.lowercase else str(p) for p in w.get("probe_words") or []]
        probes = list(dict.fromkeys(p for p in probes if p in vocab))
        metrics, neighbours = evaluate(words, vectors, probes)
        self.metrics["word2vec"] = {k: _finite(v) for k, v in metrics.items()} | {
            "vocab_size": len(words)
        }
        write_json(self.assets / NEIGHBOURS_FILE, neighbours)
        self.tables["word2vec_neighbours"] = (
            ["word", "neighbours"],
            [[p, ", ".join(f"{n} ({s:.2f})" for n, s in ns)] for p, ns in neighbours.items()],
        )
        wm = self.cfg.evaluate.word_map
        skip = min(int(wm.skip_most_frequent), max(len(words) - int(wm.n_words), 0))
        chosen = list(dict.fromkeys(probes + words[skip : skip + int(wm.n_words)]))
        index = {word: i for i, word in enumerate(words)}
        if len(chosen) < MIN_MAP_WORDS:
            self.skip("word2vec map", f"{len(chosen)} words to place; it needs {MIN_MAP_WORDS}")
        else:
            self.figures["word2vec_map"] = plots.plot_word_map(
                chosen,
                vectors[[index[c] for c in chosen]],
                self.assets / "word2vec_map.png",
                probes,
                method=str(wm.method),
            )
        subword = load_tokenizer(self.cfg, str(w.tokenizer)) if w.get("tokenizer") else None
        self.embedders["word2vec_avg"] = word2vec_embedder(
            words, vectors, bool(w.lowercase), tokenizer=subword
        )

    # ------------------------------------------------------------------ BERT

    def bert(self) -> None:
        from llmworks.data.encode import tokens_dir
        from llmworks.data.mlm import MLMData
        from llmworks.models.bert import Bert

        model_dir = self.models / "bert"
        if not (model_dir / WEIGHTS_FILE).is_file():
            raise LlmworksError(f"no {model_dir / WEIGHTS_FILE}: the bert stage has not run")
        b = self.cfg.bert
        model = Bert.load(model_dir, str(self.device)).eval()
        tok_json = model_dir / "tokenizer.json"
        tok = Tokenizer.from_file(str(tok_json))
        # positions beyond the trained length were never learned; truncation keeps [SEP]
        tok.enable_truncation(min(model.config.max_seq_len, int(b.data.max_seq_len)))
        data = MLMData(tokens_dir(self.cfg, str(b.tokenizer)), tok_json, b.data)
        self.metrics["bert"] = masked_lm_metrics(
            model, data.test_dataloader(), self.cfg.evaluate.max_test_batches
        )
        ids = torch.tensor(tok.encode(str(self.cfg.evaluate.attention.text)).ids)
        self.figures["bert_attention"] = plots.plot_attention(
            attention_maps(model, ids),
            token_labels(tok, ids.tolist()),
            self.assets / "bert_attention.png",
            "BERT attention (bidirectional)",
            _heads(self.cfg, model.config.n_layer, model.config.n_head),
        )
        self.embedders["bert_mean"] = bert_embedder(
            model,
            tok,
            int(self.cfg.evaluate.representations.batch_size),
            max_len=int(b.data.max_seq_len),
        )

    # ------------------------------------------------------------------ GPT

    def gpt(self) -> None:
        from llmworks.data.encode import tokens_dir
        from llmworks.data.windows import WindowDataModule
        from llmworks.generation import complete
        from llmworks.models.gpt import GPT

        model_dir = self.models / "gpt"
        if not (model_dir / WEIGHTS_FILE).is_file():
            raise LlmworksError(f"no {model_dir / WEIGHTS_FILE}: the gpt stage has not run")
        g, ev = self.cfg.gpt, self.cfg.evaluate
        model = GPT.load(model_dir, str(self.device)).eval()
        tok_json = model_dir / "tokenizer.json"
        tok = Tokenizer.from_file(str(tok_json))
        data = WindowDataModule(
            tokens_dir(self.cfg, str(g.tokenizer)),
            tok_json,
            model.config.block_size,
            int(g.data.batch_size),
        )
        data.setup()
        self.metrics["gpt"] = causal_lm_metrics(
            model,
            data.windows("test"),
            int(g.data.batch_size),
            data.bytes_per_token.get("test"),
            ev.max_test_batches,
        )
        s = ev.samples
        samples = []
        for prompt in s.prompts:
            for mode, temperature in (("greedy", 0.0), ("sampled", float(s.temperature))):
                text = complete(
                    model,
                    tok,
                    str(prompt),
                    int(s.max_new_tokens),
                    temperature=temperature,
                    top_k=s.get("top_k"),
                    seed=int(s.seed),
                )
                samples.append({"prompt": str(prompt), "mode": mode, "completion": text})
        write_json(
            self.assets / SAMPLES_FILE,
            {"settings": {k: s[k] for k in s if k != "prompts"}, "samples": samples},
        )
        self.tables["gpt_samples"] = (
            ["prompt", "mode", "completion"],
            [[x["prompt"], x["mode"], x["completion"]] for x in samples],
        )
        ids = torch.tensor(tok.encode(str(ev.attention.text)).ids[: model.config.block_size])
        self.figures["gpt_attention"] = plots.plot_attention(
            attention_maps(model, ids),
            token_labels(tok, ids.tolist()),
            self.assets / "gpt_attention.png",
            "GPT attention (causal)",
            _heads(self.cfg, model.config.n_layer, model.config.n_head),
        )
        self.embedders["gpt_mean"] = gpt_embedder(model, tok, int(ev.representations.batch_size))

    # ------------------------------------------------------------------ comparison & curves

    def representations(self) -> None:
        """Bag-of-words and TF-IDF (fit on the training split) beside every model's pooled
        vectors, on paragraphs of the held-out documents."""
        r = self.cfg.evaluate.representations
        docs = [t for split in r.splits for t in self.corpus[str(split)]["text"]]
        task = paragraph_task(
            docs,
            int(r.min_paragraphs),
            int(r.min_words),
            int(r.max_per_doc),
            r.get("max_docs"),
        )
        if task.n_docs < 2:
            raise LlmworksError(
                f"{task.n_docs} held-out documents with >= {int(r.min_paragraphs)} paragraphs "
                f"of >= {int(r.min_words)} words; the comparison needs two"
            )
        train = self.corpus["train"]["text"]
        embedders = {
            "bow_counts": bag_of_words_embedder(train, False, r.get("bow_max_features")),
            "tfidf": bag_of_words_embedder(train, True, r.get("bow_max_features")),
            **self.embedders,
        }
        scores = compare(task, embedders)
        self.metrics["representations"] = scores
        self.figures["representations"] = plots.plot_representations(
            scores, self.assets / "representations.png"
        )
        self.tables["representations"] = (
            ["representation", "accuracy", "mrr"],
            [[n, v["accuracy"], v["mrr"]] for n, v in scores.items()],
        )

    def training_curves(self) -> None:
        """Training and validation losses of every model, from its Lightning CSV log."""
        logs = {name: self.models / name / "csv" / "metrics.csv" for name in TRAINED_MODELS}
        fig = plots.plot_training_curves(logs, self.assets / "training_curves.png", ("loss",))
        if fig is not None:
            self.figures["training_curves"] = fig


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """The ``evaluate`` stage. Assets are written to a staging directory and moved into
    place at the end, so a crash of a direct run leaves the previous report assets intact
    (``dvc repro`` removes a stage's outputs before running it; its cache keeps the old
    ones)."""
    logging.getLogger("gensim").setLevel(logging.WARNING)  # its INFO lines drown ours
    if cfg.evaluate.word_map.method not in ("pca", "tsne"):
        raise LlmworksError(
            f"evaluate.word_map.method={cfg.evaluate.word_map.method!r}: expected pca or tsne"
        )
    limit = cfg.evaluate.max_test_batches
    if limit is not None and int(limit) < 1:
        raise LlmworksError(
            f"evaluate.max_test_batches={limit}: expected a positive count, or null for all"
        )
    corpus = load_corpus(cfg)
    metrics_path, assets = evaluation_paths(cfg)
    assets.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".assets-", dir=assets.parent) as tmp:
        staged = Path(tmp) / ASSETS_DIR
        staged.mkdir()
        ev = Evaluation(cfg, corpus, staged)
        for section in (
            ev.tokenizers,
            ev.word2vec,
            ev.bert,
            ev.gpt,
            ev.representations,
            ev.training_curves,
        ):
            ev.run(section)
        write_json(staged / "figures.json", {k: p.name for k, p in ev.figures.items()})
        write_json(staged / SKIPPED_FILE, ev.skipped)
        replace_dir(staged, assets)
    write_json(metrics_path, ev.metrics)
    with wandb_run(cfg, "evaluate") as run:
        log_metrics(run, flatten(ev.metrics))
        log_images(run, {f"figures/{k}": assets / p.name for k, p in ev.figures.items()})
        for key, (columns, rows) in ev.tables.items():
            log_table(run, f"tables/{key}", columns, rows)
    log.info("evaluate: wrote %s and %s", metrics_path, assets)
    return ev.metrics


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"gpt": {"test_loss": 1}}`` -> ``{"gpt/test_loss": 1}``: the W&B metric names."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def eval_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one (the Transformers' test scores, samples and
    embeddings are forward passes only), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise LlmworksError(f"evaluate.device={name!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LlmworksError(f"evaluate.device={name!r} but torch sees no CUDA device")
    return device


def _heads(cfg: DictConfig, n_layer: int, n_head: int) -> list[tuple[int, int]] | None:
    heads = cfg.evaluate.attention.get("heads")
    if not heads:
        return None
    chosen = [(int(layer), int(head)) for layer, head in heads]
    for layer, head in chosen:
        if not (0 <= layer < n_layer and 0 <= head < n_head):
            raise LlmworksError(
                f"evaluate.attention.heads: [{layer}, {head}] is not a head of a model with "
                f"{n_layer} layers of {n_head} heads (counting from 0)"
            )
    return chosen


def _finite(value: Any) -> Any:
    """NaN (too few covered pairs) is not JSON: written as null."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def read_evaluation(cfg: DictConfig) -> dict[str, Any]:
    path, _ = evaluation_paths(cfg)
    if not path.is_file():
        raise LlmworksError(f"{path} does not exist; run the evaluate stage first")
    return json.loads(path.read_text(encoding="utf-8"))
