"""Every corpus enters through ``datasets.load_dataset``: hub datasets, local files and the
embedded Wikipedia sample alike, so that one code path is tested offline and used online."""

from __future__ import annotations

import glob
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from omegaconf import ListConfig

from llmworks.corpus import wiki_sample
from llmworks.corpus.config import CorpusConfig
from llmworks.errors import LlmworksError

log = logging.getLogger(__name__)
# Documents per batch where whole texts pass through Python or an Arrow writer (datasets'
# default is 1,000: 1,000 articles are ~30 MB, held several times over as Arrow, Python
# strings and output; a streamed head written in such batches grew the stage's memory).
TEXT_BATCH = 100

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


# What a source calls its splits -> ours (``corpus.split.by=source``).
SOURCE_SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}


def split_mode(corpus: CorpusConfig) -> str:
    """``corpus.split.by``: ``hash`` (assign each document by its hash; single-source text)
    or ``source`` (keep the corpus's own train/validation/test, so published numbers compare)."""
    mode = corpus.split.by
    if mode not in ("hash", "source"):
        raise LlmworksError(f"corpus.split.by={mode!r}: expected hash or source")
    named = isinstance(corpus.data_files, dict)
    if mode == "hash" and named:
        raise LlmworksError(
            "corpus.data_files names its splits; set corpus.split.by=source to keep them, or "
            "give one file, directory or glob to split by document hash"
        )
    if mode == "source" and corpus.source == "embedded":
        raise LlmworksError(
            f"corpus {corpus.name!r} has no splits of its own; use corpus.split.by=hash"
        )
    if mode == "source" and corpus.source == "local" and not named:
        raise LlmworksError(
            "corpus.split.by=source with a local corpus needs one entry per split: "
            "corpus.data_files='{train:a.txt,validation:b.txt,test:c.txt}'"
        )
    return mode


def check_split_names(names: list[str], where: str) -> None:
    """A source's own splits must be one each of train, validation and test (every later
    stage needs all three), under names we know."""
    unknown = sorted(set(names) - set(SOURCE_SPLIT_NAMES))
    if unknown:
        raise LlmworksError(
            f"{where} has splits {sorted(names)}; {unknown} are not one of "
            f"{sorted(SOURCE_SPLIT_NAMES)} (name them train, validation and test)"
        )
    ours = {SOURCE_SPLIT_NAMES[name] for name in names}
    missing = [s for s in ("train", "validation", "test") if s not in ours]
    if missing or len(ours) != len(names):
        raise LlmworksError(
            f"{where} has splits {sorted(names)}, not one each of train, validation and test "
            f"(missing: {missing or 'none; two names map to one split'}); give all three or "
            "use corpus.split.by=hash to split by document hash"
        )


def load_documents(corpus: CorpusConfig, work_dir: str | Path) -> datasets.Dataset:
    """Load the configured corpus as a ``Dataset`` with a ``text`` column, in source order;
    with ``corpus.split.by=source`` also a ``split`` column (train, validation or test) that
    the source assigned.

    Local and embedded sources are cached under ``work_dir`` (a scratch directory the caller
    owns, so no stale cache outlives the run); hub downloads use the datasets cache.
    """
    source = corpus.source
    by_source = split_mode(corpus) == "source"
    if corpus.streaming and not corpus.max_documents:  # before any file or network is read
        raise LlmworksError("a streaming corpus needs corpus.max_documents (a document cap)")
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    if source == "embedded":
        jsonl = wiki_sample.write_jsonl(Path(work_dir) / "wiki_sample.jsonl")
        return _load_local({"train": [str(jsonl)]}, corpus, str(work_dir), by_source)
    if source == "local":
        if by_source:  # before reading any file
            check_split_names(list(corpus.data_files), "corpus.data_files")
        files = (
            {name: _resolve_files(pattern) for name, pattern in corpus.data_files.items()}
            if by_source
            else {"train": _resolve_files(corpus.data_files)}
        )
        return _load_local(files, corpus, str(work_dir), by_source)
    if source == "hub":
        return _load_hub(corpus, by_source, str(work_dir))
    raise LlmworksError(f"corpus.source must be embedded, local or hub, not {source!r}")


def _own_splits(parts: dict[str, datasets.Dataset], where: str) -> datasets.Dataset:
    """A source's named splits as one ``Dataset`` with our split name in a ``split`` column."""
    check_split_names(list(parts), where)
    tagged = [
        part.add_column("split", [SOURCE_SPLIT_NAMES[name]] * len(part))
        for name, part in parts.items()
    ]
    return datasets.concatenate_datasets(tagged)


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


def _load_local(
    files: dict[str, list[str]], corpus: CorpusConfig, cache_dir: str, by_source: bool
) -> datasets.Dataset:
    every_file = [f for names in files.values() for f in names]
    loader = _loader_for(every_file, corpus.format)
    kwargs: dict[str, Any] = {}
    if loader == "text":
        kwargs = dict(
            sample_by=corpus.sample_by,
            encoding=corpus.encoding,
            encoding_errors=corpus.encoding_errors,
        )
    if corpus.streaming:  # read only the head of each split, straight to Arrow on disk
        parts = {}
        for name, names in files.items():
            try:
                stream = datasets.load_dataset(
                    loader, data_files={name: names}, split=name, streaming=True, **kwargs
                )
            except Exception as exc:
                raise LlmworksError(_explain_local_failure(exc, names)) from exc
            where = f"{name} split of corpus.data_files"
            parts[name] = _stream_head(stream, corpus, where, cache_dir)
        return _own_splits(parts, "corpus.data_files") if by_source else parts["train"]
    try:
        loaded = datasets.load_dataset(loader, data_files=files, cache_dir=cache_dir, **kwargs)
    except Exception as exc:
        raise LlmworksError(_explain_local_failure(exc, every_file)) from exc
    parts = {name: _select_text(part, corpus.text_field) for name, part in loaded.items()}
    return _own_splits(parts, "corpus.data_files") if by_source else parts["train"]


def _explain_local_failure(exc: BaseException, files: list[str]) -> str:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    for err in chain:
        if isinstance(err, FileNotFoundError):
            return (
                f"a corpus file is gone ({err}): it was listed when the stage started, then "
                "deleted or moved before it was read (or it is a broken link); rerun once the "
                "files stay put"
            )
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


def _load_hub(corpus: CorpusConfig, by_source: bool, work_dir: str) -> datasets.Dataset:
    name = f"{corpus.path}" + (f" ({corpus.config_name})" if corpus.config_name else "")
    if not _hub_offline() and not _hub_reachable():
        raise LlmworksError(
            f"hub corpus {name} needs the network and the Hugging Face hub is unreachable. "
            f"If it is already in your datasets cache, set HF_DATASETS_OFFLINE=1. {LOCAL_HINT}"
        )
    splits = corpus.source_splits or None
    try:
        if corpus.streaming:
            names = splits or (list(SOURCE_SPLIT_NAMES) if by_source else ["train"])
            parts = _load_streaming(corpus, names, every_split=by_source, work_dir=work_dir)
        else:
            loaded = datasets.load_dataset(corpus.path, corpus.config_name, split=None)
            parts = {s: loaded[s] for s in (splits or list(loaded))}
    except LlmworksError:
        raise
    except Exception as exc:
        raise LlmworksError(f"could not load hub corpus {name}: {exc}. {LOCAL_HINT}") from exc
    parts = {
        s: _grouped(_select_text(p, corpus.text_field), corpus, work_dir) for s, p in parts.items()
    }
    if by_source:
        return _own_splits(parts, f"hub corpus {name}")
    return datasets.concatenate_datasets(list(parts.values()))


def _grouped(ds: datasets.Dataset, corpus: CorpusConfig, work_dir: str) -> datasets.Dataset:
    """Rows regrouped into documents where the source stores lines (per split, so an
    article never straddles two splits), written to Arrow under ``work_dir`` as they come."""
    if corpus.grouping != "wikitext_articles":
        return ds
    return datasets.Dataset.from_generator(
        _group_wikitext, gen_kwargs={"lines": ds}, cache_dir=work_dir, writer_batch_size=TEXT_BATCH
    )


def _load_streaming(
    corpus: CorpusConfig, names: list[str], every_split: bool, work_dir: str
) -> dict[str, datasets.Dataset]:
    """Stream a large hub corpus and keep the first ``max_documents`` documents of the first
    split in ``names`` or, with ``every_split``, of each one the corpus has."""
    available = datasets.get_dataset_split_names(corpus.path, corpus.config_name)
    wanted = [n for n in names if n in available] if every_split else names[:1]
    return {
        n: _stream_head(
            datasets.load_dataset(corpus.path, corpus.config_name, split=n, streaming=True),
            corpus,
            f"{n} split of hub corpus {corpus.path}",
            work_dir,
        )
        for n in wanted
    }


def _stream_head(
    stream: datasets.IterableDataset, corpus: CorpusConfig, where: str, work_dir: str
) -> datasets.Dataset:
    """The first ``corpus.max_documents`` rows of ``stream`` (its text field only), written
    to Arrow under ``work_dir`` in writer batches as they arrive (never a Python list of the
    head). A stream that fails part way is one line naming it; one that ends before the cap
    is kept whole, and the log says so."""
    cap = int(corpus.max_documents)  # set: load_documents checked it
    field = corpus.text_field
    taken = 0

    def head() -> Iterator[dict[str, str]]:
        nonlocal taken
        for row in stream.take(cap):
            if field not in row:
                raise LlmworksError(
                    f"corpus.text_field={field!r} is not a column of the {where} "
                    f"(columns: {sorted(row)})"
                )
            taken += 1
            yield {field: row[field]}

    try:
        part = datasets.Dataset.from_generator(
            head, cache_dir=work_dir, writer_batch_size=TEXT_BATCH
        )
    except LlmworksError:
        raise
    except Exception as exc:
        cause = exc.__cause__ or exc  # datasets wraps what the generator raised
        if isinstance(cause, LlmworksError):
            raise cause from None
        raise LlmworksError(
            f"streaming the {where} failed after {taken} documents: {type(cause).__name__}: {cause}"
        ) from exc
    if taken < cap:
        log.info("the %s ended after %d documents (corpus.max_documents=%d)", where, taken, cap)
    return part


def _group_wikitext(lines: datasets.Dataset) -> Iterator[dict[str, str]]:
    """WikiText holds one line per row; an article starts at a ' = Title = ' line. The rows
    are read in batches, never all at once."""
    article: list[str] = []
    for line in (t for batch in lines.iter(batch_size=10_000) for t in batch["text"]):
        stripped = line.strip()
        is_title = stripped.startswith("= ") and stripped.endswith(" =") and stripped[2] != "="
        if is_title and article:
            yield {"text": "\n\n".join(article)}
            article = []
        if stripped and not stripped.startswith("="):
            article.append(stripped)
    if article:
        yield {"text": "\n\n".join(article)}
