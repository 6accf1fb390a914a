"""GPT's part of the evaluate stage: test-split scores through its validation scorer,
continuations of fixed prompts, attention maps, and its mean-pooled states as a
representation to compare. Its settings are ``evaluate.gpt`` (``conf/gpt/default.yaml``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.evaluation.attention import attention_figure
from llmworks.evaluation.embedders import transformer_embedder
from llmworks.evaluation.recorder import Recorder
from llmworks.evaluation.scoring import record_test_scores
from llmworks.evaluation.trained import load_model
from llmworks.families.gpt.data import WindowDataConfig, WindowDataModule
from llmworks.families.gpt.model import GPT
from llmworks.families.gpt.module import NextTokenScores
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
    data = WindowDataModule(
        rec.paths.tokens(str(g.tokenizer)),
        rec.paths.model("gpt") / TOKENIZER_FILE,
        model.config.block_size,
        typed(WindowDataConfig, g.data, "gpt.data"),
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
