"""The `evaluate` and `report` stages run as a user runs them: on a pipeline that trained only
the tokenizers, the page still renders, the models' sections are skipped with a warning, and
the W&B run carries the metrics under stable names, grouped by experiment."""

from __future__ import annotations

import html.parser
import json
import math
import random
from pathlib import Path

import pytest
import torch

from llmworks.errors import LlmworksError
from llmworks.evaluation.stage import eval_device
from llmworks.tracking.sync import offline_runs, read_offline_run

from conftest import run_stage, stage_overrides

TOPICS = {
    "rivers": "river water bank flood delta stream valley boat fish bridge current",
    "music": "music song melody rhythm guitar piano concert orchestra chord singer",
    "space": "planet star orbit rocket moon galaxy telescope astronaut comet gravity",
    "cooking": "bread flour oven butter sugar recipe kitchen bake salt dough",
    "football": "goal team match player ball coach league stadium referee season",
    "chess": "king queen bishop knight pawn board move check castle opening",
}
FILLER = [
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "was",
    "that",
    "for",
    "on",
    "with",
    "as",
    "by",
    "it",
    "from",
    "at",
]


def _document(topic: str, words: str, rng: random.Random, n_paragraphs: int = 4) -> str:
    vocab = words.split()
    paragraphs = []
    for _ in range(n_paragraphs):
        sentence = [rng.choice(vocab if rng.random() < 0.5 else FILLER) for _ in range(30)]
        paragraphs.append(f"{topic.capitalize()}: " + " ".join(sentence) + ".")
    return "\n\n".join(paragraphs)


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Corpus + tokenizers + shards of 36 multi-paragraph documents, six topics."""
    root = tmp_path_factory.mktemp("evaluate")
    rng = random.Random(0)
    corpus = root / "docs.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for i in range(36):
            topic = list(TOPICS)[i % len(TOPICS)]
            text = _document(topic, TOPICS[topic], rng)
            f.write(json.dumps({"text": f"Document {i}. {text}"}) + "\n")
    for stage in ("prepare_corpus", "train_tokenizer", "encode"):
        result = run_stage(stage, *_overrides(root, corpus))
        assert result.returncode == 0, result.stderr[-3000:]
    return root


def _overrides(root: Path, corpus: Path) -> list[str]:
    return stage_overrides(
        None,
        root,
        "corpus=local",
        f"corpus.data_files={corpus}",
        "corpus.split.validation=0.25",
        "corpus.split.test=0.25",
        "tokenizers.bpe.vocab_size=300",
        "tokenizers.wordpiece.vocab_size=200",
        "tokenizers.unigram.vocab_size=200",
        "experiment_name=evaltest",
    )


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def test_evaluate_and_report_without_trained_models(tokenized: Path) -> None:
    root = tokenized
    corpus = root / "docs.jsonl"
    result = run_stage("evaluate", *_overrides(root, corpus))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipping gpt: no " in result.stderr + result.stdout  # a warning, not a crash

    metrics = json.loads((root / "metrics" / "evaluation.json").read_text())
    assert set(metrics) == {"tokenizers", "representations"}
    test_split = json.loads((root / "data/corpus/corpus_stats.json").read_text())["test"]
    for name in ("bpe", "wordpiece", "unigram"):
        stats = metrics["tokenizers"][name]
        assert stats["bytes_per_token"] > 1.0 and stats["tokens_per_word"] >= 1.0
        # measured on the test split: tokens per word times the split's words
        assert stats["tokens"] == pytest.approx(stats["tokens_per_word"] * test_split["words"])
    reps = metrics["representations"]
    assert set(reps) == {"bow_counts", "tfidf", "chance"}
    # the topics are separable by their words: TF-IDF beats chance by far
    assert reps["tfidf"]["accuracy"] > 2 * reps["chance"]["accuracy"]
    assert reps["tfidf"]["documents"] >= 4

    assets = root / "report" / "assets"
    views = json.loads((assets / "token_views.json").read_text())
    assert set(views["views"]) == {"bpe", "wordpiece", "unigram"}
    assert (assets / "representations.png").read_bytes()[:4] == b"\x89PNG"
    skipped = json.loads((assets / "skipped.json").read_text())
    assert set(skipped) == {"word2vec", "bert", "gpt", "downstream"}
    assert "the train@bert stage has not run" in skipped["bert"]
    assert "the finetune stage has not run" in skipped["downstream"]

    result = run_stage("report", *_overrides(root, corpus))
    assert result.returncode == 0, result.stderr[-3000:]
    index = root / "report" / "index.html"
    page = _Page()
    page.feed(index.read_text(encoding="utf-8"))
    assert page.headings == ["Corpus", "Tokenizers", "Representations compared", "Not evaluated"]
    assert "the train@gpt stage has not run" in index.read_text(encoding="utf-8")
    assert page.refs and all((index.parent / ref).is_file() for ref in page.refs)

    runs = [read_offline_run(r) for r in offline_runs(root)]
    evaluate = [r for r in runs if r["job_type"] == "evaluate"]
    assert len(evaluate) == 1
    run = evaluate[0]
    assert run["group"] == "evaltest" and run["state"] == "finished"
    assert run["config"]["evaluate"]["max_test_batches"] == 50
    assert run["summary"]["tokenizers/bpe/bytes_per_token"] == pytest.approx(
        metrics["tokenizers"]["bpe"]["bytes_per_token"]
    )
    assert run["summary"]["representations/tfidf/accuracy"] == pytest.approx(
        reps["tfidf"]["accuracy"]
    )
    assert "tables/representations" in run["summary"]


def test_report_without_evaluation_fails_with_a_hint(tmp_path: Path) -> None:
    result = run_stage("report", *stage_overrides(None, tmp_path))
    assert result.returncode == 2
    assert "run the evaluate stage first" in result.stderr


def test_eval_device_resolves_auto_and_rejects_what_torch_cannot_use() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert eval_device("auto").type == want and eval_device("cpu") == torch.device("cpu")
    with pytest.raises(LlmworksError, match="evaluate.device='gpu0'"):
        eval_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(LlmworksError, match="no CUDA device"):
            eval_device("cuda")


def test_published_models_are_scored_beside_ours(tokenized: Path, tmp_path: Path) -> None:
    """``evaluate.references``: a causal LM and a masked LM (local directories here; hub ids
    resolve through the cache the same way), each scored on the test split with its own
    tokenizer by our scorers; one that cannot be read is skipped with its reason."""
    from tiny import hf_checkpoint

    root = tokenized
    tokenizers = root / "data" / "tokenizers"
    causal, masked = tmp_path / "causal", tmp_path / "masked"
    hf_checkpoint("llama", causal, vocab=300, tokenizer=tokenizers / "bpe" / "tokenizer.json")
    hf_checkpoint("bert", masked, vocab=200, tokenizer=tokenizers / "wordpiece" / "tokenizer.json")
    out = tmp_path / "out"
    refs = f"evaluate.references=[{causal},{masked},{tmp_path / 'nothing'}]"
    args = [*_overrides(root, root / "docs.jsonl"), refs, f"paths.metrics={out / 'metrics'}",
            f"paths.report={out / 'report'}"]  # fmt: skip
    result = run_stage("evaluate", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics" / "evaluation.json").read_text())
    ours = metrics["references"]
    assert set(ours) == {str(causal), str(masked)}
    assert ours[str(causal)]["test_bpb"] > 0 and ours[str(causal)]["test_tokens"] > 0
    # the same definition as ours: the loss in bits over the bytes per token of the test
    # split as the reference's tokenizer cuts it (each document ended by its end-of-text)
    import datasets
    from tokenizers import Tokenizer

    texts = datasets.load_from_disk(str(root / "data" / "corpus" / "dataset"))["test"]["text"]
    tok = Tokenizer.from_file(str(causal / "tokenizer.json"))
    n_tokens = sum(len(tok.encode(t, add_special_tokens=False).ids) + 1 for t in texts)
    per_token = sum(len(t.encode()) for t in texts) / n_tokens
    want = ours[str(causal)]["test_loss"] / math.log(2) / per_token
    assert ours[str(causal)]["test_bpb"] == pytest.approx(want, rel=1e-6)
    assert 0 <= ours[str(masked)]["test_mlm_acc"] <= 1 and ours[str(masked)]["test_tokens"] > 0
    skipped = json.loads((out / "report" / "assets" / "skipped.json").read_text())
    assert f"reference {tmp_path / 'nothing'}" in skipped
