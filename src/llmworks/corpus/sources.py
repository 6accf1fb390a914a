"""Every corpus enters through ``datasets.load_dataset``: hub datasets, local files and the
embedded Wikipedia sample alike, so that one code path is tested offline and used online."""

from __future__ import annotations

import glob
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from omegaconf import DictConfig, ListConfig

from llmworks.corpus import wiki_sample
from llmworks.errors import LlmworksError

_LOADER_BY_SUFFIX = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}
LOCAL_HINT = (
    "To train on your own text offline: corpus=local corpus.data_files='path/to/*.txt' "
    "(text, json/jsonl or parquet); the embedded default needs no network: corpus=wiki_sample."
)


def load_documents(corpus: DictConfig, work_dir: str | Path) -> datasets.Dataset:
    """Load the configured corpus as a ``Dataset`` with one ``text`` column, in source order.

    Local and embedded sources are cached under ``work_dir`` (a scratch directory the caller
    owns, so no stale cache outlives the run); hub downloads use the datasets cache.
    """
    source = corpus.source
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    if source == "embedded":
        jsonl = wiki_sample.write_jsonl(Path(work_dir) / "wiki_sample.jsonl")
        return _load_local([str(jsonl)], corpus, cache_dir=str(work_dir))
    if source == "local":
        return _load_local(_resolve_files(corpus.data_files), corpus, cache_dir=str(work_dir))
    if source == "hub":
        return _load_hub(corpus)
    raise LlmworksError(f"corpus.source must be embedded, local or hub, not {source!r}")


def _resolve_files(data_files: Any) -> list[str]:
    if data_files is None or data_files == "???":
        raise LlmworksError("corpus=local needs corpus.data_files=<file, directory or glob>")
    patterns = list(data_files) if isinstance(data_files, list | ListConfig) else [data_files]
    files: list[str] = []
    for pattern in map(str, patterns):
        path = Path(pattern).expanduser()
        if path.is_dir():
            matches = sorted(str(p) for p in path.rglob("*") if p.suffix in _LOADER_BY_SUFFIX)
        else:
            matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            raise LlmworksError(f"corpus.data_files: no file matches {pattern!r}")
        files.extend(matches)
    empty = [f for f in files if Path(f).is_file() and Path(f).stat().st_size == 0]
    if empty and len(empty) == len(files):
        raise LlmworksError(f"corpus.data_files: every file is empty (0 bytes): {empty[:5]}")
    return files


def _loader_for(files: list[str], fmt: str) -> str:
    if fmt != "auto":
        return fmt
    loaders = {_LOADER_BY_SUFFIX.get(Path(f).suffix.lower()) for f in files}
    if None in loaders or len(loaders) != 1:
        suffixes = sorted({Path(f).suffix for f in files})
        raise LlmworksError(
            f"cannot infer one loader for files with suffixes {suffixes}; "
            "set corpus.format=text|json|parquet"
        )
    return loaders.pop()


def _load_local(files: list[str], corpus: DictConfig, cache_dir: str) -> datasets.Dataset:
    loader = _loader_for(files, corpus.format)
    kwargs: dict[str, Any] = {}
    if loader == "text":
        kwargs = dict(
            sample_by=corpus.sample_by,
            encoding=corpus.encoding,
            encoding_errors=corpus.encoding_errors,
        )
    try:
        ds = datasets.load_dataset(
            loader, data_files=files, split="train", cache_dir=cache_dir, **kwargs
        )
    except Exception as exc:
        raise LlmworksError(_explain_local_failure(exc, files)) from exc
    return _select_text(ds, corpus.text_field)


def _explain_local_failure(exc: BaseException, files: list[str]) -> str:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    for err in chain:
        if isinstance(err, UnicodeDecodeError):
            return (
                f"corpus file is not valid UTF-8 ({err.reason} at byte {err.start}) in one of "
                f"{files[:3]}{'…' if len(files) > 3 else ''}; convert it (iconv -t UTF-8) or set "
                "corpus.encoding=<its encoding> (or corpus.encoding_errors=replace)"
            )
    return f"could not read corpus files {files[:3]}: {chain[-1]}"


def _select_text(ds: datasets.Dataset, field: str) -> datasets.Dataset:
    if field not in ds.column_names:
        raise LlmworksError(
            f"corpus.text_field={field!r} is not a column of the corpus (columns: {ds.column_names})"
        )
    ds = ds.select_columns([field])
    return ds.rename_column(field, "text") if field != "text" else ds


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True  # cannot probe through a proxy cheaply; let datasets try
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_offline() -> bool:
    flag = os.environ.get("HF_DATASETS_OFFLINE") or os.environ.get("HF_HUB_OFFLINE") or ""
    return flag.upper() in {"1", "ON", "YES", "TRUE"}


def _load_hub(corpus: DictConfig) -> datasets.Dataset:
    name = f"{corpus.path}" + (f" ({corpus.config_name})" if corpus.get("config_name") else "")
    if not _hub_offline() and not _hub_reachable():
        raise LlmworksError(
            f"hub corpus {name} needs the network and the Hugging Face hub is unreachable. "
            f"If it is already in your datasets cache, set HF_DATASETS_OFFLINE=1. {LOCAL_HINT}"
        )
    splits = corpus.get("source_splits")
    splits = list(splits) if splits else None
    try:
        if corpus.get("streaming"):
            return _load_streaming(corpus, splits)
        loaded = datasets.load_dataset(corpus.path, corpus.get("config_name"), split=None)
    except Exception as exc:
        raise LlmworksError(f"could not load hub corpus {name}: {exc}. {LOCAL_HINT}") from exc
    parts = [loaded[s] for s in (splits or list(loaded))]
    ds = datasets.concatenate_datasets([_select_text(p, corpus.text_field) for p in parts])
    if corpus.get("grouping") == "wikitext_articles":
        ds = datasets.Dataset.from_generator(
            _group_wikitext, gen_kwargs={"lines": ds["text"]}, keep_in_memory=True
        )
    return ds


def _load_streaming(corpus: DictConfig, splits: list[str] | None) -> datasets.Dataset:
    """Stream a large hub corpus and keep its first ``max_documents`` documents."""
    cap = corpus.get("max_documents")
    if not cap:
        raise LlmworksError("a streaming corpus needs corpus.max_documents (a document cap)")
    stream = datasets.load_dataset(
        corpus.path, corpus.get("config_name"), split=(splits or ["train"])[0], streaming=True
    )
    field = corpus.text_field

    def take() -> Iterator[dict[str, str]]:
        for i, row in enumerate(stream):
            if i >= cap:
                return
            yield {"text": row[field]}

    return datasets.Dataset.from_generator(take, keep_in_memory=True)


def _group_wikitext(lines: list[str]) -> Iterator[dict[str, str]]:
    """WikiText holds one line per row; an article starts at a ' = Title = ' line."""
    article: list[str] = []
    for line in lines:
        stripped = line.strip()
        is_title = stripped.startswith("= ") and stripped.endswith(" =") and stripped[2] != "="
        if is_title and article:
            yield {"text": "\n\n".join(article)}
            article = []
        if stripped and not stripped.startswith("="):
            article.append(stripped)
    if article:
        yield {"text": "\n\n".join(article)}
