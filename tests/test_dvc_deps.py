"""dvc.yaml's code dependencies cannot drift: they are package folders (a family's folder,
the shared packages) and the few top-level modules, and every llmworks module a stage's entry
point runs -- directly or through other modules, imports inside functions included, and the
families the registry imports by name -- lies under one of its deps, while every dep holds
something the stage runs. Editing any module a stage runs reruns that stage; editing one
family's folder reruns no other family's training."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
FAMILIES = list(PARAMS["families"])


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Names of the llmworks modules ``path`` imports anywhere in its body, with their
    parent packages (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``). Imports
    under ``if TYPE_CHECKING:`` are for annotations and never run."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # drop the bodies of `if TYPE_CHECKING:` blocks
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
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

    walk(PARAMS)
    return found


def _runs_code(path: Path) -> bool:
    """False for a package ``__init__.py`` that only documents its package."""
    if path.name != "__init__.py":
        return True
    body = ast.parse(path.read_text()).body
    return any(
        isinstance(n, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef) for n in body
    )


def _closure(names: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _imports(_module_file(name)) - seen
    return seen


def by_name(stage: str, key: str | None) -> list[str]:
    """What a stage imports by name through the registry (``llmworks.spec.family``,
    ``.evaluation`` and ``.downstream``): the training stage its family, the evaluate stage
    every family with its evaluation, the finetune stage every family's downstream part."""
    if stage == "train":
        return [f"llmworks.families.{key}.spec"]
    if stage == "evaluate":
        return [f"llmworks.families.{n}.{part}" for n in FAMILIES for part in ("spec", "evaluate")]
    if stage == "finetune":  # llmworks.spec.downstream: every family that has the module
        return [f"llmworks.families.{n}.downstream" for n in FAMILIES
                if _module_file(f"llmworks.families.{n}.downstream")]  # fmt: skip
    return []


def modules_run_by(script: Path, named: list[str] = ()) -> set[Path]:
    """Every llmworks source file ``script`` may execute: its transitive imports, the
    modules it imports by name, and the ``_target_`` classes of conf/ for a stage that
    instantiates from config."""
    roots = list(_imports(script)) + list(named)
    if "llmworks.training.fit" in _closure(roots):
        roots += [".".join(t.split(".")[:i]) for t in _targets() for i in range(1, 4)]
    return {f for f in map(_module_file, _closure(roots)) if f and _runs_code(f)}


def _stages() -> list[tuple[str, list[tuple[str | None, Path, list[Path]]]]]:
    """Every stage of dvc.yaml with its items: ``(key, entry point, source deps)``, one item
    for a plain stage, one per key of its ``foreach`` map."""
    out = []
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        keys = list(PARAMS[stage["foreach"][2:-1]]) if "foreach" in stage else [None]
        items = []
        for key in keys:
            script = REPO / body["cmd"].split()[1]
            deps = [
                REPO / d.replace("${key}", str(key))
                for d in body["deps"]
                if d.startswith(("src/", "pipelines/"))
            ]
            items.append((key, script, deps))
        out.append((name, items))
    return out


def _covers(dep: Path, f: Path) -> bool:
    return f == dep or dep in f.parents


@pytest.mark.parametrize(("stage", "items"), _stages(), ids=[s[0] for s in _stages()])
def test_code_deps_are_what_the_stage_runs(stage: str, items: list) -> None:
    used: set[Path] = set()
    for key, script, deps in items:
        run = modules_run_by(script, by_name(stage, key)) | {script}
        missing = sorted(
            str(f.relative_to(REPO)) for f in run if not any(_covers(d, f) for d in deps)
        )
        assert not missing, f"stage {stage}@{key}: add to its deps in dvc.yaml: {missing}"
        used |= {d for d in deps if any(_covers(d, f) for f in run)}
    # a foreach stage shares its deps among its items: each must serve one of them at least
    listed = {d for _, _, deps in items for d in deps}
    unused = sorted(str(d.relative_to(REPO)) for d in listed - used)
    assert not unused, f"stage {stage}: deps it never runs: {unused}"


def test_code_deps_are_folders_but_for_top_level_modules() -> None:
    """A package is one dep, so a module added to it can never be forgotten; single files
    are the top-level modules of llmworks (the family spec and registry among them)."""
    for name, items in _stages():
        for _, _, deps in items:
            for dep in deps:
                if dep.is_file() and dep.parent.name != "pipelines":
                    assert dep.parent == SRC / "llmworks", (name, dep)


def test_one_familys_code_never_reruns_another_familys_training() -> None:
    ((_, items),) = [s for s in _stages() if s[0] == "train"]
    for key, _, deps in items:
        others = [SRC / "llmworks" / "families" / f for f in FAMILIES if f != key]
        assert not [d for d in deps for o in others if _covers(d, o) or _covers(o, d)], key


def test_the_import_graph_follows_imports_inside_functions() -> None:
    """An import inside a function body still counts; evaluation is not training."""
    metrics = SRC / "llmworks" / "training" / "metrics.py"
    assert "llmworks.training.sharding" in _imports(metrics)  # inside configure_model
    run = modules_run_by(REPO / "pipelines" / "train.py", by_name("train", "gpt"))
    assert SRC / "llmworks" / "families" / "gpt" / "hf.py" in run
    assert SRC / "llmworks" / "evaluation" / "stage.py" not in run
    assert SRC / "llmworks" / "families" / "gpt" / "evaluate.py" not in run
