"""Hugging Face checkpoint files (``models/hub.py``, ``models/checkpoints.py``): a hub id that is neither cached
nor reachable offline is one line saying how to fetch it; safetensors tensors, single files
and shards, are read as the safetensors library reads them, into the destination's own
memory or converted to its dtype; a pickled ``.bin`` loads as plain tensors only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmworks.errors import LlmworksError
from llmworks.models.checkpoints import Weights, load_state
from llmworks.models.hub import resolve


def test_an_uncached_hub_id_offline_says_how_to_fetch_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LlmworksError, match="HF_HUB_OFFLINE is set.*`hf download nobody/nothing`"):
        resolve("nobody/nothing")
    with pytest.raises(LlmworksError, match="not a directory, nor a Hugging Face hub id"):
        resolve(str(tmp_path / "no" / "such" / "dir"))
    assert resolve(tmp_path) == tmp_path  # a directory is taken as it is


def test_safetensors_tensors_read_as_the_library_reads_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tensors = {
        "a": torch.randn(5, 7),
        "b": torch.randn(3).to(torch.bfloat16),
        "c": torch.arange(12, dtype=torch.int64).reshape(3, 4),
    }
    save_file({"a": tensors["a"], "b": tensors["b"]}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"c": tensors["c"]}, tmp_path / "model-00002-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00001-of-00002.safetensors",
                            "c": "model-00002-of-00002.safetensors"}}  # fmt: skip
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    weights = Weights(tmp_path)
    assert weights.names() == set(tensors) and weights.shape("c") == (3, 4)
    for name, want in tensors.items():
        got = weights.get(name)
        assert got.dtype == want.dtype and torch.equal(got, want), name
    assert torch.equal(
        weights.get("a"), load_file(tmp_path / "model-00001-of-00002.safetensors")["a"]
    )
    wide = torch.empty(3, dtype=torch.float32)  # another dtype: converted on the way in
    weights.copy_into("b", wide)
    assert torch.equal(wide, tensors["b"].float())
    rows = torch.zeros(10, 7)
    weights.copy_into("a", rows[2:7])  # a block of rows of a larger parameter
    assert torch.equal(rows[2:7], tensors["a"]) and not rows[:2].any() and not rows[7:].any()
    with pytest.raises(LlmworksError, match="shape"):
        weights.copy_into("a", torch.empty(7, 5))


def test_a_pickled_bin_loads_as_plain_tensors_only(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(2)}, tmp_path / "pytorch_model.bin")
    assert torch.equal(Weights(tmp_path).get("w"), torch.ones(2))
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"w": argparse.Namespace(payload="code")}, bad / "pytorch_model.bin")
    with pytest.raises(LlmworksError, match="refused to load it as plain tensors"):
        Weights(bad).names()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LlmworksError, match="no weights"):
        Weights(empty)


def test_load_state_fills_every_parameter_once_without_initialising() -> None:
    def build() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2, bias=False))

    values = {
        "0.weight": torch.ones(4, 3),
        "0.bias": torch.arange(4.0),
        "1.weight": torch.eye(2, 4),
    }
    fills = ((name, lambda p, v=v: p.copy_(v)) for name, v in values.items())
    model = load_state(build, fills, torch.float64)
    assert all(torch.equal(p, values[n].double()) for n, p in model.named_parameters())
    with pytest.raises(RuntimeError, match="left parameters unset"):
        load_state(build, iter([("0.weight", lambda p: p.zero_())]))
