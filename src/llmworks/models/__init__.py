"""What the model families share: the Transformer layers (``layers``), the cross-entropy of
an LM head taken a slice of rows at a time (``losses``), the one on-disk format
(``persistence``), and the bag-of-words baseline every representation is compared with
(``bow``). A family's own model is ``llmworks/families/<name>/model.py``."""
