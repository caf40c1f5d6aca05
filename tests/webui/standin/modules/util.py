"""Stand-in for modules/util.py (A1111 v1.10.1).

``natural_sort_key``, ``listfiles``, ``html_path``/``html`` (reads ``<script_path>/html/<name>``, ""
if missing), ``walk_files(path, allowed_extensions=None)`` (os.walk with followlinks, natural order,
extension filter case-insensitive, files under hidden dirs skipped unless ``opts.list_hidden_files``),
``truncate_path``, ``topological_sort`` (dependencies first, ignores missing/circular) and
``MassFileLister``: one ``os.scandir`` per directory, cached; ``find`` matches exact case first, then
case-insensitively (confirming with a stat), ``exists``, ``mctime`` -> ``(mtime, ctime)`` or
``(0, 0)``, ``reset``, ``update_file_entry`` (only for an already cached directory).
Simplified: ``open_folder`` and ``ldm_print`` only print.
"""

import os
import re

from modules.paths_internal import script_path, cwd


def natural_sort_key(s, regex=re.compile('([0-9]+)')):
    return [int(part) if part.isdigit() else part.lower() for part in regex.split(s)]


def listfiles(dirname):
    names = sorted((x for x in os.listdir(dirname) if not x.startswith(".")), key=natural_sort_key)
    return [p for p in (os.path.join(dirname, x) for x in names) if os.path.isfile(p)]


def html_path(filename):
    return os.path.join(script_path, "html", filename)


def html(filename):
    try:
        with open(html_path(filename), encoding="utf8") as file:
            return file.read()
    except OSError:
        return ""


def walk_files(path, allowed_extensions=None):
    from modules import shared

    if not os.path.exists(path):
        return
    allowed = set(allowed_extensions) if allowed_extensions is not None else None

    for root, _, files in sorted(os.walk(path, followlinks=True), key=lambda x: natural_sort_key(x[0])):
        for filename in sorted(files, key=natural_sort_key):
            if allowed is not None and os.path.splitext(filename)[1].lower() not in allowed:
                continue
            if not shared.opts.list_hidden_files and ("/." in root or "\\." in root):
                continue
            yield os.path.join(root, filename)


def ldm_print(*args, **kwargs):
    print(*args, **kwargs)


def truncate_path(target_path, base_path=cwd):
    abs_target, abs_base = os.path.abspath(target_path), os.path.abspath(base_path)
    try:
        if os.path.commonpath([abs_target, abs_base]) == abs_base:
            return os.path.relpath(abs_target, abs_base)
    except ValueError:
        pass
    return abs_target


class MassFileListerCachedDir:
    def __init__(self, dirname):
        self.dirname = dirname
        entries = []
        for entry in os.scandir(dirname):
            st = entry.stat(follow_symlinks=False)
            entries.append((entry.name, st.st_mtime, st.st_ctime))
        self.files = {e[0].lower(): e for e in entries}
        self.files_cased = {e[0]: e for e in entries}

    def update_entry(self, filename):
        path = os.path.join(self.dirname, filename)
        try:
            st = os.stat(path)
        except FileNotFoundError as e:
            print(f'MassFileListerCachedDir.add_entry: "{path}" {e}')
            return
        entry = (filename, st.st_mtime, st.st_ctime)
        self.files[filename.lower()] = entry
        self.files_cased[filename] = entry


class MassFileLister:
    def __init__(self):
        self.cached_dirs = {}

    def find(self, path):
        dirname, filename = os.path.split(path)
        cached = self.cached_dirs.get(dirname)
        if cached is None:
            cached = MassFileListerCachedDir(dirname)
            self.cached_dirs[dirname] = cached

        hit = cached.files_cased.get(filename)
        if hit is not None:
            return hit
        if cached.files.get(filename.lower()) is None:
            return None
        try:
            st = os.stat(path, follow_symlinks=False)
            return filename, st.st_mtime, st.st_ctime
        except Exception:
            return None

    def exists(self, path):
        return self.find(path) is not None

    def mctime(self, path):
        stats = self.find(path)
        return (0, 0) if stats is None else stats[1:3]

    def reset(self):
        self.cached_dirs.clear()

    def update_file_entry(self, path):
        dirname, filename = os.path.split(path)
        cached = self.cached_dirs.get(dirname)
        if cached:
            cached.update_entry(filename)


def topological_sort(dependencies):
    visited = {}
    result = []

    def visit(name):
        visited[name] = True
        for dep in dependencies.get(name, []):
            if dep in dependencies and dep not in visited:
                visit(dep)
        result.append(name)

    for name in dependencies:
        if name not in visited:
            visit(name)
    return result


def open_folder(path):
    print(f"open_folder({path!r}) (stand-in: nothing opened)")
