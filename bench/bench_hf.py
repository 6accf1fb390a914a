"""Published checkpoints in llmworks against transformers itself, each comparison in one run.

    python bench/bench_hf.py import   # a random ~1B Llama-shaped checkpoint: load time, peak RSS
    python bench/bench_hf.py decode   # greedy KV-cached decoding of a ~100M random Llama
    python bench/bench_hf.py train    # continued pretraining: our stage vs HF Trainer

- import: the checkpoint (Llama 3.2 1B's shape, random bf16 weights, 2.5 GB of safetensors)
  loaded in a fresh process by ``from_hf`` and by ``AutoModelForCausalLM.from_pretrained``,
  both in bf16, and run once over 8 tokens (so every weight has been read); wall time
  (imports included) and peak RSS (``VmHWM``) against the weights' size and against a
  process that only imports torch and transformers.
- decode: the same greedy continuation (16-token prompt, 128 new tokens, the KV cache) by
  ``llmworks.generation.generate`` and by ``generate(do_sample=False)``, rounds alternated;
  tokens/s (the prefill included in both).
- train: a ~30M-parameter random Llama with our BPE tokenizer continued on the embedded
  corpus's shards (``dvc repro encode@bpe`` first): our ``train@gpt`` stage
  (``gpt.init_from``) and HF ``Trainer`` on the same windows, batch, learning rate and
  optimizer; training tokens/s after the first steps (ours: ThroughputMonitor's windows;
  theirs: the same clock on its steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_gpt import machine, rounds  # bench/ is on sys.path

REPO = Path(__file__).resolve().parents[1]


def random_checkpoint(out: Path, dtype: torch.dtype, seed: int = 0, **shape) -> Path:
    """A Llama checkpoint of random weights written straight from the meta model's shapes
    (no float32 model is ever built)."""
    import transformers as tf
    from safetensors.torch import save_file

    config = tf.LlamaConfig(**shape)
    with torch.device("meta"):
        names = {k: v.shape for k, v in tf.LlamaForCausalLM(config).state_dict().items()}
    if config.tie_word_embeddings:
        names.pop("lm_head.weight", None)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shp in names.items():
        tensor = torch.ones(shp) if "norm" in name else torch.randn(shp, generator=g) * 0.02
        state[name] = tensor.to(dtype)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    config.torch_dtype = dtype
    config.save_pretrained(out)
    return out


LLAMA_1B = dict(
    hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
    num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, max_position_embeddings=2048,
)  # fmt: skip
LLAMA_100M = dict(
    hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
    num_key_value_heads=4, vocab_size=32000, max_position_embeddings=1024,
)  # fmt: skip


# each loads the model and runs one forward pass over 8 tokens: transformers keeps the
# tensors memory-mapped and untouched until they are used, so "loaded" means "used once"
LOADERS = {
    "baseline": "import torch, transformers",
    "ours": (
        "import torch; from llmworks.families.gpt.hf import from_hf; "
        "m, _ = from_hf({path!r}, dtype=torch.bfloat16); "
        "torch.no_grad()(m)(torch.arange(8)[None])"
    ),
    "hf": (
        "import torch; from transformers import AutoModelForCausalLM; "
        "m = AutoModelForCausalLM.from_pretrained({path!r}, dtype=torch.bfloat16); "
        "torch.no_grad()(m)(torch.arange(8)[None])"
    ),
}


def load_in_fresh_process(kind: str, path: Path) -> dict[str, float]:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report
    # this process's peak (which wrote the checkpoint)
    code = (
        "import re, time; t = time.perf_counter(); "
        + LOADERS[kind].format(path=str(path))
        + "; hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)"
        + "; print(time.perf_counter() - t, hwm)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, kib = out.stdout.split()[-2:]
    return {"seconds": float(seconds), "peak_rss_gb": int(kib) / 2**20}


def bench_import(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = random_checkpoint(Path(tmp) / "llama-1b", torch.bfloat16, **LLAMA_1B)
        weights_gb = (path / "model.safetensors").stat().st_size / 2**30
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in LOADERS}
        for r in range(args.rounds):
            for kind in LOADERS if r % 2 == 0 else reversed(LOADERS):
                runs[kind].append(load_in_fresh_process(kind, path))
    med = {
        k: {m: statistics.median(x[m] for x in v) for m in ("seconds", "peak_rss_gb")}
        for k, v in runs.items()
    }
    base = med["baseline"]["peak_rss_gb"]
    return {
        "weights_gb": weights_gb,
        **med,
        "ours_rss_over_weights": med["ours"]["peak_rss_gb"] / weights_gb,
        "hf_rss_over_weights": med["hf"]["peak_rss_gb"] / weights_gb,
        "ours_rss_above_baseline_over_weights": (med["ours"]["peak_rss_gb"] - base) / weights_gb,
        "seconds_ratio_ours_over_hf": med["ours"]["seconds"] / med["hf"]["seconds"],
    }


def bench_decode(args) -> dict:
    from transformers import AutoModelForCausalLM

    from llmworks.families.gpt.hf import from_hf
    from llmworks.generation import generate

    with tempfile.TemporaryDirectory() as tmp:
        path = random_checkpoint(Path(tmp) / "llama-100m", torch.float32, **LLAMA_100M)
        ours, _ = from_hf(path)
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompt = torch.randint(
        0, LLAMA_100M["vocab_size"], (1, 16), generator=torch.Generator().manual_seed(0)
    )
    n = args.new_tokens
    same = torch.equal(
        generate(ours, prompt, n, temperature=0.0),
        hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0),
    )

    def timed(fn):
        def run() -> float:
            t = time.perf_counter()
            with torch.no_grad():
                out = fn()
            assert out.shape[1] == prompt.shape[1] + n
            return n / (time.perf_counter() - t)

        return run

    res = rounds(
        {
            "ours": timed(lambda: generate(ours, prompt, n, temperature=0.0)),
            "hf": timed(
                lambda: hf.generate(
                    prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0
                )
            ),
        },
        args.rounds,
    )
    return res | {"ratio": res["ours"] / res["hf"], "same_tokens": same,
                  "params_m": sum(p.numel() for p in ours.parameters()) / 1e6}  # fmt: skip


def bench_train(args) -> dict:
    """Both continue the same random checkpoint on the same windows for ``args.steps``,
    ``args.rounds`` times, alternating which goes first."""
    import shutil

    from transformers import LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from llmworks.config import compose_config, typed
    from llmworks.families.gpt.data import WindowDataModule
    from llmworks.families.gpt.settings import WindowDataConfig
    from llmworks.training.optim import OptimConfig

    data = Path(args.data)
    tok_json = data / "tokenizers" / "bpe" / "tokenizer.json"
    vocab = json.loads((data / "tokens" / "bpe" / "meta.json").read_text())["vocab_size"]
    shape = dict(
        hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
        num_key_value_heads=2, vocab_size=vocab, tie_word_embeddings=True,
        max_position_embeddings=args.seq_len,
    )  # fmt: skip
    common = [
        f"gpt.train.max_steps={args.steps}", "gpt.train.val_check_interval=100000",
        "gpt.train.limit_val_batches=0", f"gpt.data.batch_size={args.batch_size}",
        f"gpt.data.seq_len={args.seq_len}", "gpt.export=false",
    ]  # fmt: skip
    cfg = compose_config(common)
    optim = typed(OptimConfig, cfg.gpt.optim, "gpt.optim")
    dm = WindowDataModule(
        data / "tokens" / "bpe", tok_json, args.seq_len,
        typed(WindowDataConfig, cfg.gpt.data, "gpt.data"), int(cfg.seed),
    )  # fmt: skip
    dm.setup("fit")
    windows = dm.train

    class Examples(torch.utils.data.Dataset):
        def __len__(self):
            return len(windows)

        def __getitem__(self, i):
            x, y = windows[i]
            return {"input_ids": x, "labels": torch.cat([x[1:], y[-1:]])}

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        base = random_checkpoint(Path(tmp) / "base", torch.float32, **shape)
        shutil.copyfile(tok_json, base / "tokenizer.json")

        def ours() -> float:
            out = Path(tempfile.mkdtemp(dir=tmp))
            cmd = [
                sys.executable, str(REPO / "pipelines" / "train.py"), "family=gpt",
                f"gpt.init_from={base}", "gpt.tokenizer=bpe", f"paths.data={data}",
                f"paths.models={out / 'models'}", f"paths.runs={out / 'runs'}",
                f"paths.metrics={out / 'metrics'}", f"hydra.run.dir={out / 'h'}", "logger=none",
                "callbacks.throughput.window_size=5", *common,
            ]  # fmt: skip
            subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
            return json.loads((out / "metrics" / "train" / "gpt.json").read_text())["tokens_per_s"]

        def hf() -> float:
            model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
            clock = Clock()
            targs = TrainingArguments(
                output_dir=tempfile.mkdtemp(dir=tmp), max_steps=args.steps,
                per_device_train_batch_size=args.batch_size, learning_rate=optim.lr,
                weight_decay=optim.weight_decay, adam_beta1=optim.betas[0],
                adam_beta2=optim.betas[1], adam_epsilon=optim.eps, max_grad_norm=1.0,
                warmup_steps=optim.warmup_steps, lr_scheduler_type="cosine", logging_steps=10**6,
                save_strategy="no", report_to=[], dataloader_num_workers=0, use_cpu=True,
            )  # fmt: skip
            Trainer(model=model, args=targs, train_dataset=Examples(), callbacks=[clock]).train()
            t, warm = clock.times, args.warmup
            return (len(t) - 1 - warm) * args.batch_size * args.seq_len / (t[-1] - t[warm])

        res = rounds({"ours": ours, "hf_trainer": hf}, args.rounds)
    return res | {"ratio": res["ours"] / res["hf_trainer"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["import", "decode", "train"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--data", default=str(REPO / "data"))
    args = parser.parse_args()
    fns = {"import": bench_import, "decode": bench_decode, "train": bench_train}
    report = {"machine": machine(), "args": vars(args), args.what: fns[args.what](args)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
