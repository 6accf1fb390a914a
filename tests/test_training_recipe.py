"""One recipe for every family: the registry (a family is a folder, a config group and a
`families` entry), the Trainer / callbacks / loggers built from conf/ (any Trainer argument
from the command line, a misspelled one refused), typed configs that fail loudly, the same
checkpoints and resume for every family, and an export that is skipped, not fatal, for an
architecture without a Hugging Face twin."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ThroughputMonitor

from llmworks.config import compose_config
from llmworks.errors import LlmworksError
from llmworks.families.bert.model import Bert
from llmworks.families.gpt.model import GPT
from llmworks.spec import Family, family, names
from llmworks.training.recipe import train

from conftest import FAST, REPO, run_stage, stage_overrides

FAMILIES = [family(name) for name in names(compose_config())]
FOLDER = ("__init__.py", "model.py", "data.py", "module.py", "evaluate.py")


@pytest.fixture(scope="module")
def data(prepared_data: Path) -> Path:
    return prepared_data


def overrides(data: Path, out: Path, *extra: str, family: str = "gpt") -> list[str]:
    return stage_overrides(
        family, out, "experiment=smoke", "logger=none", "word2vec.min_count=1", *extra, data=data
    )


# ----------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_a_family_is_a_folder_a_config_group_and_a_stage(family: Family) -> None:
    name = family.name
    folder = REPO / "src" / "llmworks" / "families" / name
    assert all((folder / f).is_file() for f in FOLDER), sorted(p.name for p in folder.iterdir())
    assert (REPO / "conf" / name / "default.yaml").is_file()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    entry = params["families"][name]
    assert set(entry) == {"reads", "curve", "data_section"}
    # the section its code reads shards through ('data'), or its own when it reads none
    settings = importlib.import_module(f"llmworks.families.{name}.settings")
    assert entry["data_section"] == settings.DATA_SECTION
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    assert stage["foreach"] == "${families}"
    assert "src/llmworks/families/${key}" in stage["do"]["deps"]
    assert params["families"][name]["curve"] in family.plots["val"]
    smoke = compose_config(["experiment=smoke"])[name]
    assert smoke != compose_config([])[name], "experiment=smoke must shrink every family"


def test_every_family_folder_is_configured_and_nothing_else() -> None:
    root = REPO / "src" / "llmworks" / "families"
    folders = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    assert folders == {f.name for f in FAMILIES}


def test_an_unknown_family_is_refused_with_the_known_ones(data: Path, tmp_path: Path) -> None:
    proc = run_stage("train", *overrides(data, tmp_path, family="t5"), env=FAST)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "family='t5': expected one of ['word2vec', 'bert', 'gpt']" in proc.stderr
    with pytest.raises(LlmworksError, match="name the family"):
        from llmworks.training.recipe import training_stage

        training_stage(compose_config())


def test_shared_code_has_no_family_branches() -> None:
    """The evaluate stage, the report and the recipe iterate over the registry: no
    ``isinstance(model, Bert)`` or ``if "gpt" in ...`` in the code every family shares."""
    src = REPO / "src/llmworks"
    shared = [
        src / "spec.py",
        *(src / "evaluation").glob("*.py"),
        *(src / "report").glob("*.py"),
        *(src / "training").glob("*.py"),
    ]
    names = "|".join(f.name for f in FAMILIES)
    family_words = re.compile(rf"""\b(Bert|GPT|Word2Vec|CausalLM|MLMModule)\b|["']({names})["']""")
    for path in shared:
        found = family_words.findall(_code_without_docs(path))
        assert not found, f"{path.name} names a family: {found}"


def _code_without_docs(path: Path) -> str:
    """The source with docstrings and comments blanked: they may name families."""
    import ast
    import io
    import tokenize

    source = path.read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            for i in range(first.lineno - 1, first.end_lineno):
                lines[i] = ""
    comments = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT
    ]
    for t in comments:
        row = t.start[0] - 1
        lines[row] = lines[row][: t.start[1]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- config


def test_any_trainer_argument_and_callback_works_from_the_command_line(data, tmp_path) -> None:
    proc = run_stage(
        "train",
        *overrides(data, tmp_path, "gpt.train.max_steps=30"),
        "+trainer.profiler=simple",
        "+trainer.deterministic=true",
        "callbacks.lr_monitor=null",
        "+callbacks.stop={_target_:lightning.pytorch.callbacks.EarlyStopping,patience:0,min_delta:100}",
        env=FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FIT Profiler Report" in proc.stdout + proc.stderr  # the profiler ran
    metrics = json.loads((tmp_path / "metrics" / "train" / "gpt.json").read_text())
    # early stopping on the family's metric (filled in): no gain of 100 at the second
    # validation (step 10 of 30) ends it
    assert metrics["steps"] == 10
    train = (tmp_path / "metrics" / "train" / "gpt_train.csv").read_text().splitlines()
    assert all(row.split(",")[2] == "" for row in train[1:])  # no learning-rate monitor


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+trainer.max_stepz=3", "trainer.max_stepz: lightning.Trainer takes no argument"),
        ("+trainer.max_steps=3", r"\['max_steps'\] set both in trainer and in the model's train"),
        ("+gpt.model.heads=3", r"gpt.model: unknown key\(s\) \['heads'\]"),
        ("gpt.model.n_head=3", "gpt.model: need n_head | d_model"),
        ("+callbacks.x={_target_:no.such.Callback}", "callbacks.x: .*no.such"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(data, tmp_path, override: str, message: str) -> None:
    proc = run_stage("train", *overrides(data, tmp_path), override, env=FAST)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert re.search(message, proc.stderr) and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # refused before any training


# ----------------------------------------------------------------------------- resume


class Crash(RuntimeError):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_every_family_resumes_after_a_crash(family, data, tmp_path, monkeypatch) -> None:
    """Crash after the first checkpoint, rerun: the run resumes there (same W&B run id, the
    step count goes on, the curve keeps its first steps) and ends where an uninterrupted run
    ends, to float precision: every family's data order, masks and noise draws are seeded by
    (seed, epoch, position), never drawn from a global random stream that a crash resets."""
    extra = {  # dropout on: its draws come from the random state the checkpoint restores
        "word2vec": ["word2vec.train.max_epochs=3"],
        "bert": ["bert.model.dropout=0.1"],
        "gpt": ["gpt.model.dropout=0.1"],
    }[family.name]

    def run(out: Path):
        return train(family, compose_config(overrides(data, out, *extra, family=family.name)))

    straight = run(tmp_path / "straight")
    original = ThroughputMonitor.on_train_batch_end
    crash_at = straight["steps"] - 1

    def crash(self, trainer, *args):
        original(self, trainer, *args)
        if trainer.global_step == crash_at:
            raise Crash(f"simulated crash at step {crash_at}")

    monkeypatch.setattr(ThroughputMonitor, "on_train_batch_end", crash)
    with pytest.raises(Crash):
        run(tmp_path / "crashed")
    last = tmp_path / "crashed" / "runs" / family.name / "checkpoints" / "last.ckpt"
    stamp = torch.load(last, weights_only=True)["llmworks"]
    assert not (tmp_path / "crashed" / "metrics" / "train" / f"{family.name}.json").exists()
    monkeypatch.setattr(ThroughputMonitor, "on_train_batch_end", original)

    resumed = run(tmp_path / "crashed")
    after = torch.load(last, weights_only=True)["llmworks"]
    assert resumed["steps"] == straight["steps"]
    assert after["session"] == stamp["session"] + 1 and after["wandb_id"] == stamp["wandb_id"]
    curve = (tmp_path / "crashed" / "metrics" / "train" / f"{family.name}_train.csv").read_text()
    steps = [int(r.split(",")[0]) for r in curve.splitlines()[1:]]
    assert steps[0] == 0 and steps == sorted(set(steps))  # from the first step, none twice
    assert resumed[family.monitor] == pytest.approx(straight[family.monitor], abs=1e-5)


# ----------------------------------------------------------------------------- export


NO_HF_TWIN = {  # an architecture with no transformers class, and what the stage says of it
    "bert": (Bert, "bert.model.norm=pre", "no Hugging Face counterpart", "pre"),
    "gpt": (GPT, "gpt.model.norm=layernorm", "no Hugging Face architecture", "layernorm"),
}


@pytest.mark.parametrize("name", NO_HF_TWIN)
def test_an_architecture_without_a_hf_twin_is_trained_and_saved_without_export(
    name: str, data: Path, tmp_path: Path
) -> None:
    """The stage names the problem, keeps the trained model and leaves out ``hf/`` rather
    than failing after training."""
    model_cls, override, said, norm = NO_HF_TWIN[name]
    proc = run_stage("train", *overrides(data, tmp_path, override, family=name), env=FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert said in proc.stdout + proc.stderr
    model_dir = tmp_path / "models" / name
    assert model_cls.load(model_dir).config.norm == norm
    assert not (model_dir / "hf").exists()
