"""Stand-in for modules/cache.py (A1111 v1.10.1).

``cache(subsection)`` returns a dict-like subsection; ``cached_data_for_file(subsection, title,
filename, func)`` returns the cached ``value`` unless the file's mtime is newer than the entry's, else
calls ``func()`` and stores ``{'mtime', 'value'}`` (nothing is stored, and None returned, when func
returns None); ``dump_cache()``.
Simplified: the cache is in memory (the real one is a diskcache under ``cache/``), so it lasts for the
process; ``reset()`` clears it; ``dumps`` counts dump_cache calls.
"""

import os

caches = {}
dumps = 0


def reset():
    global dumps
    caches.clear()
    dumps = 0


def dump_cache():
    global dumps
    dumps += 1


def cache(subsection):
    return caches.setdefault(subsection, {})


def cached_data_for_file(subsection, title, filename, func):
    existing = cache(subsection)
    ondisk_mtime = os.path.getmtime(filename)

    entry = existing.get(title)
    if entry and ondisk_mtime > entry.get("mtime", 0):
        entry = None

    if not entry or 'value' not in entry:
        value = func()
        if value is None:
            return None
        entry = {'mtime': ondisk_mtime, 'value': value}
        existing[title] = entry
        dump_cache()

    return entry['value']
