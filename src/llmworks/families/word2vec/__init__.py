"""The Word2Vec family: skip-gram or CBOW with negative sampling on the words of the corpus
(``model.py``, ``pairs.py``, ``vocab.py``, ``data.py``, ``module.py``), exported in the word2vec
C tool's formats (``vectors.py``) and measured on word-similarity and analogy benchmarks
(``benchmarks.py``, ``evaluate.py``). Its ``Family`` spec is ``spec.py``."""
