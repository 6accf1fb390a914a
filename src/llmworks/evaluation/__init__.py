"""The evaluate stage: ``stage`` runs the parts -- ``tokenizers``, ``training_curves``, each
family's ``evaluate.py``, ``representations`` -- through one ``recorder``; the helpers the
families' parts use (``trained``, ``scoring``, ``attention``, ``embedders``, ``plots``,
``token_view``). The page itself is the ``report`` stage's (``llmworks.report``)."""
