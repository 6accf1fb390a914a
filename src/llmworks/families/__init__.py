"""The model families, one folder each (``word2vec/``, ``bert/``, ``gpt/``): the model, its data,
its ``LightningModule``, its exports, its part of the evaluate stage and its spec,
``FAMILY``. What a spec holds, and how the shared code finds a family by name, is
``llmworks.spec``."""
