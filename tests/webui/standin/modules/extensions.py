"""Stand-in for modules/extensions.py (A1111 v1.10.1).

``extensions`` (list), ``extension_paths`` (path -> Extension), ``loaded_extensions`` (canonical name ->
Extension), ``active()``, ``find_extension(filename)`` (walks up from the file's realpath until a
registered extension path matches), ``CallbackOrderInfo``, ``ExtensionMetadata`` (reads
``metadata.ini``; the canonical name is always the directory name lower-cased and stripped - the real
code overwrites the ini's ``[Extension] Name`` the same way; ``parse_list`` splits on commas and
whitespace; ``list_callback_order_instructions`` yields one ``CallbackOrderInfo`` per
``[callbacks/<name>]`` section whose name starts with the canonical name, reporting the others;
``get_script_requirements``) and ``Extension``.
Simplified: no git information, no update checks; ``list_extensions`` is replaced by
``register(path, is_builtin=False, enabled=True)``, which the test helper calls per extension.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re

from modules import shared, errors
from modules.paths_internal import extensions_dir, extensions_builtin_dir, script_path  # noqa: F401

extensions: list = []
extension_paths: dict = {}
loaded_extensions: dict = {}


def reset():
    extensions.clear()
    extension_paths.clear()
    loaded_extensions.clear()


def active():
    if shared.cmd_opts.disable_all_extensions or shared.opts.disable_all_extensions == "all":
        return []
    if shared.cmd_opts.disable_extra_extensions or shared.opts.disable_all_extensions == "extra":
        return [x for x in extensions if x.enabled and x.is_builtin]
    return [x for x in extensions if x.enabled]


@dataclasses.dataclass
class CallbackOrderInfo:
    name: str
    before: list
    after: list


class ExtensionMetadata:
    filename = "metadata.ini"

    def __init__(self, path, canonical_name):
        self.config = configparser.ConfigParser()
        try:
            self.config.read(os.path.join(path, self.filename))
        except Exception:
            errors.report(f"Error reading {self.filename} for extension {canonical_name}.", exc_info=True)

        # the real code reads [Extension] Name and then overwrites it with the directory name
        self.canonical_name = canonical_name.lower().strip()
        self.requires = None

    def get_script_requirements(self, field, section, extra_section=None):
        text = self.config.get(section, field, fallback='')
        if extra_section:
            text = text + ', ' + self.config.get(extra_section, field, fallback='')

        res = []
        for requirement in self.parse_list(text.lower()):
            present = [x for x in requirement.split("|") if x in loaded_extensions]
            res.append(present[0] if present else requirement)
        return res

    def parse_list(self, text):
        if not text:
            return []
        return [x for x in re.split(r"[,\s]+", text.strip()) if x]

    def list_callback_order_instructions(self):
        for section in self.config.sections():
            if not section.startswith("callbacks/"):
                continue
            callback_name = section[len("callbacks/"):]
            if not callback_name.startswith(self.canonical_name):
                errors.report(f"Callback order section for extension {self.canonical_name} is referencing the wrong extension: {section}")
                continue
            before = self.parse_list(self.config.get(section, 'Before', fallback=''))
            after = self.parse_list(self.config.get(section, 'After', fallback=''))
            yield CallbackOrderInfo(callback_name, before, after)


class Extension:
    def __init__(self, name, path, enabled=True, is_builtin=False, metadata=None):
        self.name = name
        self.path = path
        self.enabled = enabled
        self.status = ''
        self.can_update = False
        self.is_builtin = is_builtin
        self.commit_hash = ''
        self.commit_date = None
        self.version = ''
        self.branch = None
        self.remote = None
        self.have_info_from_repo = False
        self.metadata = metadata if metadata else ExtensionMetadata(self.path, name.lower())
        self.canonical_name = self.metadata.canonical_name

    def list_files(self, subdir, extension):
        from modules import scripts

        dirpath = os.path.join(self.path, subdir)
        if not os.path.isdir(dirpath):
            return []
        res = [scripts.ScriptFile(self.path, filename, os.path.join(dirpath, filename)) for filename in sorted(os.listdir(dirpath))]
        return [x for x in res if os.path.splitext(x.path)[1].lower() == extension and os.path.isfile(x.path)]

    def read_info_from_repo(self):
        pass


def register(path, is_builtin=False, enabled=True, name=None):
    """Add one extension directory the way list_extensions() would (stand-in helper). ``name`` is the
    directory name it would have under extensions/ (default: its own basename); the canonical name is
    that name lower-cased."""
    path = os.path.realpath(path)
    dirname = name or os.path.basename(path)
    metadata = ExtensionMetadata(path, dirname)
    already = loaded_extensions.get(metadata.canonical_name)
    if already is not None:
        if already.path == path:
            return already
        errors.report(f'Duplicate canonical name "{dirname}" found in extensions "{dirname}" and "{already.name}". Former will be discarded.', exc_info=False)
        return None

    ext = Extension(name=dirname, path=path, enabled=enabled, is_builtin=is_builtin, metadata=metadata)
    extensions.append(ext)
    extension_paths[ext.path] = ext
    loaded_extensions[metadata.canonical_name] = ext
    ext.metadata.requires = ext.metadata.get_script_requirements("Requires", "Extension")
    return ext


def find_extension(filename):
    parentdir = os.path.dirname(os.path.realpath(filename))

    while parentdir != filename:
        extension = extension_paths.get(parentdir)
        if extension is not None:
            return extension
        filename = parentdir
        parentdir = os.path.dirname(filename)

    return None
