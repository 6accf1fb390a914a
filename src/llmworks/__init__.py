"""llmworks: raw text -> tokens -> batches -> models -> metrics, reproducibly."""

__version__ = "0.1.0"
