"""The Trainer's argument names as the preflight reads them from Lightning's source, against
the signature Lightning itself checks them by."""

from __future__ import annotations

import inspect

from llmworks.training.trainer_config import trainer_arguments


def test_the_names_read_from_the_source_are_the_trainers_signature() -> None:
    import lightning

    signature = inspect.signature(lightning.Trainer.__init__).parameters
    names = trainer_arguments()
    assert names is not None and len(names) > 40
    assert names == set(signature) - {"self"}
