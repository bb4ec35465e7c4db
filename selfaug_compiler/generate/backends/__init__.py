"""Generation backends (transformers, openai, vllm) behind one call shape; see ``base.py``."""

from selfaug_compiler.generate.backends.base import (Backend, BackendError, BackendGeneration, backend_kinds,
                                                     make_backend, register)

__all__ = ["Backend", "BackendError", "BackendGeneration", "backend_kinds", "make_backend", "register"]
