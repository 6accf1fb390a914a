"""Every row of the bad-input table (docs/bad-inputs.md): the stage exits non-zero with one
line naming the problem and the fix -- or, where the run can go on, warns and goes on -- and
what earlier runs wrote is intact. ``bench/bad_inputs.py`` times the same cases."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from conftest import local_corpus_overrides, run_stage, stage_overrides


@dataclass(frozen=True)
class Case:
    name: str  # the table's row
    stage: str
    args: tuple[str, ...]  # overrides; {files} is the folder of prepared bad files
    expect: str  # in the message (stderr), or in the warning when the stage goes on
    fails: bool = True
    env: dict[str, str] = field(default_factory=dict)

    @property
    def shown(self) -> str:
        """The stage as the table names it: the script, or the DVC stage it trains."""
        family = [a.split("=", 1)[1] for a in self.args if a.startswith("family=")]
        return f"{self.stage}@{family[0]}" if family else self.stage


FAKE_KEY = "f" * 40
# a sound pair task (the workspace's data/task) and the bad ones beside it
TASK = ("task=local", "task.data_files={train:{files}/task/train.csv,test:{files}/task/test.csv}",
        "task.text_field=sentence1", "task.text_pair_field=sentence2")  # fmt: skip
CASES = [
    Case("missing file", "prepare_corpus", ("corpus.data_files={files}/nope.txt",), "no file matches"),
    Case("glob matching nothing", "prepare_corpus", ("corpus.data_files={files}/*.nothing",), "no file matches"),
    Case("empty file (0 bytes)", "prepare_corpus", ("corpus.data_files={files}/empty.txt",), "every file is empty"),
    Case("whitespace-only corpus", "prepare_corpus", ("corpus.data_files={files}/blank.txt",), "no non-empty documents"),
    Case("binary file", "prepare_corpus", ("corpus.data_files={files}/binary.txt",), "not valid UTF-8"),
    Case("invalid UTF-8 (Latin-1 text)", "prepare_corpus", ("corpus.data_files={files}/latin1.txt",), "corpus.encoding"),
    Case("JSONL without the text field", "prepare_corpus", ("corpus.data_files={files}/body.jsonl",), "corpus.text_field='text' is not a column"),
    Case("one huge line, no newline", "prepare_corpus", ("corpus.data_files={files}/huge.txt",), "split is empty"),
    Case("empty validation split", "prepare_corpus", ("corpus.split.validation=0",), "must not be empty"),
    Case("non-numeric split", "prepare_corpus", ("corpus.split.test=abc",), "expected a fraction"),
    Case("split files, hash splitting", "prepare_corpus", ("corpus.data_files={train:{files}/latin1.txt,test:{files}/latin1.txt}",), "set corpus.split.by=source"),
    Case("own splits without a test file", "prepare_corpus", ("corpus.split.by=source", "corpus.data_files={train:{files}/latin1.txt,validation:{files}/latin1.txt}"), "missing: ['test']"),
    Case("streamed file cut mid-record", "prepare_corpus", ("corpus.data_files={files}/cut_stream.jsonl", "corpus.streaming=true", "corpus.max_documents=1000"), "streaming the train split of corpus.data_files failed"),
    Case("corpus file gone when read (deleted after listing)", "prepare_corpus", ("corpus.data_files={files}/gone",), "a corpus file is gone"),
    Case("corpus file gone when streamed", "prepare_corpus", ("corpus.data_files={files}/gone", "corpus.streaming=true", "corpus.max_documents=1000"), "a corpus file is gone"),
    Case("encode batches of 0 bytes", "encode", ("encode.batch_bytes=0",), "encode: batch_bytes=0: must be > 0"),
    Case("vocabulary below the alphabet", "train_tokenizer", ("+only=bpe", "tokenizers.bpe.vocab_size=100"), "raise vocab_size"),
    Case("vocabulary of 1", "train_tokenizer", ("+only=unigram", "tokenizers.unigram.vocab_size=1"), "raise vocab_size"),
    Case("unigram vocabulary below the alphabet", "train_tokenizer", ("+only=unigram", "tokenizers.unigram.vocab_size=20"), "raise vocab_size to at least"),
    Case("vocabulary of 10", "train_tokenizer", ("+only=wordpiece", "tokenizers.wordpiece.vocab_size=10"), "raise vocab_size"),
    Case("tokenizer sample below one document", "train_tokenizer", ("+only=bpe", "tokenizers.bpe.train_bytes=10"), "smaller than the first sampled document"),
    Case("unknown BPE split pattern", "train_tokenizer", ("+only=bpe", "tokenizers.bpe.split_pattern=gpt3"), "byte-level BPE takes one of"),
    Case("evaluation mask rate of 0", "train", ("family=bert", "bert.data.eval_mask_rate=0"), "eval_mask_rate=0"),
    Case("unknown BERT positions", "train", ("family=bert", "bert.model.pos=alibi"), "expected 'learned' or 'rope'"),
    Case("corpus shorter than one window", "train", ("family=gpt", "gpt.model.block_size=100000"), "fewer than block_size + 1"),
    Case("sequence above the model's context", "train", ("family=bert", "bert.data.max_seq_len=100"), "exceeds the model's position table"),
    Case("misspelled key", "train", ("family=gpt", "gpt.optim.lrr=0.1"), "gpt.optim.lrr"),
    Case("misspelled group option", "train", ("family=gpt", "gpt=gtp2"), "Available options"),
    Case("misspelled Trainer argument", "train", ("family=gpt", "+trainer.max_stepz=5"), "max_stepz"),
    Case("trainer.devices above the CPU cores", "train", ("family=gpt", "trainer.devices=4096"), "cores"),
    Case("a GPU asked on a machine without one", "train", ("family=gpt", "trainer=gpu"), "gpu"),
    Case("num_nodes without a launcher", "train", ("family=gpt", "trainer.num_nodes=2"), "one process per node"),
    Case("unknown logger.mode", "prepare_corpus", ("logger.mode=onlin",), "logger.mode='onlin'"),
    Case("checkpoint of an architecture we do not import", "generate", ("checkpoint={files}/neox",), "not a causal LM we import; supported:"),
    Case("checkpoint option we do not compute (YaRN rope)", "generate", ("checkpoint={files}/yarn",), "rope type 'yarn' is not supported"),
    Case("tokenizer other than the checkpoint's", "train", ("family=gpt", "gpt.init_from={files}/llama"), "embedding rows, but tokenizer bpe"),
    Case("hub id neither cached nor reachable", "generate", ("checkpoint=nobody/no-such-model",), "hf download nobody/no-such-model"),
    Case("pickled .bin that is more than tensors", "generate", ("checkpoint={files}/pickled",), "refused to load it as plain tensors"),
    Case("task: label column missing", "prepare_task", (*TASK, "task.label_field=category"), "task.label_field='category' is not a column"),
    Case("task: a label seen only in the test split", "prepare_task", ("task=local", "task.data_files={train:{files}/task/train.csv,validation:{files}/task/train.csv,test:{files}/task/unseen.csv}", "task.text_field=sentence1"), "appears in the test split"),
    Case("task with one class", "prepare_task", ("task=local", "task.data_files={train:{files}/task/one_class.csv}", "task.text_field=sentence1"), "a single label"),
    Case("task: an empty split", "prepare_task", ("task=local", "task.data_files={train:{files}/task/train.csv,validation:{files}/task/train.csv,test:{files}/task/empty.csv}", "task.text_field=sentence1"), "the test split holds no examples"),
    Case("text pairs for a model that reads one text", "finetune", ("finetune.models=[gpt]",), "has text pairs"),
    Case("task: a damaged parquet file", "prepare_task", ("task=local", "task.data_files={train:{files}/task/damaged.parquet}"), "damaged.parquet']: ArrowInvalid"),
    Case("unknown GPT pooling for fine-tuning", "finetune", ("finetune.gpt.pooling=max",), "finetune.gpt.pooling='max'"),
    Case("token shard cut short", "train", ("family=gpt", "paths.data={files}/cut_shard"), "train.bin has"),
    Case("token shards without meta.json", "train", ("family=bert", "paths.data={files}/no_meta"), "meta.json does not exist"),
    Case("tokenizer.json that does not parse", "generate", ("checkpoint={files}/bad_tokenizer",), "is not a valid tokenizer.json"),
    Case("model directory without weights", "generate", ("checkpoint={files}/no_weights",), "not a model directory with model.safetensors"),
    Case("unknown training-data backend", "train", ("family=gpt", "data.backend=s3"), "data: backend='s3': expected one of ['memmap', 'litdata']"),
    Case("litdata backend before its chunks are written", "train", ("family=bert", "data.backend=litdata"), "holds no litdata chunks"),
    Case("litdata backend with window packing", "train", ("family=bert", "data.backend=litdata", "data.litdata_dir=s3://bucket/tokens", "bert.data.packing=windows"), "packs the token stream"),
    Case("litdata chunk cut short", "train", ("family=gpt", "data.backend=litdata", "data.litdata_dir={files}/cut_chunks"), "chunk-0-0.bin: the index says"),
    Case("litdata index that does not parse", "train", ("family=gpt", "data.backend=litdata", "data.litdata_dir={files}/bad_index"), "index.json is damaged"),
    Case("litdata chunks of 0 tokens", "encode", ("data.backend=litdata", "data.chunk_tokens=0"), "data: chunk_tokens=0: must be > 0"),
    Case("GPT block_size of 0", "train", ("family=gpt", "gpt.model.block_size=0"), "gpt.model: block_size=0: must be >= 1"),
    Case("Word2Vec dimension of 0", "train", ("family=word2vec", "word2vec.model.dim=0"), "word2vec.model: dim=0: must be >= 1"),
    Case("masking rate above 1", "train", ("family=bert", "bert.data.mask_rate=1.5"), "mask_rate=1.5: expected a rate in (0, 1)"),
    Case("negative learning rate", "train", ("family=gpt", "gpt.optim.lr=-0.001"), "gpt.optim: lr=-0.001: must be > 0"),
    Case("unknown optimizer", "train", ("family=bert", "bert.optim.name=sgd"), "bert.optim: name='sgd': expected one of ('adamw', 'muon')"),
    Case("no Newton-Schulz iteration for Muon", "train", ("family=gpt", "gpt.optim.muon_ns_steps=0"), "gpt.optim: muon_ns_steps=0: must be >= 1"),
    Case("unknown learning-rate schedule", "train", ("family=gpt", "gpt.optim.schedule=linear"), "gpt.optim: schedule='linear': expected one of ('cosine', 'wsd')"),
    Case("a number given as a word", "train", ("family=gpt", "gpt.optim.cooldown=abc"), "gpt.optim: cooldown='abc': expected a number"),
    Case("negative thread count", "train_tokenizer", ("+only=bpe", "threads=-1"), "threads=-1: must be >= 1"),
    Case("a switch that is not true or false", "train", ("family=gpt", "gpt.model.zero_init_proj=maybe"), "gpt.model: zero_init_proj='maybe': expected true or false"),
    Case("top_p above 1", "generate", ("top_p=1.5",), "top_p=1.5: must be in [0, 1]"),
    Case("negative top_k", "generate", ("top_k=-1",), "top_k=-1: must be an integer >= 0"),
    Case("negative max_new_tokens", "generate", ("max_new_tokens=-5",), "max_new_tokens=-5: must be an integer >= 0"),
    Case("diverging training (lr 1e6)", "train", ("family=gpt", "gpt.optim.lr=1e6"), "training diverged"),
    Case("W&B online, no API key", "train_tokenizer", ("+only=bpe", "logger=wandb"), "logging offline", False,
         {"WANDB_MODE": "online", "WANDB_API_KEY": ""}),
    Case("W&B online, server unreachable", "train_tokenizer", ("+only=bpe", "logger=wandb", "logger.init_timeout=3"),
         "logging offline", False,
         {"WANDB_MODE": "online", "WANDB_API_KEY": FAKE_KEY, "WANDB_BASE_URL": "http://127.0.0.1:9"}),
]  # fmt: skip


def write_bad_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_text("\n\n   \n\t\n", encoding="utf-8")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (folder / "latin1.txt").write_bytes(
        "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e.\n\n".encode("latin-1") * 40
    )
    (folder / "body.jsonl").write_text('{"body": "a"}\n{"body": "b"}\n', encoding="utf-8")
    (folder / "huge.txt").write_text("word " * 1_000_000, encoding="utf-8")  # 5 MB, one line
    rows = "".join(
        json.dumps({"text": f"Document {i} of a stream. " * 20}) + "\n" for i in range(50)
    )
    (folder / "cut_stream.jsonl").write_text(
        rows + '{"text": "a stream cut in the mid', encoding="utf-8"
    )
    # a folder listing a file that is gone when read: a link to a deleted file stands in for a
    # file deleted between listing and reading (one deleted while open still reads whole)
    (folder / "gone").mkdir()
    (folder / "gone" / "kept.txt").write_text("A paragraph that is here.\n", encoding="utf-8")
    (folder / "gone" / "deleted.txt").symlink_to(folder / "deleted-since.txt")
    write_bad_checkpoints(folder)
    return folder


def write_task_files(folder: Path) -> None:
    """A sound paraphrase-like pair task, and tasks that cannot be learned."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"sentence {i} about {'rivers' if i % 2 else 'music'},sentence {i + 1},{'yes' if i % 2 else 'no'}"
            for i in range(40)]  # fmt: skip
    header = "sentence1,sentence2,label\n"
    (folder / "train.csv").write_text(header + "\n".join(rows[:30]) + "\n", encoding="utf-8")
    (folder / "test.csv").write_text(header + "\n".join(rows[30:]) + "\n", encoding="utf-8")
    (folder / "unseen.csv").write_text(header + "a,b,maybe\n", encoding="utf-8")
    (folder / "one_class.csv").write_text(header + "a,b,yes\nc,d,yes\ne,f,yes\n", encoding="utf-8")
    (folder / "empty.csv").write_text(header, encoding="utf-8")
    (folder / "damaged.parquet").write_bytes(b"PAR1 not really parquet")


def write_bad_checkpoints(folder: Path) -> None:
    """Hugging Face checkpoints we refuse: another architecture, an option we do not compute,
    a pickle that holds more than tensors; and a sound Llama of 300 tokens."""
    import argparse

    import transformers as tf
    from tiny import hf_checkpoint

    shape = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                 num_attention_heads=2, vocab_size=300)  # fmt: skip
    tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**shape)).save_pretrained(folder / "neox")
    yarn = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}
    tf.LlamaForCausalLM(tf.LlamaConfig(rope_parameters=yarn, **shape)).save_pretrained(
        folder / "yarn"
    )
    hf_checkpoint("llama", folder / "llama", vocab=260)  # fewer rows than any BPE has tokens
    pickled = folder / "pickled"
    tf.LlamaConfig(**shape).save_pretrained(pickled)
    torch.save({"model.embed_tokens.weight": argparse.Namespace(code="not a tensor")},
               pickled / "pytorch_model.bin")  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    return make_workspace(tmp_path_factory.mktemp("bad_input"))


def make_workspace(root: Path) -> tuple[Path, list[str], Path]:
    """A workspace that ran corpus, tokenizers, encode, the smoke GPT and BERT and prepared a
    pair task: what a failing run must leave intact. Returns it, the overrides that point at it, and a folder
    of bad files."""
    from conftest import SAMPLE_PARAGRAPHS

    corpus = root / "corpus_files"
    corpus.mkdir()
    for f in range(3):
        paras = [f"{p} Part {f}-{i}." for i, p in enumerate(SAMPLE_PARAGRAPHS * 4)]
        (corpus / f"part{f}.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    base = stage_overrides(None, root, *local_corpus_overrides(corpus), "gpt=smoke", "bert=smoke")
    files = root / "bad_files"
    write_task_files(files / "task")
    task = [a.replace("{files}", str(files)) for a in TASK]
    for stage, *extra in (
        ("prepare_corpus",),
        ("train_tokenizer",),
        ("encode",),
        ("train", "family=gpt"),
        ("train", "family=bert"),
        ("prepare_task", *task),
    ):
        proc = run_stage(stage, *base, *extra, env={"WANDB_MODE": "disabled"})
        assert proc.returncode == 0, proc.stderr[-3000:]
    write_damaged_outputs(root, files)
    return root, base, write_bad_files(files)


def write_damaged_outputs(root: Path, files: Path) -> None:
    """Copies of the workspace's outputs, each damaged in one way: a shard cut to an odd byte
    count, shards without meta.json, a model whose tokenizer.json does not parse, a model
    directory without weights, litdata chunks with one cut short or a broken index."""
    import shutil

    for name in ("cut_shard", "no_meta"):
        shutil.copytree(root / "data", files / name)
    train_bin = files / "cut_shard" / "tokens" / "bpe" / "train.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-3])
    (files / "no_meta" / "tokens" / "wordpiece" / "meta.json").unlink()
    # litdata chunks of the bpe shard: one cut short, and another copy with a broken index
    from llmworks.data.streaming import write_chunks

    bpe = root / "data" / "tokens" / "bpe"
    dtype = json.loads((bpe / "meta.json").read_text())["dtype"]
    for name in ("cut_chunks", "bad_index"):
        write_chunks(bpe / "train.bin", dtype, files / name / "bpe" / "train", 1 << 20)
    chunk = files / "cut_chunks" / "bpe" / "train" / "chunk-0-0.bin"
    chunk.write_bytes(chunk.read_bytes()[:-3])
    (files / "bad_index" / "bpe" / "train" / "index.json").write_text('{"chunks": [')
    shutil.copytree(root / "models" / "gpt", files / "bad_tokenizer")
    (files / "bad_tokenizer" / "tokenizer.json").write_text(
        '{"version": "1.0",\n', encoding="utf-8"
    )
    (files / "no_weights").mkdir()
    shutil.copy(root / "models" / "gpt" / "config.json", files / "no_weights")


def snapshot(root: Path) -> dict[str, str]:
    """Content hashes of everything the earlier runs wrote."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for top in ("data", "models", "runs", "metrics")
        for p in sorted((root / top).rglob("*"))
        if p.is_file()
    }


def wandb_dir(root: Path, case: Case) -> Path:
    return root / ("wandb-" + "".join(c if c.isalnum() else "_" for c in case.name))


def run_case(case: Case, root: Path, base: list[str], files: Path):
    args = [a.replace("{files}", str(files)) for a in case.args]
    env = {"WANDB_MODE": "disabled"} | case.env
    if "logger=wandb" in args:  # a fresh W&B directory for this case
        base = [a for a in base if not a.startswith("logger.dir=")]
        args.append(f"logger.dir={wandb_dir(root, case)}")
    return run_stage(case.stage, *base, *args, env=env, timeout=120)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_line_and_earlier_outputs_stay(case: Case, workspace) -> None:
    if "trainer=gpu" in case.args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    root, base, files = workspace
    before = snapshot(root)
    proc = run_case(case, root, base, files)
    said = proc.stdout + proc.stderr
    if case.fails:
        assert proc.returncode != 0, said[-2000:]
        assert "Traceback" not in said, said[-3000:]
        assert case.expect in proc.stderr, proc.stderr[-2000:]
    else:
        assert proc.returncode == 0, said[-3000:]
        assert case.expect in said
        runs = list((wandb_dir(root, case) / "wandb").glob("offline-run-*"))
        assert len(runs) == 1  # the metrics are kept offline, not lost
    after = snapshot(root)
    changed = sorted(k for k in before if after.get(k) != before[k])
    if not case.fails:  # a run that goes on rewrites its own outputs, nothing else
        changed = [k for k in changed if "tokenizers/bpe" not in k]
    assert not changed, f"{case.name} changed earlier outputs: {changed[:5]}"


def test_logger_none_means_no_wandb_whatever_the_environment_says(workspace) -> None:
    root, base, _ = workspace
    out = root / "no_wandb"
    base = [a for a in base if not a.startswith("logger.dir=")]
    proc = run_stage(
        "train_tokenizer", *base, "+only=bpe", "logger=none", f"logger.dir={out}",
        env={"WANDB_MODE": "offline"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (out / "wandb").exists() and not os.path.exists(out)


def _tmpfs_in_namespace() -> bool:
    """Whether this machine lets a process mount a private tmpfs (``unshare -rm``: a user
    and mount namespace, so nothing outside it sees the mount or needs cleaning up)."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k none $d && umount $d && rmdir $d"
    return (
        subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True).returncode == 0
    )


def encode_on_a_full_disk(
    root: Path, base: list[str], scratch: Path
) -> tuple[int, str, bool, float]:
    """Run the encode stage on a private tmpfs holding a copy of the workspace's ``data/``,
    with room for a third of one more set of shards; return its exit status, stderr, whether
    the disk's files are as they were (old shards whole, nothing partial left) and seconds."""
    import subprocess
    import sys
    import time

    from conftest import OFFLINE_ENV, REPO

    data = root / "data"

    def pages(folder: Path) -> int:  # what tmpfs charges: whole 4 KiB pages per file
        return sum(-(-p.stat().st_size // 4096) for p in folder.rglob("*") if p.is_file())

    disk = scratch / "disk"
    disk.mkdir(parents=True)
    size = (pages(data) + pages(data / "tokens") // 3) * 4096
    args = [a for a in base if not a.startswith("paths.data=")] + [f"paths.data={disk}/data"]
    listing = f"cd {disk}/data && find . -type f | LC_ALL=C sort | xargs sha256sum"
    script = "\n".join(
        [
            "set -e",
            f"mount -t tmpfs -o size={size} none {disk}",
            f"cp -a {data} {disk}/data",
            f"({listing}) > {scratch}/before",
            "set +e",
            " ".join([sys.executable, str(REPO / "pipelines" / "encode.py")] + args)
            + f" > {scratch}/out 2> {scratch}/err",
            f"echo $? > {scratch}/rc",
            f"({listing}) > {scratch}/after",
        ]
    )
    env = {**os.environ, **OFFLINE_ENV, "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    subprocess.run(["unshare", "-rm", "sh", "-c", script], check=True, env=env, timeout=300)
    seconds = time.perf_counter() - start
    intact = (scratch / "before").read_text() == (scratch / "after").read_text()
    rc = int((scratch / "rc").read_text())
    return rc, (scratch / "err").read_text(), intact, seconds


@pytest.mark.skipif(not _tmpfs_in_namespace(), reason="needs unshare -rm and a tmpfs mount")
def test_disk_full_during_encode_is_one_line_and_earlier_shards_stay(workspace, tmp_path):
    """The encode stage on a disk with room for its inputs and earlier shards but not for a
    second copy of the shards: exit 2, one line, and the disk as it was."""
    root, base, _ = workspace
    rc, err, intact, _ = encode_on_a_full_disk(root, base, tmp_path)
    assert rc == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "llmworks: error: the disk is full" in err
    assert intact  # every earlier file whole, nothing partial left beside them
