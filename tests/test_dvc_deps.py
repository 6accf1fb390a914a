"""dvc.yaml's code dependencies cannot drift: every llmworks module a stage's entry point
imports -- directly or through other modules, imports inside functions included -- is listed
in that stage's ``deps`` (as a file or under a listed folder), and no listed source path is
one the stage never imports. Editing any module a stage runs reruns that stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Names of the llmworks modules ``path`` imports anywhere in its body, with their
    parent packages (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from llmworks.x import y`: y is a submodule or a name defined in x
            found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in found:
            if name.split(".")[0] == "llmworks":
                parts = name.split(".")
                names |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {n for n in names if _module_file(n)}


def _targets() -> set[str]:
    """llmworks classes that conf/ names as ``_target_`` (callbacks, say): a stage that
    builds from config imports them at run time."""
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str) and target.startswith("llmworks."):
                found.add(target.rsplit(".", 1)[0])
            for value in node.values():
                walk(value)

    walk(yaml.safe_load((REPO / "params.yaml").read_text()))
    return found


def _runs_code(path: Path) -> bool:
    """False for a package ``__init__.py`` that only documents its package."""
    if path.name != "__init__.py":
        return True
    body = ast.parse(path.read_text()).body
    return any(
        isinstance(n, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef) for n in body
    )


def modules_run_by(script: Path) -> set[Path]:
    """Every llmworks source file ``script`` may execute (transitive imports, and the
    ``_target_`` classes of conf/ for a stage that instantiates from config)."""
    seen: set[str] = set()
    todo = list(_imports(script))
    if "llmworks.training.fit" in _closure(todo):
        todo += [m for name in _targets() for m in _imports_of_name(name)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _imports(_module_file(name)) - seen
    return {f for f in map(_module_file, seen) if _runs_code(f)}


def _closure(names: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _imports(_module_file(name)) - seen
    return seen


def _imports_of_name(name: str) -> list[str]:
    """``a.b.c`` and its parent packages."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _stages() -> list[tuple[str, Path, list[Path]]]:
    """(stage, entry-point script, source deps) for every stage of dvc.yaml."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = REPO / body["cmd"].split()[1]
        deps = [REPO / d for d in body["deps"] if d.startswith(("src/", "pipelines/"))]
        out.append((name, script, deps))
    return out


@pytest.mark.parametrize(("stage", "script", "deps"), _stages(), ids=[s[0] for s in _stages()])
def test_code_deps_are_exactly_what_the_stage_imports(
    stage: str, script: Path, deps: list[Path]
) -> None:
    run = modules_run_by(script) | {script}
    missing = sorted(
        str(f.relative_to(REPO)) for f in run if not any(f == d or d in f.parents for d in deps)
    )
    assert not missing, f"stage {stage}: add to its deps in dvc.yaml: {missing}"
    unused = sorted(
        str(d.relative_to(REPO)) for d in deps if not any(f == d or d in f.parents for f in run)
    )
    assert not unused, f"stage {stage}: deps it never imports: {unused}"


def test_the_import_graph_follows_imports_inside_functions() -> None:
    """The GPT export is imported lazily, inside the export hook: it still counts."""
    run = modules_run_by(REPO / "pipelines" / "train_gpt.py")
    assert SRC / "llmworks" / "export" / "hf_gpt.py" in run
    assert SRC / "llmworks" / "evaluation" / "run.py" not in run  # evaluation is not training
