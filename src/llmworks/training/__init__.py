"""Training: one recipe for every model family.

- ``recipe``: the ``Family`` spec (builders, monitored metric, metric names, plot series,
  export, evaluation) and ``training_stage(family, cfg)``, the ``train_<family>`` stage;
- ``fit``: the Trainer, callbacks and loggers built from ``conf/`` with Hydra ``instantiate``,
  the run's checkpoints and resume after a crash;
- ``metrics``: validation/test sums (``TokenMeans``) and the LM figures derived from a loss;
- ``optim``: AdamW + warmup/cosine for the Transformers;
- ``logs``: Lightning's CSV log read once, for ``dvc plots`` and the report;
- ``gpt``, ``bert``, ``word2vec``: each family's ``LightningModule``, data and spec.
"""
