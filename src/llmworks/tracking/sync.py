"""``llmworks-sync <wandb dir>``: upload offline W&B runs and complete their lineage.

Offline, W&B records the artifacts a stage logs but cannot record the ones it uses; each
stage writes what it read into its run's config (``inputs``: name, type, digest, DVC hash).
This command runs ``wandb sync`` on every offline run, then marks each input as used by its
run through W&B's public API (the artifact version with that digest), so the lineage graph
shows corpus -> tokenizer -> token shards -> model -> evaluation. ``--dry-run`` prints the
edges found in the local records and uploads nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------- reading offline runs


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """Config, summary and state of an offline run, read back from its ``.wandb`` log.

    Offline runs keep no ``wandb-summary.json``; ``wandb leet inspect`` replays the log.
    """
    exe = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    out = subprocess.run(
        [exe, "leet", "inspect", "--summary", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    info = json.loads(out.stdout)
    run = next(r.run for r in records(run_dir) if r.WhichOneof("record_type") == "run")
    return info | {"group": run.run_group, "job_type": run.job_type}


def records(run_dir: str | Path) -> Iterator[Any]:
    """The protobuf records of an offline run's ``.wandb`` file (a LevelDB-style log: 32 KiB
    blocks of chunks, each with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(Path(run_dir).glob("*.wandb")).read_bytes()
    block, header, pos, pending = 32768, 7, 7, b""  # the file opens with a 7-byte ":W&B" header
    while pos + header <= len(data):
        left = block - pos % block
        if left < header:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + header : pos + header + length]
        pos += header + length
        if kind in (1, 4):  # FULL or LAST: a whole record is buffered
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_runs(wandb_dir: str | Path) -> list[Path]:
    """The offline run directories under a W&B directory, oldest first."""
    root = Path(wandb_dir)
    root = root / "wandb" if (root / "wandb").is_dir() else root
    return sorted(root.glob("offline-run-*"))


# ----------------------------------------------------------------------------- lineage


@dataclass(frozen=True)
class OfflineRun:
    path: Path
    run_id: str
    project: str
    entity: str | None
    job_type: str
    group: str
    logged: dict[str, dict[str, Any]]  # artifact name -> {type, digest, metadata}
    inputs: dict[str, dict[str, Any]]  # artifact name -> {type, digest, dvc_md5}


def read_run(path: Path) -> OfflineRun:
    run = next(r.run for r in records(path) if r.WhichOneof("record_type") == "run")
    logged = {
        r.artifact.name: {
            "type": r.artifact.type,
            "digest": r.artifact.digest,
            "metadata": json.loads(r.artifact.metadata or "{}"),
        }
        for r in records(path)
        if r.WhichOneof("record_type") == "artifact"
    }
    info = read_offline_run(path)
    return OfflineRun(
        path,
        run.run_id,
        run.project,
        run.entity or None,
        info["job_type"],
        info["group"],
        logged,
        dict(info["config"].get("inputs") or {}),
    )


def lineage(runs: list[OfflineRun]) -> list[tuple[str, str, str]]:
    """``(producer job, artifact name, consumer job)`` for every input whose digest a run in
    ``runs`` logged (``"?"`` as producer where none did: an artifact logged earlier). Jobs
    read ``<group>/<job_type>``."""
    producers = {
        (name, art["digest"]): f"{r.group}/{r.job_type}"
        for r in runs
        for name, art in r.logged.items()
    }
    return [
        (producers.get((name, meta["digest"]), "?"), name, f"{r.group}/{r.job_type}")
        for r in runs
        for name, meta in sorted(r.inputs.items())
    ]


def link(run: OfflineRun) -> None:
    """Mark ``run``'s inputs as used, online (after ``wandb sync``)."""
    import wandb

    api = wandb.Api()
    prefix = f"{run.entity}/{run.project}" if run.entity else run.project
    online = api.run(f"{prefix}/{run.run_id}")
    for name, meta in run.inputs.items():
        versions = api.artifacts(meta["type"], f"{prefix}/{name}")
        match = next((a for a in versions if a.digest == meta["digest"]), None)
        if match is None:
            print(f"  {run.job_type}: no logged version of {name} with digest {meta['digest']}")
            continue
        online.use_artifact(match)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wandb_dir", type=Path, help="a W&B directory holding offline-run-*")
    parser.add_argument("--dry-run", action="store_true", help="print the lineage, upload nothing")
    args = parser.parse_args(argv)
    runs = [read_run(p) for p in offline_runs(args.wandb_dir)]
    if not runs:
        sys.exit(f"no offline runs under {args.wandb_dir}")
    for producer, name, consumer in lineage(runs):
        print(f"{producer} -> {name} -> {consumer}")
    if args.dry_run:
        return
    exe = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    for run in runs:
        subprocess.run([exe, "sync", str(run.path)], check=True)
    for run in runs:
        link(run)


if __name__ == "__main__":
    main()
