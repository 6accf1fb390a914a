"""Hugging Face checkpoints' weights as our models read them, straight into our model (where
the files are, and the config: ``llmworks.models.hub``).

- ``Weights(path)``: the tensors by name, from ``model.safetensors`` or its shards, else a
  pickled ``pytorch_model.bin`` loaded with ``torch.load(weights_only=True)`` (which
  refuses anything but tensors and plain containers).
- ``load_state(model, state)``: the tensors a family's mapping produced, copied into a model
  built on the ``meta`` device and then allocated, so peak memory stays near one copy of the
  weights. Safetensors tensors are read with ``readinto`` into the parameter's own memory:
  the safetensors library offers no way to fill a preallocated buffer, and its memory map
  keeps the file's pages resident beside the copy (two copies of a 1B model instead of one).
  The file format is safetensors' documented one (an 8-byte header length, a JSON header of
  dtype, shape and byte offsets, the raw bytes).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmworks.errors import LlmworksError
from llmworks.models.hub import CONFIG

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLE, PICKLE_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def fingerprint(path: Path) -> str:
    """Identifies a checkpoint's content cheaply: its config and its weight files' names and
    sizes (a hub snapshot's directory name is its commit as well)."""
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    parts = [(path / CONFIG).read_text()] + [f"{p.name}:{p.stat().st_size}" for p in files]
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Weights:
    """The tensors of a checkpoint directory, by name, read one at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.files: dict[str, Path] = {}  # tensor name -> file
        if (path / SAFETENSORS_INDEX).is_file() or (path / SAFETENSORS).is_file():
            self.kind = "safetensors"
            self.files = self._indexed(SAFETENSORS_INDEX, SAFETENSORS, _safetensors_names)
            self._headers: dict[Path, tuple[int, dict[str, Any]]] = {}
        elif (path / PICKLE_INDEX).is_file() or (path / PICKLE).is_file():
            self.kind = "pickle"
            self._pickles: dict[Path, dict[str, torch.Tensor]] = {}
            self.files = self._indexed(PICKLE_INDEX, PICKLE, lambda f: self._pickle(f).keys())
        else:
            raise LlmworksError(
                f"{path}: no weights ({SAFETENSORS}, its shards, or {PICKLE}); "
                "a model directory needs them beside its config.json"
            )

    def _indexed(
        self, index: str, single: str, names: Callable[[Path], Iterable[str]]
    ) -> dict[str, Path]:
        if (self.path / index).is_file():
            weight_map = json.loads((self.path / index).read_text())["weight_map"]
            return {name: self.path / file for name, file in weight_map.items()}
        return {name: self.path / single for name in names(self.path / single)}

    def names(self) -> set[str]:
        return set(self.files)

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def shape(self, name: str) -> tuple[int, ...]:
        if self.kind == "pickle":
            return tuple(self._pickle(self.files[name])[name].shape)
        return tuple(self._header(self.files[name])[1][name]["shape"])

    def get(self, name: str) -> torch.Tensor:
        """The tensor ``name`` (a new CPU tensor in the checkpoint's dtype)."""
        if name not in self.files:
            raise LlmworksError(f"{self.path}: the checkpoint has no tensor {name!r}")
        if self.kind == "pickle":
            return self._pickle(self.files[name])[name]
        out = torch.empty(self.shape(name), dtype=_DTYPES[self._entry(name)["dtype"]])
        self.read_into(name, out)
        return out

    def copy_into(self, name: str, dest: torch.Tensor) -> None:
        """Write tensor ``name`` into ``dest`` (a parameter or a slice of one), converting its
        dtype if need be; straight from the file when nothing needs converting."""
        if tuple(dest.shape) != self.shape(name):
            raise LlmworksError(
                f"{self.path}: {name} has shape {self.shape(name)}, the model expects "
                f"{tuple(dest.shape)}"
            )
        same = self.kind == "safetensors" and _DTYPES[self._entry(name)["dtype"]] == dest.dtype
        if same and dest.is_contiguous():
            self.read_into(name, dest)
        else:
            dest.copy_(self.get(name))

    def read_into(self, name: str, out: torch.Tensor) -> None:
        """Fill ``out`` (contiguous, the tensor's shape and dtype) with tensor ``name``,
        straight from the file into its memory."""
        if self.kind == "pickle":
            out.copy_(self.get(name))
            return
        file = self.files[name]
        start, end = self._entry(name)["data_offsets"]
        offset = self._header(file)[0]
        view = memoryview(out.view(torch.uint8).numpy()).cast("B")
        if len(view) != end - start:
            raise LlmworksError(f"{file}: {name} holds {end - start} bytes, not {len(view)}")
        with file.open("rb") as f:
            f.seek(offset + start)
            if f.readinto(view) != len(view):
                raise LlmworksError(f"{file}: truncated at {name}; download it again")

    def _entry(self, name: str) -> dict[str, Any]:
        return self._header(self.files[name])[1][name]

    def _header(self, file: Path) -> tuple[int, dict[str, Any]]:
        if file not in self._headers:
            self._headers[file] = _safetensors_header(file)
        return self._headers[file]

    def _pickle(self, file: Path) -> dict[str, torch.Tensor]:
        if file not in self._pickles:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:
                raise LlmworksError(
                    f"{file}: refused to load it as plain tensors ({_unpickling_reason(exc)}); a pickled "
                    "checkpoint loads only with weights_only=True, never as code: convert it to "
                    "safetensors"
                ) from exc
            self._pickles[file] = state.get("state_dict", state)
        return self._pickles[file]


def _unpickling_reason(exc: Exception) -> str:
    """The line of a failed ``torch.load(weights_only=True)`` that says what the file holds
    (torch's message is a paragraph of advice around it)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    match = re.search(r"WeightsUnpickler error: (.*?)(?:\. |\n|$)", text)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _safetensors_header(file: Path) -> tuple[int, dict[str, Any]]:
    """``(offset of the data, {name: {dtype, shape, data_offsets}})`` of a safetensors file."""
    with file.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise LlmworksError(f"{file}: not a safetensors file (shorter than its header)")
        (size,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(size))
        except (ValueError, UnicodeDecodeError) as exc:
            raise LlmworksError(f"{file}: not a safetensors file ({exc})") from exc
    header.pop("__metadata__", None)
    return 8 + size, header


def _safetensors_names(file: Path) -> list[str]:
    return list(_safetensors_header(file)[1])


def load_state(
    build: Callable[[], nn.Module],
    state: Iterator[tuple[str, Callable[[torch.Tensor], None]]],
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """A model from ``build()`` in ``dtype`` whose parameters are filled by ``state``:
    ``(name, fill)`` pairs, where ``fill(param)`` writes the parameter's value in place. The
    model is built on the ``meta`` device and allocated once (no random initialisation, no
    second copy); every parameter must be filled exactly once. Buffers computed at
    construction (rotary tables) are computed again on the real device."""
    with torch.device("meta"):
        model = build().to(dtype)
    ties = _tied(model)
    model = model.to_empty(device="cpu")
    for (owner, name), *others in ties:  # allocating gave tied modules a parameter each
        for module, attr in others:
            setattr(module, attr, getattr(owner, name))
    for module in model.modules():
        reset = getattr(module, "reset_buffers", None)
        if callable(reset):
            reset()
    params = dict(model.named_parameters(remove_duplicate=True))
    filled: set[str] = set()
    with torch.no_grad():
        for name, fill in state:
            if name not in params:
                raise RuntimeError(f"mapping produced {name!r}, which the model does not have")
            fill(params[name])
            filled.add(name)
    missing = sorted(set(params) - filled)
    if missing:
        raise RuntimeError(f"mapping left parameters unset: {missing[:5]}")
    return model.eval()


def _tied(model: nn.Module) -> list[list[tuple[nn.Module, str]]]:
    """The places (module, attribute) that share one parameter, for each shared one."""
    places: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None:
                places.setdefault(id(param), []).append((module, name))
    return [group for group in places.values() if len(group) > 1]
