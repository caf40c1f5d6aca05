"""Stand-in for modules/extra_networks.py (A1111 v1.10.1).

Behaviour kept exactly:
* ``extra_network_registry`` (name -> ExtraNetwork, plain dict assignment: last registrant wins, the
  key keeps its first position) and ``extra_network_aliases``; ``initialize()`` clears both.
* ``ExtraNetworkParams(items=None)``: each str item is ``split('=', 2)``; exactly two parts -> ``named``
  (unstripped strings), otherwise (no '=', or two or more '=') the whole item is positional;
  non-str items are positional as they are; ``positional`` includes the name; ``__eq__`` compares
  ``items`` (and so instances are unhashable).
* ``re_extra_net = <(\\w+):([^>]+)>``; ``parse_prompt`` replaces each token with "" and splits its
  arguments on every ':'; ``parse_prompts`` strips every prompt but takes the networks of the FIRST
  prompt only (None for an empty list).
* ``lookup_extra_networks``: an alias is used only when the name itself is not registered; unknown
  names are logged and skipped; lists for the same network object are merged in prompt order.
* ``activate(p, data)``: mentioned networks first (an exception is shown with ``errors.display`` and
  that network is then called again with ``[]``), then every registered network not activated with
  ``[]``, then ``p.scripts.after_extra_networks_activate(p, batch_number=p.iteration, prompts=p.prompts,
  seeds=p.seeds, subseeds=p.subseeds, extra_network_data=data)`` if ``p.scripts`` is not None.
* ``deactivate(p, data)``: mentioned ones, then every other registered one; exceptions displayed.
* ``get_user_metadata(filename, lister=None)``: ``<stem>.json`` next to the file, ``{}`` on error/None.
Simplified: ``register_default_extra_networks`` registers a tiny ``ExtraNetworkHypernet`` stand-in
(name 'hypernet') whose activate/deactivate only record their calls in ``.calls``.
"""

import json
import logging
import os
import re
from collections import defaultdict

from modules import errors

extra_network_registry = {}
extra_network_aliases = {}


def initialize():
    extra_network_registry.clear()
    extra_network_aliases.clear()


def register_extra_network(extra_network):
    extra_network_registry[extra_network.name] = extra_network


def register_extra_network_alias(extra_network, alias):
    extra_network_aliases[alias] = extra_network


def register_default_extra_networks():
    register_extra_network(ExtraNetworkHypernet())


class ExtraNetworkParams:
    def __init__(self, items=None):
        self.items = items or []
        self.positional = []
        self.named = {}

        for item in self.items:
            parts = item.split('=', 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)

    def __eq__(self, other):
        return self.items == other.items


class ExtraNetwork:
    def __init__(self, name):
        self.name = name

    def activate(self, p, params_list):
        """Called on every run, also with an empty list for registered networks not in the prompt
        (then all effects must be disabled); may be called several times before deactivate(), each
        call replacing the previous one completely."""
        raise NotImplementedError

    def deactivate(self, p):
        """Called at the end of processing for housekeeping."""
        raise NotImplementedError


class ExtraNetworkHypernet(ExtraNetwork):
    """Tiny stand-in for modules/extra_networks_hypernet.py's network (records calls only)."""

    def __init__(self):
        super().__init__('hypernet')
        self.calls = []

    def activate(self, p, params_list):
        self.calls.append(("activate", list(params_list)))

    def deactivate(self, p):
        self.calls.append(("deactivate",))


def lookup_extra_networks(extra_network_data):
    res = {}
    for name, args in list(extra_network_data.items()):
        extra_network = extra_network_registry.get(name, None)
        alias = extra_network_aliases.get(name, None)
        if alias is not None and extra_network is None:
            extra_network = alias
        if extra_network is None:
            logging.info(f"Skipping unknown extra network: {name}")
            continue
        res.setdefault(extra_network, []).extend(args)
    return res


def activate(p, extra_network_data):
    activated = []

    for extra_network, args in lookup_extra_networks(extra_network_data).items():
        try:
            extra_network.activate(p, args)
            activated.append(extra_network)
        except Exception as e:
            errors.display(e, f"activating extra network {extra_network.name} with arguments {args}")

    for name, extra_network in extra_network_registry.items():
        if extra_network in activated:
            continue
        try:
            extra_network.activate(p, [])
        except Exception as e:
            errors.display(e, f"activating extra network {name}")

    if p.scripts is not None:
        p.scripts.after_extra_networks_activate(p, batch_number=p.iteration, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds, extra_network_data=extra_network_data)


def deactivate(p, extra_network_data):
    data = lookup_extra_networks(extra_network_data)

    for extra_network in data:
        try:
            extra_network.deactivate(p)
        except Exception as e:
            errors.display(e, f"deactivating extra network {extra_network.name}")

    for name, extra_network in extra_network_registry.items():
        if extra_network in data:
            continue
        try:
            extra_network.deactivate(p)
        except Exception as e:
            errors.display(e, f"deactivating unmentioned extra network {name}")


re_extra_net = re.compile(r"<(\w+):([^>]+)>")


def parse_prompt(prompt):
    res = defaultdict(list)

    def found(m):
        res[m.group(1)].append(ExtraNetworkParams(items=m.group(2).split(":")))
        return ""

    prompt = re.sub(re_extra_net, found, prompt)
    return prompt, res


def parse_prompts(prompts):
    res = []
    extra_data = None
    for prompt in prompts:
        updated_prompt, parsed = parse_prompt(prompt)
        if extra_data is None:
            extra_data = parsed
        res.append(updated_prompt)
    return res, extra_data


def get_user_metadata(filename, lister=None):
    if filename is None:
        return {}

    basename, _ = os.path.splitext(filename)
    metadata_filename = basename + '.json'

    metadata = {}
    try:
        exists = lister.exists(metadata_filename) if lister else os.path.exists(metadata_filename)
        if exists:
            with open(metadata_filename, "r", encoding="utf8") as file:
                metadata = json.load(file)
    except Exception as e:
        errors.display(e, f"reading extra network user metadata from {metadata_filename}")
    return metadata
