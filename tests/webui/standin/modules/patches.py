"""Stand-in for modules/patches.py (A1111 v1.10.1).

``patch(key, obj, field, replacement)`` stores ``getattr(obj, field)`` (which may already be another
caller's replacement) under ``originals[key][(obj, field)]``, installs the replacement and returns
the stored function; patching the same (obj, field) twice under one key raises
``RuntimeError("patch for {field} is already applied")``. ``undo(key, obj, field)`` restores it (or
raises ``RuntimeError("there is no patch for {field} to undo")``); ``original(key, obj, field)`` returns
it or None. Test helper: ``undo_all()`` undoes every recorded patch (latest first).
"""

from collections import defaultdict

originals = defaultdict(dict)


def patch(key, obj, field, replacement):
    patch_key = (obj, field)
    if patch_key in originals[key]:
        raise RuntimeError(f"patch for {field} is already applied")
    original_func = getattr(obj, field)
    originals[key][patch_key] = original_func
    setattr(obj, field, replacement)
    return original_func


def undo(key, obj, field):
    patch_key = (obj, field)
    if patch_key not in originals[key]:
        raise RuntimeError(f"there is no patch for {field} to undo")
    setattr(obj, field, originals[key].pop(patch_key))


def original(key, obj, field):
    return originals[key].get((obj, field), None)


def undo_all():
    for key in reversed(list(originals)):
        for (obj, field) in reversed(list(originals[key])):
            undo(key, obj, field)
    originals.clear()
