"""Word2Vec's part of the finetune stage: each text as the mean of its word vectors, a fixed
feature for a linear probe (the baseline the Transformers must beat). Word vectors have no
classifier to fine-tune here: fine-tuning them would make a bag of trainable words, which
the probe on counts and TF-IDF already stands for."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from llmworks.evaluation.embedders import Embedder
from llmworks.evaluation.trained import model_dir
from llmworks.families.word2vec.model import Word2Vec
from llmworks.families.word2vec.module import VOCAB_FILE
from llmworks.families.word2vec.vectors import averaged_vectors
from llmworks.families.word2vec.vocab import WordVocab
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.tokenization.files import read_tokenizer


def probe_features(cfg: DictConfig, paths: Paths, device: torch.device) -> Embedder:
    """Averaged word vectors of ``models/word2vec`` (read through the subword tokenizer saved
    beside them when it was trained on one, ``word2vec.tokenizer``)."""
    path = model_dir(paths, "word2vec")
    vocab = WordVocab.load(path / VOCAB_FILE)
    vectors = Word2Vec.load(path).vectors.numpy()
    subword = None
    if (path / TOKENIZER_FILE).is_file():
        subword = read_tokenizer(path / TOKENIZER_FILE)
    return averaged_vectors(vocab.words, vectors, bool(cfg.word2vec.lowercase), subword)
