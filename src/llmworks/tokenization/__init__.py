"""Tokenizers: the subword families trained with Hugging Face ``tokenizers`` (``build``,
``train``: the train_tokenizer stage; ``pinned``: WordPiece trained the same twice). The
word-level tokenizer of the word models is ``llmworks.words``."""
