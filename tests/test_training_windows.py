"""The GPT datamodule: deterministic windows, disjoint DDP ranks, fixed validation windows;
and the shared optimizer / schedule helpers."""

from __future__ import annotations

import math

import pytest
import torch
from gpt_helpers import write_shards

from llmworks.data.windows import WindowDataModule
from llmworks.errors import LlmworksError
from llmworks.models.gpt import GPT, GPTConfig
from llmworks.training import param_groups, warmup_cosine


class FakeTrainer:
    def __init__(self, rank: int, world: int):
        self.global_rank, self.world_size = rank, world


def datamodule(root, rank=0, world=1, **kw) -> WindowDataModule:
    dm = WindowDataModule(
        root,
        None,
        block_size=kw.pop("block_size", 16),
        batch_size=4,
        val_windows=kw.pop("val_windows", 10),
        seed=3,
        **kw,
    )
    dm.trainer = FakeTrainer(rank, world)
    dm.setup("fit")
    return dm


def windows(loader, epoch=0) -> list[tuple[int, ...]]:
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    return [tuple(x.tolist()) for xb, _ in loader for x in xb]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("data"))


def test_windows_are_shifted_pairs_from_the_stream(shards):
    dm = datamodule(shards)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_train_order_is_seeded_and_changes_per_epoch(shards):
    a, b = datamodule(shards), datamodule(shards)
    assert windows(a.train_dataloader()) == windows(b.train_dataloader())
    assert windows(a.train_dataloader(), 0) != windows(a.train_dataloader(), 1)


def starts(loader, epoch=0) -> list[int]:
    loader.sampler.set_epoch(epoch)
    return [int(loader.dataset.starts[i]) for i in loader.sampler]


def test_ddp_ranks_get_disjoint_windows_without_repeats(shards):
    single = starts(datamodule(shards).train_dataloader())
    r0 = starts(datamodule(shards, 0, 2).train_dataloader())
    r1 = starts(datamodule(shards, 1, 2).train_dataloader())
    assert len(set(single)) == len(single) == len(datamodule(shards).train)
    assert not set(r0) & set(r1)
    assert len(r0) == len(r1) and len(r0) + len(r1) >= len(single) - 1
    assert len(set(r0)) == len(r0)


def test_validation_windows_are_fixed_and_split_exactly(shards):
    full = [int(s) for s in datamodule(shards).val.starts]
    assert len(full) == len(set(full)) == 10
    assert full == [int(s) for s in datamodule(shards).val.starts]
    parts = []
    for rank in range(3):
        loader = datamodule(shards, rank, 3).val_dataloader()
        parts += [int(loader.dataset.starts[i]) for i in loader.sampler]
    assert sorted(parts) == sorted(full)


def test_too_short_split_is_a_user_error(shards):
    with pytest.raises(LlmworksError, match="block_size"):
        datamodule(shards, block_size=100_000)


def test_no_weight_decay_on_norms_biases_embeddings():
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, d_model=8))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.weight",
        "blocks.0.ffn.fc.weight",
        "blocks.0.ffn.proj.weight",
    }
    assert no_decay["weight_decay"] == 0.0
    n_total = len({id(p) for p in model.parameters()})
    assert len(decay["params"]) + len(no_decay["params"]) == n_total


def test_warmup_then_cosine():
    lr = [warmup_cosine(s, 10, 110, 0.1) for s in range(120)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert lr[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr[110] == pytest.approx(0.1) and lr[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lr[9:], lr[10:], strict=False))


def test_resume_only_from_a_checkpoint_with_the_same_hyperparameters(tmp_path):
    from llmworks.training import resume_checkpoint

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert resume_checkpoint(tmp_path) is None
    ckpt.parent.mkdir()
    hp = {"model": {"n_layer": 2}, "optim": {"lr": 1e-3, "betas": [0.9, 0.95]}}
    torch.save({"hyper_parameters": hp | {"optim": {"lr": 1e-3, "betas": (0.9, 0.95)}}}, ckpt)
    assert resume_checkpoint(tmp_path, hp) == ckpt
    assert resume_checkpoint(tmp_path, hp | {"model": {"n_layer": 3}}) is None
    assert not ckpt.exists()


def test_no_resume_from_a_finished_run(tmp_path):
    from llmworks.training import resume_checkpoint

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    torch.save({"hyper_parameters": {}, "global_step": 10}, ckpt)
    assert resume_checkpoint(tmp_path, {}, max_steps=20) == ckpt  # raised max_steps: train on
    assert resume_checkpoint(tmp_path, {}, max_steps=10) is None
    assert not ckpt.exists()


@pytest.mark.parametrize(
    ("precision", "clip", "fused"),
    [("bf16-mixed", 1.0, False), ("bf16-mixed", None, True), ("32-true", 1.0, True)],
)
def test_fused_adamw_only_where_lightning_can_clip_it(precision, clip, fused):
    """Lightning's AMP plugin refuses to clip gradients of the fused AdamW (found on an H100:
    trainer=gpu, bf16-mixed, gradient_clip_val 1.0 stopped the first step)."""
    import lightning as L

    from llmworks.training.optim import use_fused_adamw

    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,
        gradient_clip_val=clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    assert use_fused_adamw(True, trainer) is fused
    assert use_fused_adamw(False, trainer) is False
