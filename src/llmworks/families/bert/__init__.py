"""The BERT family: a bidirectional encoder pretrained as a masked LM on the WordPiece shards
(``model.py``, ``data.py``, ``module.py``), exported to and loaded from Hugging Face
``transformers`` (``hf.py``), measured by the evaluate stage (``evaluate.py``), and used from
the command line (``fill_mask.py``). Its ``Family`` spec is ``spec.py``."""
