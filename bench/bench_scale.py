"""Corpus -> tokenizer -> encode on a local corpus grown 1x, 10x and 100x from the embedded
Wikipedia sample (~2.9 MB of text; each copy of an article gets a marker line so the corpus
stage's de-duplication keeps it): wall time and peak memory of each stage, which for encode
must not grow with the corpus. Peak RSS (GNU time) counts the pages of the memory-mapped
corpus a stage has read; peak anonymous RSS (polled from /proc) is the stage's own memory.

    python bench/bench_scale.py --factors 1 10 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def grow(out: Path, factor: int) -> int:
    """``factor`` copies of the embedded sample as one JSONL file; returns its bytes."""
    from llmworks.corpus.wiki_sample import iter_articles

    articles = [a["text"] for a in iter_articles()]
    with out.open("w", encoding="utf-8") as f:
        for copy in range(factor):
            for i, text in enumerate(articles):
                f.write(json.dumps({"text": f"Copy {copy} of article {i}.\n\n{text}"}) + "\n")
    return out.stat().st_size


def peak_anon_gib(proc: subprocess.Popen, interval: float = 0.05) -> float:
    """The largest ``RssAnon`` of ``proc``'s child (the stage under GNU time) while it runs:
    the process's own memory, without the file pages of the memory-mapped corpus, which
    count in RSS but belong to the page cache."""
    peak = 0
    while proc.poll() is None:
        for child in Path(f"/proc/{proc.pid}/task").glob("*/children"):
            for pid in child.read_text().split():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]))
        time.sleep(interval)
    return peak / 2**20


def stage(script: str, args: list[str], out: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (GiB, GNU time) and peak anonymous RSS (GiB) of one stage run."""
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_DATASETS_OFFLINE": "1"}
    cmd = ["/usr/bin/time", "-f", "%e %M", "-o", str(out), sys.executable,
           str(REPO / "pipelines" / f"{script}.py"), *args]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    anon = peak_anon_gib(proc)
    if proc.wait() != 0:
        raise SystemExit(f"{script} failed: {' '.join(cmd)}")
    seconds, kib = out.read_text().split()[-2:]
    return float(seconds), int(kib) / 2**20, anon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()
    rows = []
    for factor in args.factors:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            size = grow(root / "corpus.jsonl", factor)
            common = [
                "corpus=local", f"corpus.data_files={root / 'corpus.jsonl'}", f"paths.data={root / 'data'}",
                f"hydra.run.dir={root / 'h'}", "logger=none", "+only=bpe",
            ]  # fmt: skip
            row = {"factor": factor, "MB": size / 1e6}
            for script in ("prepare_corpus", "train_tokenizer", "encode"):
                args_ = [a for a in common if not (script == "prepare_corpus" and a == "+only=bpe")]
                row[script] = stage(script, args_, root / f"{script}.time")
                print(factor, script, row[script], flush=True)
            tokens = json.loads((root / "data/tokens/bpe/meta.json").read_text())["splits"]
            row["tokens"] = sum(s["tokens"] for s in tokens.values())
            rows.append(row)
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores\n")
    print("Each cell: wall, MB/s, peak RSS / peak anonymous RSS (GiB).\n")
    print("| corpus | text | tokens (bpe) | corpus stage | tokenizer (bpe) | encode (bpe) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            f"{r[s][0]:.0f} s, {r['MB'] / r[s][0]:.1f} MB/s, {r[s][1]:.2f} / {r[s][2]:.2f}"
            for s in ("prepare_corpus", "train_tokenizer", "encode")
        ]
        print(
            f"| {r['factor']}x | {r['MB']:.0f} MB | {r['tokens'] / 1e6:.1f} M | "
            + " | ".join(cells)
            + " |"
        )


if __name__ == "__main__":
    main()
