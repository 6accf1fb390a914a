"""The GPT datamodule: deterministic windows, disjoint DDP ranks, fixed validation windows;
and the shared optimizer / schedule helpers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from gpt_helpers import write_shards

from llmworks.data.windows import WindowDataConfig, WindowDataModule
from llmworks.errors import LlmworksError
from llmworks.models.gpt import GPT
from llmworks.training.fit import Run, fingerprint
from llmworks.training.optim import param_groups, warmup_cosine

from conftest import gpt_config


class FakeTrainer:
    """What the datamodule reads of a trainer: rank, world size, and the loop's progress (a
    fresh run: epoch 0, nothing trained yet)."""

    def __init__(self, rank: int, world: int):
        self.global_rank, self.world_size = rank, world
        self.current_epoch = 0
        progress = SimpleNamespace(is_last_batch=False, current=SimpleNamespace(completed=0))
        self.fit_loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))


def datamodule(root, rank=0, world=1, **kw) -> WindowDataModule:
    data = WindowDataConfig(batch_size=4, val_windows=kw.pop("val_windows", 10), num_workers=0)
    dm = WindowDataModule(root, None, kw.pop("block_size", 16), data, seed=3)
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
    gpt2_blocks = dict(pos="learned", norm="layernorm", mlp="gelu", bias=True)  # with biases
    model = GPT(gpt_config(50, block_size=8, n_layer=1, n_head=2, d_model=8, **gpt2_blocks))
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


def _checkpoint(run_dir, fp: str, session: int = 0) -> None:
    path = run_dir / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = {"fingerprint": fp, "wandb_id": "w1", "session": session}
    torch.save({"global_step": 5, "llmworks": stamp}, path)


def test_resume_only_an_unfinished_run_of_the_same_fingerprint(tmp_path):
    fp = fingerprint({"model": {"n_layer": 2}}, 1337, "data-a")
    assert Run.open(tmp_path, fp).resume_from is None  # nothing to resume
    _checkpoint(tmp_path, fp, session=1)
    run = Run.open(tmp_path, fp)
    assert run.resume_from == tmp_path / "checkpoints" / "last.ckpt"
    assert (run.wandb_id, run.session) == ("w1", 2)  # the same W&B run, its next session
    # another config, seed or data: another run, which does not continue this one
    for other in (
        fingerprint({"model": {"n_layer": 3}}, 1337, "data-a"),
        fingerprint({"model": {"n_layer": 2}}, 1, "data-a"),
        fingerprint({"model": {"n_layer": 2}}, 1337, "data-b"),
    ):
        fresh = Run.open(tmp_path, other)
        assert fresh.resume_from is None and fresh.session == 0 and fresh.wandb_id != "w1"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()  # nothing deleted up front
    Run.open(tmp_path, fp).mark_finished()
    assert Run.open(tmp_path, fp).resume_from is None  # a finished run is repeated afresh


def test_a_damaged_checkpoint_is_a_one_line_error_naming_it(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(LlmworksError, match="last.ckpt cannot be read.*train afresh"):
        Run.open(tmp_path, "fp")


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
