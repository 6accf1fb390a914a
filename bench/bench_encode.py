"""Encode throughput: the encode stage's loop against the bare tokenizer and against
nanoGPT's ``prepare.py`` way (``datasets.map(num_proc=N)``, then one memmap), on the same
text, tokenizer and cores, the three alternating round by round.

The corpus is the embedded sample grown ``--factor`` times (as bench_scale.py grows it),
prepared by the corpus stage, with the BPE tokenizer trained on it. Usage:

    python bench/bench_encode.py --factor 30 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import datasets
import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import REPO, grow  # noqa: E402

from llmworks.data.encode import encode_split, text_batches  # noqa: E402

BATCH_DOCS, BATCH_BYTES = 1000, 4_000_000  # conf/config.yaml's encode defaults


def ours(split: datasets.Dataset, tok: Tokenizer, eot: int, out: Path) -> int:
    """The stage's loop: stream batches from Arrow, encode, append to the shard."""
    return encode_split(split, tok, eot, out, np.dtype(np.uint16), BATCH_DOCS, BATCH_BYTES)[
        "tokens"
    ]


def bare(texts: list[list[str]], tok: Tokenizer) -> int:
    """The tokenizer alone on batches already in memory: no reading, no writing."""
    return sum(len(e.ids) + 1 for batch in texts for e in tok.encode_batch_fast(batch))


def nanogpt(split: datasets.Dataset, tok_path: Path, eot: int, out: Path, procs: int) -> int:
    """nanoGPT's prepare.py: ``map`` in ``procs`` processes to id lists, then concatenate
    them into one memmap in shards."""
    tok = Tokenizer.from_file(str(tok_path))

    def process(batch: dict[str, list]) -> dict[str, list]:
        ids = [e.ids + [eot] for e in tok.encode_batch_fast(batch["text"])]
        return {"ids": ids, "len": [len(i) for i in ids]}

    tokenized = split.map(
        process, batched=True, remove_columns=["text"], num_proc=procs, load_from_cache_file=False
    )
    total = int(np.sum(tokenized["len"], dtype=np.int64))
    arr = np.memmap(out, dtype=np.uint16, mode="w+", shape=(total,))
    shards, index = 64, 0
    for i in range(shards):
        part = tokenized.shard(num_shards=shards, index=i, contiguous=True).with_format("numpy")
        if len(part):
            chunk = np.concatenate(part["ids"])
            arr[index : index + len(chunk)] = chunk
            index += len(chunk)
    arr.flush()
    tokenized.cleanup_cache_files()
    return total


def prepare(root: Path, factor: int) -> tuple[datasets.Dataset, Path]:
    """The grown corpus through the corpus and tokenizer stages (BPE only)."""
    mb = grow(root / "corpus.jsonl", factor) / 1e6
    common = [
        "corpus=local", f"corpus.data_files={root / 'corpus.jsonl'}", f"paths.data={root / 'data'}",
        f"hydra.run.dir={root / 'h'}", "logger=none",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_DATASETS_OFFLINE": "1"}
    for script, extra in (("prepare_corpus", []), ("train_tokenizer", ["+only=bpe"])):
        subprocess.run(
            [sys.executable, str(REPO / "pipelines" / f"{script}.py"), *common, *extra],
            check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    print(f"# corpus grown {factor}x: {mb:.0f} MB of JSONL", flush=True)
    train = datasets.load_from_disk(str(root / "data/corpus/dataset"))["train"]
    return train, root / "data/tokenizers/bpe/tokenizer.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factor", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--procs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        split, tok_path = prepare(root, args.factor)
        tok = Tokenizer.from_file(str(tok_path))
        eot = tok.token_to_id("<|endoftext|>")
        batches = list(text_batches(split, BATCH_DOCS, BATCH_BYTES))
        texts = [batch for batch, _ in batches]
        mb = sum(size for _, size in batches) / 1e6
        contestants = {
            "llmworks encode_split": lambda: ours(split, tok, eot, root / "ours.bin"),
            "bare encode_batch_fast": lambda: bare(texts, tok),
            f"nanoGPT map(num_proc={args.procs})": lambda: nanogpt(
                split, tok_path, eot, root / "nanogpt.bin", args.procs
            ),
        }
        seconds: dict[str, list[float]] = {name: [] for name in contestants}
        tokens: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, run in contestants.items():
                start = time.perf_counter()
                tokens[name] = run()
                seconds[name].append(time.perf_counter() - start)
                print(f"{name}: {seconds[name][-1]:.2f} s", flush=True)
        same = (root / "ours.bin").read_bytes() == (root / "nanogpt.bin").read_bytes()
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, train split "
        f"{mb:.1f} MB, {tokens['llmworks encode_split'] / 1e6:.1f} M tokens; ours and "
        f"nanoGPT's files {'byte-identical' if same else 'DIFFER'}\n"
    )
    base = statistics.median(seconds["bare encode_batch_fast"])
    print("| encoder | seconds (rounds) | MB/s (median) | vs bare tokenizer |")
    print("|---|---|---|---|")
    for name, values in seconds.items():
        med = statistics.median(values)
        print(
            f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {mb / med:.2f} | "
            f"{base / med:.2f}× |"
        )


if __name__ == "__main__":
    main()
