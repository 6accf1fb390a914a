"""The config tree: params.yaml equals the composed defaults, overrides and groups compose,
unknown keys fail, and nothing in conf/ needs a HydraConfig (DVC composes without one)."""

from __future__ import annotations

import re

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from llmworks.config import CONF_DIR, REPO_ROOT, compose_config


def test_committed_params_yaml_equals_composed_defaults() -> None:
    """As ``dvc exp run`` writes it: composed, interpolations resolved."""
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    composed = OmegaConf.to_container(compose_config(), resolve=True)
    assert committed == composed, "params.yaml is stale: run `python -m llmworks.config`"


def test_conf_has_no_hydra_only_interpolations() -> None:
    for path in CONF_DIR.rglob("*.yaml"):
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        assert not re.search(r"\$\{(hydra|now):", text), f"{path} uses ${{hydra:}}/${{now:}}"


def test_every_corpus_and_tokenizer_option_composes() -> None:
    for corpus in sorted(p.stem for p in (CONF_DIR / "corpus").glob("*.yaml")):
        overrides = [f"corpus={corpus}"]
        if corpus == "local":
            overrides.append("corpus.data_files=some/*.txt")
        cfg = compose_config(overrides)
        assert cfg.corpus.name == corpus
        assert cfg.corpus.source in {"embedded", "local", "hub"}
    cfg = compose_config()
    assert set(cfg.tokenizers) == {"bpe", "wordpiece", "unigram"}
    assert {cfg.tokenizers[n].type for n in cfg.tokenizers} == {"bpe", "wordpiece", "unigram"}


def test_smoke_experiment_shrinks_the_run() -> None:
    smoke, default = compose_config(["experiment=smoke"]), compose_config()
    assert smoke.experiment_name == "smoke"
    assert smoke.corpus.max_documents and default.corpus.max_documents is None
    assert smoke.tokenizers.bpe.vocab_size < default.tokenizers.bpe.vocab_size


def test_a_family_is_a_group_selected_once_with_its_registry_entry() -> None:
    """Each family's group adds its section, its `families` entry (what dvc.yaml's
    train@<name> reads, following the family's tokenizer) and its evaluation settings."""
    cfg = compose_config(["gpt=gpt2_124m", "gpt.tokenizer=unigram"])
    assert list(cfg.families) == ["word2vec", "bert", "gpt"]
    assert cfg.families.gpt.reads == "data/tokens/unigram" and cfg.gpt.model.n_layer == 12
    assert cfg.evaluate.gpt.samples.max_new_tokens > 0 and cfg.evaluate.word2vec.probe_words


def test_unknown_key_fails_loudly() -> None:
    with pytest.raises(ConfigCompositionException, match="tokenizers.bpe.vocab_sise"):
        compose_config(["tokenizers.bpe.vocab_sise=100"])


def test_dvc_stage_params_name_existing_keys() -> None:
    """Every `params:` entry of dvc.yaml must exist in params.yaml, or DVC tracks nothing."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        foreach = stage.get("foreach", "${None}")[2:-1]  # ${tokenizers} -> tokenizers
        keys = list(params[foreach]) if foreach in params else [None]
        body = stage.get("do", stage)
        for key in keys:
            for entry in body.get("params", []):
                dotted = entry if isinstance(entry, str) else next(iter(entry))
                dotted = dotted.replace("${key}", str(key))
                dotted = dotted.replace("${item.", f"${{{foreach}.{key}.")  # the entry's value
                dotted = re.sub(r"\$\{([\w.]+)\}", lambda m: _lookup(params, m[1]), dotted)
                node = params
                for part in dotted.split("."):
                    assert part in node, f"stage {name}: params key {dotted!r} not in params.yaml"
                    node = node[part]


def _lookup(params: dict, dotted: str) -> str:
    """A value of params.yaml by its dotted key (what DVC interpolates into dvc.yaml)."""
    node = params
    for part in dotted.split("."):
        node = node[part]
    return str(node)
