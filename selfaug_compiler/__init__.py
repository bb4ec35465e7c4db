"""selfaug: a declarative dataset-and-recipe compiler for fine-tuning without forgetting."""

__version__ = "0.1.0"
