"""The one exception type for bad network files and bad input."""

from __future__ import annotations

import os


class NetworkFileError(ValueError):
    """A network file (or one of its keys) cannot be used.

    The message always names the file and, where one is involved, the key, so
    a user reading a log line knows which download to replace.
    """

    def __init__(self, path: str | os.PathLike | None, key: str | None, message: str):
        self.path = os.fspath(path) if path is not None else None
        self.key = key
        self.reason = message
        where = self.path or "<memory>"
        if key:
            where = f"{where}: key '{key}'"
        super().__init__(f"{where}: {message}")


class NetworkApplyError(RuntimeError):
    """Applying a network to a model failed; the model was left as it was."""

    def __init__(self, network: str | None, module: str | None, message: str):
        self.network = network
        self.module = module
        self.reason = message
        parts = [p for p in (network, module) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
