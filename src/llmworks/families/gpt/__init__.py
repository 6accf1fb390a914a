"""The GPT family: a decoder-only causal LM trained on windows of the token shards
(``model.py``, ``data.py``, ``module.py``), exported to and loaded from Hugging Face
``transformers`` (``hf.py``), measured and sampled by the evaluate stage (``evaluate.py``),
and used from the command line (``generate.py``). Its ``Family`` spec is ``spec.py``."""
