"""Every conf/gpt and conf/trainer preset composes into a valid model / trainer config."""

from __future__ import annotations

import pytest

from llmworks.config import compose_config, typed
from llmworks.families.gpt.hf import hf_architecture
from llmworks.families.gpt.model import GPTConfig


def model_config(cfg, vocab_size: int) -> GPTConfig:
    return typed(GPTConfig, cfg.gpt.model, "gpt.model", vocab_size=vocab_size)


EXPECTED = {
    "default": "qwen3",
    "gpt2_124m": "gpt2",
    "llama_small": "llama",
    "moe_small": "mixtral",
    "smoke": "qwen3",
}


@pytest.mark.parametrize("preset", EXPECTED)
def test_gpt_presets_build_and_export(preset):
    cfg = compose_config([f"gpt={preset}"])
    assert cfg.gpt.tokenizer == "bpe"
    mcfg = model_config(cfg, vocab_size=8192)
    assert hf_architecture(mcfg) == EXPECTED[preset]
    assert cfg.gpt.train.max_steps > 0 and cfg.gpt.optim.lr > 0


def test_gpt2_124m_has_124m_parameters():
    from llmworks.families.gpt.model import GPT

    mcfg = model_config(compose_config(["gpt=gpt2_124m"]), vocab_size=50257)
    assert round(GPT(mcfg).num_params(non_embedding=False) / 1e6) == 124


@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp", "ddp_cpu", "fsdp"])
def test_trainer_presets_share_keys(preset):
    cfg = compose_config([f"trainer={preset}"])
    assert set(cfg.trainer) == set(compose_config(["trainer=cpu"]).trainer)
    assert cfg.trainer._target_ == "lightning.Trainer"
