"""Stage ``evaluate``: every trained artifact measured on the held-out test split, pictured,
and compared on one task.

The stage runs the tokenizers' part, then each model family's own ``evaluate`` (from the one
registry, ``llmworks.families``), then the comparison of every representation the families
offered. A family's part calls the helpers of ``Evaluation`` -- test scores through the same
scorer its validation uses, samples, attention maps, embedders, word-vector benchmarks --
which record metrics, figures and tables under the family's name.

Writes ``<paths.metrics>/evaluation.json`` (DVC metrics; names are stable across runs:
``tokenizers.<name>.*``, ``<family>.*`` such as ``gpt.test_bpb``,
``representations.<embedder>.{accuracy,mrr}``), ``<paths.report>/assets/`` (PNG figures,
samples, token views and ``report.json``, the page's sections for the ``report`` stage) and
one W&B run (``job_type=evaluate``) with the same metrics, the figures as images and the
tables.

A part that cannot be evaluated (a model not trained, artifacts that do not fit together)
is skipped with a warning and its reason in ``assets/skipped.json``, which the report lists;
so the stage also works on a run that trained only some of the models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from omegaconf import DictConfig
from tokenizers import Tokenizer
from torch import nn

from llmworks.corpus.prepare import load_corpus
from llmworks.errors import LlmworksError
from llmworks.evaluation import plots
from llmworks.evaluation.report import Section
from llmworks.evaluation.representations import Embedder, compare, paragraph_task
from llmworks.io import replace_dir, scratch_dir, write_json
from llmworks.models.persistence import WEIGHTS_FILE
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.tracking import job_type, log_images, log_lineage, log_metrics, log_table, wandb_run

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.json"
TOKEN_VIEWS_FILE = "token_views.json"
MIN_MAP_WORDS = 4  # fewer points make no map (and no t-SNE perplexity fits)


class Evaluation:
    """Collects metrics, embedders, figures, tables and report sections while parts run."""

    def __init__(self, cfg: DictConfig, corpus: datasets.DatasetDict, assets: Path):
        self.cfg, self.corpus, self.assets = cfg, corpus, assets
        self.paths = Paths.from_config(cfg)
        self.device = eval_device(str(cfg.evaluate.device))
        self.metrics: dict[str, Any] = {}
        self.embedders: dict[str, Embedder] = {}
        self.figures: dict[str, Path] = {}  # W&B key -> PNG
        self.tables: dict[str, tuple[list[str], list[list[Any]]]] = {}  # W&B key -> table
        self.sections: dict[str, Section] = {}  # the report's sections, in order
        self.skipped: dict[str, str] = {}  # part -> why it was not evaluated
        self._section: Section | None = None

    def skip(self, part: str, reason: str) -> None:
        log.warning("evaluate: skipping %s: %s", part, reason)
        self.skipped[part] = reason

    def run(self, part: str, title: str, body: Callable[[], None]) -> None:
        """Run one part, its figures and tables going to the report section ``title``; if it
        cannot run (a model not trained, artifacts that do not fit together) it is skipped
        with its reason and leaves nothing half-recorded."""
        kept = ("metrics", "embedders", "figures", "tables", "sections")
        before = {k: dict(getattr(self, k)) for k in kept}
        self._section = Section(title)
        try:
            body()
            if not self._section.empty:
                self.sections[title] = self._section
        except LlmworksError as exc:
            for key, value in before.items():
                setattr(self, key, value)
            self.skip(part, str(exc))
        finally:
            self._section = None

    # ------------------------------------------------------------------ recording

    def table(self, key: str, caption: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.tables[key] = (columns, rows)
        self._section.tables.append((caption, columns, rows))

    def figure(self, key: str, path: Path | None, caption: str) -> None:
        if path is not None:
            self.figures[key] = path
            self._section.figures.append((caption, path))

    def metrics_table(self, name: str, caption: str) -> None:
        """This part's metrics as a two-column table in its section."""
        rows = [[k, v] for k, v in self.metrics[name].items()]
        self._section.tables.append((caption, ["metric", "value"], rows))

    # ------------------------------------------------------------------ helpers for families

    def require(self, family: str) -> Path:
        """The trained model directory of ``family``, or the reason there is none."""
        model_dir = self.paths.model(family)
        if not (model_dir / WEIGHTS_FILE).is_file():
            raise LlmworksError(f"no {model_dir / WEIGHTS_FILE}: the {family} stage has not run")
        return model_dir

    def tokenizer(self, name: str) -> Tokenizer:
        path = self.paths.tokenizer(name)
        if not path.is_file():
            raise LlmworksError(f"no {path}: the tokenizer {name} has not been trained")
        return Tokenizer.from_file(str(path))

    def load(self, model_cls: Any, family: str) -> tuple[nn.Module, Tokenizer]:
        """A family's saved model (on the evaluation device, eval mode) and its tokenizer."""
        model_dir = self.require(family)
        model = model_cls.load(model_dir, str(self.device)).eval()
        return model, Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))

    def test_scores(
        self, family: str, model: nn.Module, scores: Any, batches: Iterable, note: str = ""
    ) -> None:
        """The family's validation scorer over the test split's first
        ``evaluate.max_test_batches`` batches, recorded as ``<family>.test_*``; ``note`` says
        what the figures depend on (for the table's caption)."""
        limit = self.cfg.evaluate.max_test_batches
        results = score_batches(model, scores, batches, limit, self.device)
        self.metrics[family] = {f"test_{k}": v for k, v in results.items()}
        self.metrics_table(family, "On the test split" + (f" ({note})" if note else ""))

    def samples(self, family: str, model: nn.Module, tokenizer: Tokenizer) -> None:
        """Greedy and seeded continuations of the fixed prompts (``evaluate.samples``)."""
        from llmworks.generation import complete

        s = self.cfg.evaluate.samples
        samples = []
        for prompt in s.prompts:
            for mode, temperature in (("greedy", 0.0), ("sampled", float(s.temperature))):
                text = complete(
                    model,
                    tokenizer,
                    str(prompt),
                    int(s.max_new_tokens),
                    temperature=temperature,
                    top_k=s.top_k,
                    seed=int(s.seed),
                    repetition_penalty=float(s.repetition_penalty),
                    no_repeat_ngram_size=int(s.no_repeat_ngram_size),
                )
                samples.append({"prompt": str(prompt), "mode": mode, "completion": text})
        settings = {k: s[k] for k in s if k != "prompts"}
        write_json(self.assets / SAMPLES_FILE, {"settings": settings, "samples": samples})
        self.tables[f"{family}_samples"] = (
            ["prompt", "mode", "completion"],
            [[x["prompt"], x["mode"], x["completion"]] for x in samples],
        )
        self._section.samples = {"settings": settings, "samples": samples}

    def attention(
        self, family: str, model: nn.Module, tokenizer: Tokenizer, title: str, max_len: int
    ) -> None:
        """Heatmaps of chosen heads on ``evaluate.attention.text``."""
        from llmworks.evaluation.attention import attention_maps, token_labels

        tokenizer = Tokenizer.from_str(tokenizer.to_str())  # truncation is set on a copy
        tokenizer.enable_truncation(max_len)  # keeps BERT's closing [SEP]
        ids = torch.tensor(tokenizer.encode(str(self.cfg.evaluate.attention.text)).ids)
        maps = attention_maps(model, ids)
        path = plots.plot_attention(
            maps,
            token_labels(tokenizer, ids.tolist()),
            self.assets / f"{family}_attention.png",
            title,
            _heads(self.cfg, *maps.shape[:2]),
        )
        self.figure(f"{family}_attention", path, f"{title} on one sentence")

    def embedder(self, name: str, model: nn.Module, tokenizer: Tokenizer, max_len: int) -> None:
        """Mean-pooled final hidden states as a representation to compare."""
        from llmworks.evaluation.embedders import transformer_embedder

        batch = int(self.cfg.evaluate.representations.batch_size)
        self.embedders[name] = transformer_embedder(model, tokenizer, max_len, batch)

    def word_vectors(
        self,
        family: str,
        words: Sequence[str],
        vectors: np.ndarray,
        lowercase: bool,
        subword: Tokenizer | None,
    ) -> None:
        """Static word vectors: similarity and analogy benchmarks, neighbours of the probe
        words, a 2-D map, and averaged vectors as a representation to compare."""
        from llmworks.evaluation.embedders import word2vec_embedder
        from llmworks.evaluation.word_similarity import keyed_vectors, neighbours, word_benchmarks

        kv = keyed_vectors(words, vectors)
        probes = [p.lower() if lowercase else p for p in map(str, self.cfg.word2vec.probe_words)]
        probes = list(dict.fromkeys(p for p in probes if p in kv.key_to_index))
        min_pairs = int(self.cfg.evaluate.min_word_pairs)
        self.metrics[family] = word_benchmarks(kv, min_pairs) | {"vocab_size": len(words)}
        self.metrics_table(family, "Word similarity and analogies")
        near = neighbours(kv, probes, k=8)
        self.table(
            f"{family}_neighbours",
            "Nearest neighbours of the probe words",
            ["word", "neighbours"],
            [[p, ", ".join(f"{n} ({s:.2f})" for n, s in ns)] for p, ns in near.items()],
        )
        wm = self.cfg.evaluate.word_map
        skip = min(int(wm.skip_most_frequent), max(len(words) - int(wm.n_words), 0))
        chosen = list(dict.fromkeys(probes + list(words[skip : skip + int(wm.n_words)])))
        if len(chosen) < MIN_MAP_WORDS:
            self.skip(f"{family} map", f"{len(chosen)} words to place; it needs {MIN_MAP_WORDS}")
        else:
            path = plots.plot_word_map(
                chosen,
                kv[chosen],
                self.assets / f"{family}_map.png",
                probes,
                method=str(wm.method),
            )
            self.figure(f"{family}_map", path, "2-D map of word vectors")
        self.embedders[f"{family}_avg"] = word2vec_embedder(words, vectors, lowercase, subword)

    # ------------------------------------------------------------------ the stage's own parts

    def tokenizers(self) -> None:
        """Compression and coverage of every trained tokenizer on the test split, and one
        sentence cut into coloured tokens by each."""
        from llmworks.evaluation.token_view import pieces, to_html
        from llmworks.tokenization.train import spec_from_config, tokenizer_stats

        text = str(self.cfg.evaluate.token_view_text)
        results, views = {}, {}
        for name in self.cfg.tokenizers:
            if not self.paths.tokenizer(name).is_file():
                self.skip(f"tokenizer {name}", f"no {self.paths.tokenizer(name)}")
                continue
            tok = self.tokenizer(name)
            spec = spec_from_config(self.cfg.tokenizers[name], name)
            stats = tokenizer_stats(tok, self.corpus["test"], spec)
            results[name] = {k: v for k, v in stats.items() if k != "type"}
            n_tokens = len(tok.encode(text, add_special_tokens=False).ids)
            views[name] = {"html": to_html(pieces(tok, text)), "tokens": n_tokens}
        if not results:
            return
        self.metrics["tokenizers"] = results
        write_json(self.assets / TOKEN_VIEWS_FILE, {"text": text, "views": views})
        columns = ["tokenizer", *next(iter(results.values()))]
        self.table(
            "tokenizers",
            "On the test split",
            columns,
            [[n, *r.values()] for n, r in results.items()],
        )
        self._section.html.append("<h3>How each tokenizer cuts one sentence</h3>")
        self._section.html += [
            f"<p><b>{name}</b> ({view['tokens']} tokens)<br>{view['html']}</p>"
            for name, view in views.items()
        ]

    def representations(self) -> None:
        """Bag-of-words and TF-IDF (fit on the training split) beside every family's
        representation, on paragraphs of the held-out documents."""
        from llmworks.evaluation.embedders import bag_of_words_embedder

        r = self.cfg.evaluate.representations
        docs = [t for split in r.splits for t in self.corpus[str(split)]["text"]]
        task = paragraph_task(
            docs, int(r.min_paragraphs), int(r.min_words), int(r.max_per_doc), r.max_docs
        )
        if task.n_docs < 2:
            raise LlmworksError(
                f"{task.n_docs} held-out documents with >= {int(r.min_paragraphs)} paragraphs "
                f"of >= {int(r.min_words)} words; the comparison needs two"
            )
        train = self.corpus["train"]["text"]
        embedders = {
            "bow_counts": bag_of_words_embedder(train, False, r.bow_max_features),
            "tfidf": bag_of_words_embedder(train, True, r.bow_max_features),
            **self.embedders,
        }
        scores = compare(task, embedders)
        self.metrics["representations"] = scores
        some = next(iter(scores.values()))
        self.table(
            "representations",
            f"Which of {some['documents']} held-out documents does each of {some['queries']} "
            "paragraphs come from? (nearest centroid, leave-one-out)",
            ["representation", *(k for k in some)],
            [[n, *v.values()] for n, v in scores.items()],
        )
        path = plots.plot_representations(scores, self.assets / "representations.png")
        self.figure("representations", path, "Accuracy and MRR")

    def training(self, families: Sequence[str]) -> None:
        """Every trained family's final training metrics side by side (one row per metric),
        and its training and validation losses from the ``dvc plots`` CSVs."""
        import json

        from llmworks.training.logs import read_metrics_csv

        finals = {
            name: json.loads(self.paths.metrics_json(name).read_text())
            for name in families
            if self.paths.metrics_json(name).is_file()
        }
        names = list(dict.fromkeys(k for m in finals.values() for k in m))
        if finals:
            self._section.tables.append(
                (
                    "Final training and validation metrics",
                    ["metric", *finals],
                    [[k, *(m.get(k, "") for m in finals.values())] for k in names],
                )
            )
        logs = {}
        for name in families:
            rows: dict[int, dict[str, float]] = {}
            for series in ("train", "val"):
                path = self.paths.plot_csv(name, series)
                for step, values in (read_metrics_csv(path) if path.is_file() else {}).items():
                    rows.setdefault(step, {}).update(values)
            if rows:
                logs[name] = rows
        path = plots.plot_training_curves(logs, self.assets / "training_curves.png", ("loss",))
        self.figure("training_curves", path, "Training and validation loss")


def evaluate_stage(cfg: DictConfig) -> dict[str, Any]:
    """The ``evaluate`` stage. Assets are written to a staging directory and moved into
    place at the end, so a crash of a direct run leaves the previous report assets intact
    (``dvc repro`` removes a stage's outputs before running it; its cache keeps the old
    ones)."""
    from llmworks.families import FAMILIES

    check_settings(cfg)
    paths = Paths.from_config(cfg)
    corpus = load_corpus(paths)
    paths.report.mkdir(parents=True, exist_ok=True)
    with scratch_dir(paths.report, "assets") as tmp:
        staged = Path(tmp) / paths.assets.name
        staged.mkdir()
        ev = Evaluation(cfg, corpus, staged)
        ev.run("tokenizers", "Tokenizers", ev.tokenizers)
        ev.run("training", "Training", lambda: ev.training([f.name for f in FAMILIES]))
        for family in FAMILIES:
            if family.evaluate is not None:
                ev.run(family.name, family.title, lambda f=family: f.evaluate(ev))
        ev.run("representations", "Representations compared", ev.representations)
        write_json(
            staged / paths.report_sections.name,
            {
                "families": [f.name for f in FAMILIES],
                "figures": {k: p.name for k, p in ev.figures.items()},
                "sections": [_section_json(s, staged) for s in ev.sections.values()],
            },
        )
        write_json(staged / paths.skipped.name, ev.skipped)
        replace_dir(staged, paths.assets)
    write_json(paths.evaluation, ev.metrics)
    with wandb_run(cfg, job_type("evaluate")) as run:
        log_metrics(run, flatten(ev.metrics))
        trained = {f.name for f in FAMILIES if (paths.model(f.name) / WEIGHTS_FILE).is_file()}
        inputs = {"corpus": ("dataset", paths.corpus_dataset)} | {
            f"model-{n}": (
                "model",
                paths.model(n) / "hf" if (paths.model(n) / "hf").is_dir() else paths.model(n),
            )
            for n in sorted(trained)
        }
        log_lineage(run, cfg, inputs, {"evaluation": ("evaluation", paths.assets)})
        log_images(run, {f"figures/{k}": paths.assets / p.name for k, p in ev.figures.items()})
        for key, (columns, rows) in ev.tables.items():
            log_table(run, f"tables/{key}", columns, rows)
    log.info("evaluate: wrote %s and %s", paths.evaluation, paths.assets)
    return ev.metrics


@torch.no_grad()
def score_batches(
    model: nn.Module,
    scores: Any,
    batches: Iterable,
    limit: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Run a family's scorer (``update(model, batch)``, ``results()``: the same object its
    validation uses, so test and validation figures are computed alike) over the first
    ``limit`` batches (all with None)."""
    scores = scores.to(device)
    model.eval()
    for batch in batches if limit is None else islice(batches, int(limit)):
        scores.update(model, _to_device(batch, torch.device(device)))
    return scores.results()


def check_settings(cfg: DictConfig) -> None:
    """Settings that can be checked before any work."""
    if cfg.evaluate.word_map.method not in ("pca", "tsne"):
        raise LlmworksError(
            f"evaluate.word_map.method={cfg.evaluate.word_map.method!r}: expected pca or tsne"
        )
    limit = cfg.evaluate.max_test_batches
    if limit is not None and int(limit) < 1:
        raise LlmworksError(
            f"evaluate.max_test_batches={limit}: expected a positive count, or null for all"
        )
    eval_device(str(cfg.evaluate.device))


def _section_json(section: Section, assets: Path) -> dict[str, Any]:
    """A section with its figures named relative to the assets directory."""
    data = asdict(section)
    data["figures"] = [(caption, Path(p).name) for caption, p in section.figures]
    return data


def _to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


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
    heads = cfg.evaluate.attention.heads
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
