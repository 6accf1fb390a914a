"""Weights & Biases, by job: ``runs`` starts a stage's run and logs to it, ``lineage`` records
what a stage read and produced as artifacts, ``sync`` uploads offline runs and completes their
lineage (``llmworks-sync``)."""
