"""Runtime: wanted set -> least work -> the model computes with it."""

from .cache import NetworkCache
from .merge import Contribution
from .runtime import AUTO, BYPASS, MERGE, MODES, ApplyReport, NetworkReport, Runtime
from .uses import Use

__all__ = ["AUTO", "BYPASS", "MERGE", "MODES", "ApplyReport", "Contribution", "NetworkCache", "NetworkReport", "Runtime", "Use"]
