"""GPT's part of the evaluate stage: test-split scores through its validation scorer,
continuations of fixed prompts, attention maps, and its mean-pooled states as a
representation to compare. Its settings are ``evaluate.gpt`` (``conf/gpt/default.yaml``)."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from datasets import DatasetDict
from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.data.encode import encode_corpus
from llmworks.errors import LlmworksError
from llmworks.evaluation.attention import attention_figure
from llmworks.evaluation.embedders import transformer_embedder
from llmworks.evaluation.recorder import Recorder
from llmworks.evaluation.scoring import record_test_scores, score_batches
from llmworks.evaluation.trained import load_model
from llmworks.families.gpt.data import WindowDataModule
from llmworks.families.gpt.hf import CLASSES, from_hf
from llmworks.families.gpt.model import GPT
from llmworks.families.gpt.module import NextTokenScores
from llmworks.families.gpt.settings import data_settings
from llmworks.generation import complete
from llmworks.io import write_json
from llmworks.paths import TOKENIZER_FILE

SAMPLES_FILE = "samples.json"


@dataclass(frozen=True)
class SampleConfig:
    """``evaluate.gpt.samples``: the continuations shown in W&B and the report."""

    prompts: list[str]
    max_new_tokens: int
    temperature: float  # the sampled row; the greedy row uses temperature 0
    top_k: int | None
    no_repeat_ngram_size: int
    repetition_penalty: float
    seed: int


def settings(cfg: DictConfig) -> SampleConfig:
    """GPT's evaluation settings, checked before the stage does any work."""
    return typed(SampleConfig, cfg.evaluate.gpt.samples, "evaluate.gpt.samples")


def evaluate(rec: Recorder) -> None:
    """Test-split scores, samples from fixed prompts, attention maps and mean-pooled states."""
    model, tok = load_model(rec, GPT, "gpt")
    g = rec.cfg.gpt
    data_cfg = data_settings(rec.cfg)
    data = WindowDataModule(
        rec.paths.tokens(str(g.tokenizer)),
        rec.paths.model("gpt") / TOKENIZER_FILE,
        data_cfg.window(model.config.block_size),
        data_cfg,
        int(rec.cfg.seed),
    )
    scores = NextTokenScores(data.text_per_token("test"), moe=model.config.mlp == "moe")
    record_test_scores(
        rec,
        "gpt",
        model,
        scores,
        data.test_dataloader(),
        note=f"loss, ppl: per {g.tokenizer} token; bpb, word_ppl: any tokenizer",
    )
    samples(rec, model, tok, settings(rec.cfg))
    attention_figure(rec, "gpt", model, tok, "GPT attention (causal)", model.config.block_size)
    batch = int(rec.cfg.evaluate.representations.batch_size)
    rec.embedder("gpt_mean", transformer_embedder(model, tok, model.config.block_size, batch))


def samples(rec: Recorder, model: GPT, tokenizer, s: SampleConfig) -> None:
    """Greedy and seeded continuations of the fixed prompts."""
    rows = []
    for prompt in s.prompts:
        for mode, temperature in (("greedy", 0.0), ("sampled", s.temperature)):
            text = complete(
                model,
                tokenizer,
                prompt,
                s.max_new_tokens,
                temperature=temperature,
                top_k=s.top_k,
                seed=s.seed,
                repetition_penalty=s.repetition_penalty,
                no_repeat_ngram_size=s.no_repeat_ngram_size,
            )
            rows.append({"prompt": prompt, "mode": mode, "completion": text})
    shown = {k: v for k, v in asdict(s).items() if k != "prompts"}
    write_json(rec.assets / SAMPLES_FILE, {"settings": shown, "samples": rows})
    rec.samples("gpt_samples", shown, rows)


# ----------------------------------------------------------------------------- references

REFERENCE_TYPES = tuple(CLASSES)


def score_reference(rec: Recorder, source: str, path: Path) -> dict[str, float]:
    """A published causal LM's test figures: the test split encoded with its own tokenizer
    (each document ended by its end-of-text token, as our shards are), cut into windows as
    long as ours (``gpt.data``), scored by our scorer: bits per byte and word perplexity
    compare with ours whatever the tokenizer."""
    model, _ = from_hf(path, where=f"evaluate.references {source}")
    tok_json = _tokenizer_file(path, source)
    eot = _end_of_text(path)
    data_cfg = data_settings(rec.cfg)
    window = min(data_cfg.window(int(rec.cfg.gpt.model.block_size)), model.config.block_size)
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        encode_corpus(
            DatasetDict({"test": rec.corpus["test"]}),
            tok_json,
            tokens,
            eot,
            int(rec.cfg.encode.batch_size),
            int(rec.cfg.encode.batch_bytes),
        )
        data = WindowDataModule(tokens, tok_json, window, data_cfg, int(rec.cfg.seed))
        scores = NextTokenScores(data.text_per_token("test"), moe=model.config.mlp == "moe")
        limit = rec.cfg.evaluate.max_test_batches
        results = score_batches(
            model.to(rec.device), scores, data.test_dataloader(), limit, rec.device
        )
    return {f"test_{k}": v for k, v in results.items()}


def _tokenizer_file(path: Path, source: str) -> Path:
    tok_json = path / TOKENIZER_FILE
    if not tok_json.is_file():
        raise LlmworksError(f"evaluate.references {source}: no {TOKENIZER_FILE} in {path}")
    return tok_json


def _end_of_text(path: Path) -> str:
    """The token a published causal LM ends a document with (its tokenizer's EOS)."""
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False).eos_token
    if eos is None:
        raise LlmworksError(f"{path}: its tokenizer names no end-of-text (eos) token")
    return eos
