"""Text in other scripts gets honest figures. Chinese and Japanese, written without spaces,
count one word per character (whitespace made a whole clause one "word": 86 "words" in 1,339
characters, and a word-level perplexity at its exp(50) cap), and Word2Vec's words are
characters there, not clauses; spaced scripts (Latin, Cyrillic) count as ``str.split``
counts. WordPiece keeps the accents of a Cyrillic corpus (й stays й), where BERT's stripping
would change its words, and still strips them in English."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from tokenizers import Tokenizer

from llmworks.tokenization.train import train_tokenizer
from llmworks.words import count_words, tokenize

from conftest import local_corpus_overrides, run_stage, stage_overrides, tokenizer_spec

CHINESE = [
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "长江是中国最长的河流，全长约六千三百公里，流经十一个省份。",
    "今天天气很好，我们一起去公园散步，看看湖边的花。",
    "图书馆里有很多书，学生们每天都在那里学习和阅读。",
]


def test_unspaced_scripts_count_a_word_per_character() -> None:
    assert count_words("我爱北京天安门") == 7
    assert count_words("東京タワーは 333 m です") == 10  # 5 + は + 333 + m + です
    english = "The cat's hat, 1990 — naïve!"
    assert count_words(english) == len(english.split()) == 6
    assert count_words("Привет, мир! Ёлка") == 3


def test_word2vec_words_are_characters_in_chinese_and_whole_words_in_cyrillic() -> None:
    assert tokenize("长江是中国最长的河流") == list("长江是中国最长的河流")
    assert tokenize("Привет, Мир! Ёлка и йод") == ["привет", "мир", "ёлка", "и", "йод"]
    assert tokenize("The Cat's 2 hats") == ["the", "cat's", "hats"]


RUSSIAN = [
    "Мой любимый йогурт стоит на полке, а ёлка стоит в углу комнаты.",
    "Зимой в нашем городе идёт снег, и дети катаются на санках.",
    "Учёные изучают новые явления и пишут статьи для журналов.",
    "Кофе с молоком, чай с лимоном, и ещё немного мёда.",
]


def prepared(tmp_path: Path, sentences: list[str], *stages: tuple[str, list[str]]) -> Path:
    """A local corpus of ``sentences`` (five files of numbered paragraphs) through ``stages``;
    returns ``paths.data``."""
    files = tmp_path / "files"
    files.mkdir()
    for f in range(5):
        paras = [f"{s} {f}{i}" for i, s in enumerate(sentences * 8)]
        (files / f"part{f}.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    args = stage_overrides(None, tmp_path, *local_corpus_overrides(files, vocab=300))
    for stage, extra in stages:
        proc = run_stage(stage, *args, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / "data"


def test_a_cyrillic_corpus_keeps_its_accents_and_gets_its_own_example_sentence(
    tmp_path: Path,
) -> None:
    """WordPiece keeps й and ё; the evaluate stage cuts a Russian sentence of the test split
    into tokens instead of the configured English one, which would be all [UNK], and says
    why; Word2Vec's neighbours table, with no probe word in the vocabulary, is skipped with
    its reason instead of shown empty."""
    data = prepared(
        tmp_path,
        RUSSIAN,
        ("prepare_corpus", []),
        ("train_tokenizer", []),
        ("train", ["family=word2vec", "word2vec=smoke", "word2vec.min_count=1"]),
        ("evaluate", []),
    )
    tok = Tokenizer.from_file(str(data / "tokenizers" / "wordpiece" / "tokenizer.json"))
    assert tok.normalizer.normalize_str("Ёлка и йогурт") == "ёлка и йогурт"
    views = json.loads((tmp_path / "report" / "assets" / "token_views.json").read_text())
    assert views["text"] in " ".join(RUSSIAN) and "[UNK]" not in views["views"]["wordpiece"]["html"]
    # no English probe word in a Russian vocabulary: no empty table, a reason instead
    skipped = json.loads((tmp_path / "report" / "assets" / "skipped.json").read_text())
    assert "probe_words" in skipped["word2vec neighbours"]


def test_wordpiece_strips_latin_accents_as_bert_uncased() -> None:
    english = tokenizer_spec("wordpiece", strip_accents="auto")
    corpus = datasets.Dataset.from_dict({"text": ["A naïve café in Zürich, of course."] * 50})
    tok = train_tokenizer(english, corpus)
    assert tok.normalizer.normalize_str("Naïve Café") == "naive cafe"  # as BERT-uncased


def test_a_chinese_corpus_gets_word_counts_per_character(tmp_path: Path) -> None:
    """Through the corpus and tokenizer stages: words per split are the characters (and
    punctuation runs), so tokens per word is a ratio near one, not the tens that whitespace
    splitting gave."""
    prepared(tmp_path, CHINESE, ("prepare_corpus", []), ("train_tokenizer", ["+only=wordpiece"]))
    stats = json.loads((tmp_path / "data" / "corpus" / "corpus_stats.json").read_text())
    train = stats["train"]
    assert train["words"] > 0.8 * train["characters"]
    tok = json.loads(
        (tmp_path / "data" / "tokenizers" / "wordpiece" / "tokenizer_stats.json").read_text()
    )
    assert 0.5 < tok["tokens_per_word"] < 2
