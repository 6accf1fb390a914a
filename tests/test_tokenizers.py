"""Stage 2: the three tokenizers, trained through the entry point, and their stats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from conftest import local_corpus_overrides, run_stage, stage_overrides, write_text_corpus


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Trained once for the module: the tests read it, or fail to replace it (the sweep,
    which does replace bpe, comes last)."""
    tmp_path = tmp_path_factory.mktemp("tokenizers")
    corpus = write_text_corpus(tmp_path)
    overrides = [*stage_overrides(None, tmp_path), *local_corpus_overrides(corpus)]
    for script in ("prepare_corpus", "train_tokenizer"):
        result = run_stage(script, *overrides)
        assert result.returncode == 0, result.stderr
    return tmp_path / "data" / "tokenizers", overrides


def test_trains_all_three_with_stats(trained: tuple[Path, list[str]]) -> None:
    root, _ = trained
    for name in ("bpe", "wordpiece", "unigram"):
        tok = Tokenizer.from_file(str(root / name / "tokenizer.json"))
        stats = json.loads((root / name / "tokenizer_stats.json").read_text())
        assert stats["type"] == name
        assert stats["vocab_size"] == tok.get_vocab_size() <= 400
        assert 1.0 < stats["bytes_per_token"] < 10
        assert 1.0 <= stats["tokens_per_word"] < 5
        assert 0 < stats["vocab_used"] <= 1
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"):
            assert tok.token_to_id(special) is not None
    assert json.loads((root / "bpe" / "tokenizer_stats.json").read_text())["unk_rate"] == 0


def test_byte_level_bpe_round_trips_arbitrary_unicode(trained: tuple[Path, list[str]]) -> None:
    tok = Tokenizer.from_file(str(trained[0] / "bpe" / "tokenizer.json"))
    samples = [
        "Hello, world!  Two  spaces,\ttabs\nand newlines.",
        "Emoji 🙂👍🏽🧑‍🚀 and flags 🇫🇷",
        "漢字かなカナ 한국어 العربية עברית Ελληνικά",
        "  leading and trailing  ",
        "Cafe\u0301 (not NFC) vs Caf\u00e9",
        "",
    ]
    for text in samples:
        ids = tok.encode(text).ids
        assert tok.decode(ids, skip_special_tokens=False) == text
        assert tok.token_to_id("[UNK]") not in ids


def test_bpe_keeps_paragraph_breaks_whole_and_digits_in_threes(
    trained: tuple[Path, list[str]],
) -> None:
    """The default split (GPT-4's pattern) keeps a paragraph break in one piece, so merges can
    make it one token and a model never sees "\n" follow "\n" inside a break; GPT-2's split,
    still selectable, cuts every newline apart. Merges never cross pieces."""
    import datasets

    from llmworks.tokenization.train import train_tokenizer

    from conftest import SAMPLE_PARAGRAPHS, tokenizer_spec

    def pieces(tok: Tokenizer, text: str) -> list[str]:
        return [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]

    tok = Tokenizer.from_file(str(trained[0] / "bpe" / "tokenizer.json"))
    assert pieces(tok, "words.\n\nNext 1234567") == ["words", ".ĊĊ", "Next", "Ġ", "123", "456", "7"]
    text = "\n\n".join(SAMPLE_PARAGRAPHS * 3)
    assert tok.decode(tok.encode(text).ids) == text
    corpus = datasets.Dataset.from_dict({"text": [text]})
    gpt2 = train_tokenizer(tokenizer_spec("bpe", vocab_size=400, split_pattern="gpt2"), corpus)
    assert pieces(gpt2, "words.\n\nNext") == ["words", ".", "Ċ", "Ċ", "Next"]


@pytest.mark.parametrize(
    ("kind", "pattern", "message"),
    [("bpe", "gpt3", "byte-level BPE takes one of"), ("wordpiece", "gpt4", "type bpe only")],
)
def test_a_split_pattern_that_does_not_apply_is_refused(
    kind: str, pattern: str, message: str
) -> None:
    from llmworks.errors import LlmworksError

    from conftest import tokenizer_spec

    with pytest.raises(LlmworksError, match=message):
        tokenizer_spec(kind, split_pattern=pattern)


def test_wordpiece_frames_with_cls_and_sep(trained: tuple[Path, list[str]]) -> None:
    tok = Tokenizer.from_file(str(trained[0] / "wordpiece" / "tokenizer.json"))
    enc = tok.encode("The Quick brown fox")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert "the" in enc.tokens  # lower-cased


def test_all_three_train_byte_identical_in_another_process(
    trained: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """The Rust WordPiece trainer numbers its ``##c`` symbols in hash-map order, which
    changes from process to process (huggingface/tokenizers#1794); ours pins them first. The
    Rust Unigram trainer sums its EM in hash-map order; ours is SentencePiece on one thread.
    A second run of the stage, in a new process, on the same corpus gives the same bytes, and
    the pinned symbols are plain vocabulary entries, not special tokens."""
    root, overrides = trained
    shutil.copytree(root.parent / "corpus", tmp_path / "data" / "corpus")
    again = run_stage("train_tokenizer", *overrides, f"paths.data={tmp_path / 'data'}")
    assert again.returncode == 0, again.stderr[-3000:]
    for name in ("wordpiece", "bpe", "unigram"):
        first = (root / name / "tokenizer.json").read_bytes()
        assert (tmp_path / "data" / "tokenizers" / name / "tokenizer.json").read_bytes() == first
    wordpiece = json.loads((root / "wordpiece" / "tokenizer.json").read_text())
    continuations = [t for t in wordpiece["model"]["vocab"] if t.startswith("##")]
    assert len(continuations) > 20  # enough for a hash order to show
    assert all(not t["content"].startswith("##") for t in wordpiece["added_tokens"])
    tok = Tokenizer.from_file(str(root / "wordpiece" / "tokenizer.json"))
    assert "##s" not in tok.encode("##s", add_special_tokens=False).tokens  # no special match


def test_unigram_segments_every_word_as_sentencepiece_does(
    trained: tuple[Path, list[str]],
) -> None:
    """Our Unigram model is SentencePiece's pieces and scores moved into ``tokenizers``:
    on every training word, its Viterbi segmentation equals SentencePiece's own."""
    import sentencepiece as spm
    from datasets import load_from_disk

    from llmworks.tokenization.pinned import word_counts
    from llmworks.tokenization.unigram import sentencepiece_model, unigram_model

    root, _ = trained
    texts = load_from_disk(str(root.parent / "corpus" / "dataset"))["train"]["text"]
    tok = Tokenizer.from_file(str(root / "unigram" / "tokenizer.json"))
    counts = word_counts(tok, [texts])
    proto = sentencepiece_model(counts, 150)
    ours = unigram_model(proto, ["[PAD]", "[UNK]"], "[UNK]")
    theirs = spm.SentencePieceProcessor(model_proto=proto)
    words = sorted(counts)
    assert len(words) > 150 and theirs.get_piece_size() == 151
    multi = 0
    for word in words:
        pieces = [t.value for t in ours.tokenize(word)]
        assert pieces == theirs.encode(word, out_type=str), word
        multi += len(pieces) > 1
    assert multi > 50  # many words need need the Viterbi search, not one lookup
    scores = [score for _, score in json.loads(tok.to_str())["model"]["vocab"][6:]]
    assert len(set(scores)) > 100 and max(scores) < 0  # real log-probabilities


def test_vocab_smaller_than_alphabet_fails_and_keeps_old_tokenizer(
    trained: tuple[Path, list[str]],
) -> None:
    root, overrides = trained
    before = (root / "wordpiece" / "tokenizer.json").read_bytes()
    for name, size in (("bpe", 100), ("wordpiece", 20), ("unigram", 10)):
        result = run_stage(
            "train_tokenizer", *overrides, f"+only={name}", f"tokenizers.{name}.vocab_size={size}"
        )
        assert result.returncode != 0
        assert f"vocab_size={size}" in result.stderr and "raise vocab_size" in result.stderr
    assert (root / "wordpiece" / "tokenizer.json").read_bytes() == before


def test_only_selects_one_tokenizer_and_rejects_unknown(trained: tuple[Path, list[str]]) -> None:
    root, overrides = trained
    result = run_stage("train_tokenizer", *overrides, "+only=nope")
    assert result.returncode != 0 and "nope" in result.stderr


def test_multirun_sweeps_vocab_size(tmp_path: Path, trained: tuple[Path, list[str]]) -> None:
    _, overrides = trained
    overrides = [o for o in overrides if not o.startswith("hydra.run.dir")]
    result = run_stage(
        "train_tokenizer",
        "-m",
        *overrides,
        "+only=bpe",
        "tokenizers.bpe.vocab_size=300,350",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sweep" / "0").is_dir() and (tmp_path / "sweep" / "1").is_dir()
    # The last job wins the shared output path; its vocabulary is the last value.
    stats = json.loads((trained[0] / "bpe" / "tokenizer_stats.json").read_text())
    assert stats["vocab_size"] <= 350


def test_a_published_tokenizer_is_fetched_measured_and_encoded(
    trained: tuple[Path, list[str]], bpe_json: Path, tmp_path: Path
) -> None:
    """``tokenizers.<name>: pretrained`` with a directory (a hub id is resolved through the
    Hugging Face cache the same way): fetched instead of trained, measured like ours, and
    its shards encoded with its own end-of-text token; a token it lacks is named."""
    from transformers import PreTrainedTokenizerFast

    published = tmp_path / "published"
    PreTrainedTokenizerFast(
        tokenizer_file=str(bpe_json), eos_token="<|endoftext|>"
    ).save_pretrained(published)
    root, overrides = trained
    extra = [
        "+tokenizer@tokenizers.pub=pretrained",
        f"tokenizers.pub.name={published}",
        "+only=pub",
    ]
    for script in ("train_tokenizer", "encode"):
        result = run_stage(script, *overrides, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
    fetched = Tokenizer.from_file(str(root / "pub" / "tokenizer.json"))
    assert fetched.to_str() == Tokenizer.from_file(str(published / "tokenizer.json")).to_str()
    stats = json.loads((root / "pub" / "tokenizer_stats.json").read_text())
    assert stats["type"] == "pretrained" and stats["vocab_size"] == fetched.get_vocab_size()
    assert stats["bytes_per_token"] > 1.0 and stats["unk_rate"] == 0
    meta = json.loads((root.parent / "tokens" / "pub" / "meta.json").read_text())
    assert meta["separator_id"] == fetched.token_to_id("<|endoftext|>")
    missing = run_stage(
        "train_tokenizer", *overrides, *extra, "tokenizers.pub.eot_token='<|end_of_text|>'"
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "'<|end_of_text|>' is not a token of" in missing.stderr


def test_train_bytes_samples_whole_documents_reproducibly() -> None:
    from datasets import Dataset

    from llmworks.errors import LlmworksError
    from llmworks.tokenization.sample import training_sample

    texts = [f"document {i} " + "x" * (10 * i) for i in range(40)]
    split = Dataset.from_dict({"text": texts})
    total = sum(len(t.encode()) for t in texts)
    assert training_sample(split, None, 0, "cap") is split
    assert training_sample(split, total, 0, "cap") is split
    sample = training_sample(split, total // 3, 7, "cap")["text"]
    assert sum(len(t.encode()) for t in sample) <= total // 3 and len(sample) > 3
    assert sample == [t for t in texts if t in sample]  # corpus order kept
    assert training_sample(split, total // 3, 7, "cap")["text"] == sample  # seeded
    assert training_sample(split, total // 3, 8, "cap")["text"] != sample
    with pytest.raises(LlmworksError, match=r"cap=5 is smaller than the first sampled document"):
        training_sample(split, 5, 7, "cap")


def test_a_tokenizer_trained_on_a_sample_is_measured_on_all_validation(
    trained: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, overrides = trained
    shutil.copytree(root.parent / "corpus", tmp_path / "data" / "corpus")
    result = run_stage(
        "train_tokenizer", *overrides, f"paths.data={tmp_path / 'data'}", "+only=wordpiece",
        "tokenizers.wordpiece.train_bytes=3000",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tokenizers.wordpiece.train_bytes: training on" in result.stdout
    whole = json.loads((root / "wordpiece" / "tokenizer_stats.json").read_text())
    sampled = json.loads(
        (tmp_path / "data" / "tokenizers" / "wordpiece" / "tokenizer_stats.json").read_text()
    )
    assert sampled["tokens"] > whole["tokens"]  # less text learned: more tokens per word
