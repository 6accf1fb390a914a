"""Training machinery shared by every Lightning model (GPT, BERT): one way to train.

A stage builds its ``LightningModule`` and ``LightningDataModule`` and calls::

    from llmworks.training import fit, save_final, configure_adamw

    result = fit(module, datamodule, cfg, train=cfg.bert.train,
                 model_dir="models/bert", job_type="train_bert")
    if result.is_global_zero:          # under DDP only rank 0 writes artifacts
        save_final(module.model, config_dict, "models/bert")
        metrics = result.metrics       # final validation metrics, e.g. {"val_loss": ...}
        tokens_per_s = result.tokens_per_s

``fit`` does, in order:

- builds a ``lightning.Trainer`` from ``cfg.trainer`` (``conf/trainer/<preset>.yaml``:
  accelerator, devices, strategy, precision, num_nodes) and the model's ``train`` section
  (``max_steps``, ``val_check_interval``, ``limit_val_batches``, ``accumulate_grad_batches``,
  ``gradient_clip_val``, ``log_every_n_steps``) -- see ``build_trainer``;
- callbacks: ``ModelCheckpoint`` writing ``<model_dir>/checkpoints/{best,last}.ckpt`` (best
  by ``monitor``, default ``val_loss``, which the module must log in validation),
  ``LearningRateMonitor`` and ``Throughput`` (``tokens_per_s`` per step; ``mfu`` on GPU when
  the module has ``flops_per_token()``; it counts ``module.tokens_in_batch(batch)`` if defined);
- loggers: a ``CSVLogger`` in ``<model_dir>/csv/metrics.csv`` (``write_plots`` splits it into
  clean per-series CSVs for ``dvc plots``) and W&B from ``llmworks.tracking.wandb_logger``;
  rank 0 alone creates the W&B run, so DDP gives one run, finished at the end;
- resumes from ``<model_dir>/checkpoints/last.ckpt`` when it exists (a rerun after a crash),
  unless it was saved with other ``module.hparams`` or already reached ``max_steps`` (then
  it is deleted and training starts afresh; a larger ``max_steps`` alone resumes and trains
  on); a fresh run starts a fresh CSV log. Keep
  ``<model_dir>/checkpoints`` a ``persist: true`` DVC out so DVC does not delete it first;
- after training, validates the final weights once more; those are ``result.metrics``.

The module's ``configure_optimizers`` can return ``configure_adamw(self, optim_cfg,
self.trainer.max_steps, self.trainer)``: AdamW with weight decay on linear weight matrices only (none on
norms, biases, embeddings) and a linear-warmup + cosine schedule (``lr``, ``weight_decay``,
``betas``, ``eps``, ``warmup_steps``, ``min_lr_ratio``).
"""

from llmworks.training.optim import configure_adamw, param_groups, warmup_cosine
from llmworks.training.trainer import (
    FitResult,
    Throughput,
    build_trainer,
    fit,
    resume_checkpoint,
    save_final,
    write_plots,
)

__all__ = [
    "FitResult",
    "Throughput",
    "build_trainer",
    "fit",
    "resume_checkpoint",
    "save_final",
    "write_plots",
    "configure_adamw",
    "param_groups",
    "warmup_cosine",
]
