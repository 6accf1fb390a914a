"""Tokenizers: the subword families trained with Hugging Face ``tokenizers`` (``build``,
``train``: the train_tokenizer stage) and the word-level tokenizer of the word models
(``words``)."""
