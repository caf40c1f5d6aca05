"""Stand-in for modules/hashes.py (A1111 v1.10.1).

``calculate_sha256(filename)`` (whole file, lowercase hex), ``addnet_hash_safetensors(b)`` (sha256 of
everything after the 8-byte length and the JSON header: the kohya "addnet" hash),
``sha256_from_cache(filename, title, use_addnet_hash=False)`` (None if the file is missing, the title
is not cached, the file is newer than the entry, or the entry has no sha256) and
``sha256(filename, title, use_addnet_hash=False)`` (cache first; None with ``--no-hashing``; else prints
``Calculating sha256 for ...``, computes, stores ``{"mtime", "sha256"}`` under the title in
``cache("hashes")`` or ``cache("hashes-addnet")`` and dumps).
Simplified: the cache is modules.cache's in-memory one. ``computed`` lists each (filename, title,
use_addnet_hash) actually hashed, for tests.
"""

import hashlib
import os.path

from modules import shared
import modules.cache

dump_cache = modules.cache.dump_cache
cache = modules.cache.cache

computed = []

_BLOCK = 1024 * 1024


def calculate_sha256(filename):
    h = hashlib.sha256()
    with open(filename, "rb") as f:
        while chunk := f.read(_BLOCK):
            h.update(chunk)
    return h.hexdigest()


def sha256_from_cache(filename, title, use_addnet_hash=False):
    hashes = cache("hashes-addnet") if use_addnet_hash else cache("hashes")
    try:
        ondisk_mtime = os.path.getmtime(filename)
    except FileNotFoundError:
        return None

    if title not in hashes:
        return None

    cached_sha256 = hashes[title].get("sha256", None)
    cached_mtime = hashes[title].get("mtime", 0)
    if ondisk_mtime > cached_mtime or cached_sha256 is None:
        return None
    return cached_sha256


def sha256(filename, title, use_addnet_hash=False):
    hashes = cache("hashes-addnet") if use_addnet_hash else cache("hashes")

    value = sha256_from_cache(filename, title, use_addnet_hash)
    if value is not None:
        return value

    if shared.cmd_opts.no_hashing:
        return None

    print(f"Calculating sha256 for {filename}: ", end='')
    if use_addnet_hash:
        with open(filename, "rb") as file:
            value = addnet_hash_safetensors(file)
    else:
        value = calculate_sha256(filename)
    print(value)
    computed.append((filename, title, use_addnet_hash))

    hashes[title] = {"mtime": os.path.getmtime(filename), "sha256": value}
    dump_cache()
    return value


def addnet_hash_safetensors(b):
    h = hashlib.sha256()
    b.seek(0)
    n = int.from_bytes(b.read(8), "little")
    b.seek(n + 8)
    while chunk := b.read(_BLOCK):
        h.update(chunk)
    return h.hexdigest()
