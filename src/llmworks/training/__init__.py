"""Training: one recipe for every model family (the family itself is a spec,
``llmworks.spec.Family``, from its own folder).

- ``recipe``: ``training_stage``, the ``train@<family>`` stage: build, fit, save, export;
- ``fit``: the Trainer, callbacks and loggers built from ``conf/`` with Hydra ``instantiate``,
  the run's checkpoints and resume after a crash;
- ``callbacks``: progress, throughput and the stop on a diverging loss;
- ``metrics``: validation/test sums (``TokenMeans``) and the LM figures derived from a loss;
- ``optim``: AdamW, or Muon + AdamW (``muon``), + warmup then cosine or warmup-stable-decay
  (``wsd``) for the Transformers;
- ``sharding``: FSDP2 under ``trainer=fsdp``;
- ``logs``: Lightning's CSV log read once, for ``dvc plots`` and the report;
- ``model_card``: the Hugging Face model card of every export.
"""
