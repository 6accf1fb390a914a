"""The Transformers' optimizer (``training/optim.py``): weight decay on matrices only,
warmup + cosine, and the fused AdamW only where Lightning can clip it."""

from __future__ import annotations

import math

import pytest

from llmworks.families.gpt.model import GPT
from llmworks.training.optim import param_groups, warmup_cosine, warmup_stable_decay

from conftest import gpt_config


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


def test_warmup_stable_decay_holds_the_peak_then_falls_linearly():
    lr = [warmup_stable_decay(s, 10, 110, 0.1, cooldown=0.4) for s in range(120)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert lr[10:67] == [1.0] * 57  # decay starts at 110 - 44 = 66
    assert lr[88] == pytest.approx(1 - 0.9 * 0.5)  # half-way down the last 44 steps
    assert lr[110] == pytest.approx(0.1) and lr[119] == pytest.approx(0.1)
    # cooldown 1.0: one cycle, straight down from the end of the warmup
    one_cycle = [warmup_stable_decay(s, 10, 110, 0.0, cooldown=1.0) for s in range(111)]
    assert one_cycle[10] == 1.0 and one_cycle[60] == pytest.approx(0.5) and one_cycle[110] == 0.0


def test_a_schedule_the_optimizer_does_not_know_is_refused():
    with pytest.raises(ValueError, match="schedule='linear'"):
        muon_config(schedule="linear")
    with pytest.raises(ValueError, match="cooldown"):
        muon_config(schedule="wsd", cooldown=1.5)


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


def muon_config(**kw):
    from llmworks.training.optim import OptimConfig

    values = dict(name="muon", lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8,
                  warmup_steps=2, min_lr_ratio=0.1, muon_momentum=0.95, muon_ns_steps=5,
                  schedule="cosine", cooldown=0.4)  # fmt: skip
    return OptimConfig(**{**values, **kw})


def test_our_cpu_muon_step_is_torchs_in_float32():
    """Ours orthogonalises in float32 on CPU; torch in bfloat16. Three steps on the same
    gradients land on the same weights to bfloat16's precision."""
    import torch

    from llmworks.training.muon import Muon

    torch.manual_seed(0)
    w0 = torch.randn(48, 16) * 0.1
    grads = [torch.randn(48, 16) for _ in range(3)]
    weights = []
    for cls in (Muon, torch.optim.Muon):
        w = torch.nn.Parameter(w0.clone())
        opt = cls([w], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
        for g in grads:
            w.grad = g.clone()
            opt.step()
        weights.append(w.detach())
    ours, torchs = weights
    step = (torchs - w0).norm()
    assert (ours - torchs).norm() / step < 0.02  # bf16 keeps ~3 significant digits
    assert not torch.equal(ours, w0)


def newton_schulz_float64(x, coefficients, steps):
    """The quintic iteration as written in torch.optim.Muon, in float64: the reference."""
    a, b, c = coefficients
    tall = x.size(0) > x.size(1)
    x = (x.T if tall else x).double()
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def test_the_gram_form_is_the_same_iteration():
    """In float64 the Gram form equals the direct iteration to rounding, for any step count."""
    import torch

    from llmworks.training.muon import gram_newton_schulz

    torch.manual_seed(0)
    coefficients = torch.optim.Muon([torch.nn.Parameter(torch.ones(2, 2))]).defaults[
        "ns_coefficients"
    ]
    for steps in (2, 3, 5):
        x = torch.randn(24, 96, dtype=torch.float64)
        x = x / x.norm()
        reference = newton_schulz_float64(x, coefficients, steps)
        torch.testing.assert_close(gram_newton_schulz(x, coefficients, steps), reference)


@pytest.mark.parametrize("shape", [(256, 1024), (1024, 256), (768, 256), (256, 256), (96, 128)])
def test_our_float32_orthogonalisation_is_the_float64_iteration(shape):
    """Wide or tall (Gram form) and near-square (direct form), on an ill-conditioned update
    like a real gradient (rank 8 plus noise): within 1e-3 of the float64 iteration, and
    orthogonal as torch's iteration makes it (singular values within its 0.68-1.13 band)."""
    import torch

    from llmworks.training.muon import newton_schulz_fp32

    torch.manual_seed(0)
    m, n = shape
    update = torch.randn(m, 8) @ torch.randn(8, n) + 0.01 * torch.randn(m, n)
    coefficients = (3.4445, -4.775, 2.0315)
    ours = newton_schulz_fp32(update, coefficients, 5, 1e-7)
    reference = newton_schulz_float64(update, coefficients, 5)
    assert ours.dtype == torch.float32 and ours.shape == update.shape
    assert ((ours.double() - reference).norm() / reference.norm()).item() < 1e-3
    top = torch.linalg.svdvals(ours.double())[:8]
    assert top.min() > 0.6 and top.max() < 1.2


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    from llmworks.training.muon import MuonWithAdamW
    from llmworks.training.optim import configure_optimizer

    model = GPT(gpt_config(50, block_size=8, n_layer=2, n_head=2, d_model=8, tie_weights=False))
    opt = configure_optimizer(model, muon_config(), 10, adamw_only=(model.lm_head.weight,))
    optimizer = opt["optimizer"]
    assert isinstance(optimizer, MuonWithAdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in optimizer.muon.param_groups for p in g["params"]}
    adamw = {names[id(p)] for g in optimizer.adamw.param_groups for p in g["params"]}
    assert muon == {n for n in names.values() if n.startswith("blocks.") and n.endswith("weight")
                    and "norm" not in n}  # fmt: skip
    assert "lm_head.weight" in adamw and "wte.weight" in adamw
    assert muon.isdisjoint(adamw) and muon | adamw == set(names.values())
    # the scheduler drives both optimizers through the shared group dicts
    lrs = {g["lr"] for o in (optimizer.muon, optimizer.adamw) for g in o.param_groups}
    assert lrs == {1.5e-3}  # step 0 of a 2-step warmup: half the peak


def test_muon_with_adamw_resumes_from_its_state_dict_exactly():
    import torch

    from llmworks.training.optim import configure_optimizer

    def make():
        torch.manual_seed(0)
        model = GPT(gpt_config(50, block_size=8, n_layer=1, n_head=2, d_model=8))
        return model, configure_optimizer(model, muon_config(), 10)["optimizer"]

    def train_step(model, optimizer, seed):
        x = torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(seed))
        optimizer.zero_grad()
        model(x[:, :-1], x[:, 1:])[1].backward()
        optimizer.step()

    straight, opt = make()
    for seed in range(4):
        train_step(straight, opt, seed)
    first, opt1 = make()
    for seed in range(2):
        train_step(first, opt1, seed)
    resumed, opt2 = make()
    resumed.load_state_dict(first.state_dict())
    opt2.load_state_dict(opt1.state_dict())
    for seed in (2, 3):
        train_step(resumed, opt2, seed)
    after = resumed.state_dict()
    for name, weight in straight.state_dict().items():
        assert torch.equal(weight, after[name]), name


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="expected one of"):
        muon_config(name="sgd")
