"""A bounded cache of loaded networks (count and bytes, least recently used first)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from ..network import Network, load_network


def file_stamp(path: str) -> tuple[int, int]:
    """What says a file changed on disk: modification time (ns) and size."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size)


class NetworkCache:
    """``get(path)`` returns the loaded :class:`Network`, reading the file only
    when it is not cached or changed on disk since (modification time and
    size). At most ``max_count`` networks and ``max_bytes`` of tensors stay
    (the one just read always stays); the least recently used go first. A
    network the model uses keeps working when it leaves the cache: the
    runtime holds its own reference.
    """

    def __init__(self, max_count: int = 16, max_bytes: int = 4 << 30, loader=load_network):
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._loader = loader
        self._items: OrderedDict[str, tuple[tuple[int, int], Network]] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0

    def get(self, path: str | os.PathLike) -> Network:
        path = os.path.abspath(os.fspath(path))
        with self._lock:
            stamp = file_stamp(path)
            hit = self._items.get(path)
            if hit is not None and hit[0] == stamp:
                self._items.move_to_end(path)
                return hit[1]
            net = self._loader(path)
            self.loads += 1
            self._items[path] = (stamp, net)
            self._items.move_to_end(path)
            self._evict()
            return net

    def _evict(self) -> None:
        while len(self._items) > 1 and (len(self._items) > self.max_count or self.nbytes > self.max_bytes):
            self._items.popitem(last=False)

    def resize(self, max_count: int | None = None, max_bytes: int | None = None) -> None:
        with self._lock:
            if max_count is not None:
                self.max_count = max_count
            if max_bytes is not None:
                self.max_bytes = max_bytes
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def networks(self) -> list[Network]:
        with self._lock:
            return [n for _, n in self._items.values()]

    @property
    def nbytes(self) -> int:
        return sum(n.nbytes for n in self.networks())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, path) -> bool:
        return os.path.abspath(os.fspath(path)) in self._items
