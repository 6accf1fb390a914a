"""The second half of the BERT story: the pretrained representations on a labelled task.

``task`` prepares the task once (stage ``prepare_task``), ``probe`` scores fixed features with
logistic regression, ``classifier`` fine-tunes a family's classifier with the one training
recipe, and ``stage`` runs every model both ways (stage ``finetune``)."""
