"""Stage 1 -- raw text to clean, split documents: ``config`` (the typed ``corpus`` section),
``sources`` (where text comes from), ``clean`` (normalisation and the split by document hash),
``prepare`` (the stage)."""
