"""Stand-in for the parts of gradio 3.41.2 (the version A1111 v1.10.1 pins) that WebUI code uses.

Nothing is rendered and no server is started. Every component and layout block is a plain object that
records what it was built with, so a test can inspect the UI an extension built and call its event
handlers directly:

* ``Block.args`` / ``Block.kwargs``: the constructor arguments as given; the usual ones are also
  attributes (``value``, ``label``, ``elem_id``, ``elem_classes`` (always a list here), ``visible``,
  ``choices``, ``minimum``, ``maximum``, ``step``, ``interactive``, ``type``, ``multiselect`` ...).
  Positional arguments follow gradio 3.41's orders (``Dropdown(choices, value=...)``,
  ``Slider(minimum, maximum, value)``, ``Textbox(value)`` ...; layout blocks other than Tab/Accordion
  take keywords only) and gradio 3.41.2's normalisations are applied: ``Dropdown.choices`` become a
  list of ``str`` (a str value of a multiselect Dropdown becomes a list), ``Radio``/``CheckboxGroup``
  choices become ``(label, value)`` tuples, ``Slider.value`` defaults to ``minimum`` and ``step`` to
  ``10 ** floor(log10(maximum - minimum) - 2)``.
* ``Block.parent`` / ``Block.children``: the nesting given by ``with`` blocks.
* ``Block.events``: every ``.click/.change/.input/.submit/.select/.release/.blur/.load`` call as an
  ``Event`` (trigger, fn, inputs, outputs, js, kwargs); ``.then()/.success()`` on the returned
  dependency adds chained events (kept in ``Event.chain`` and in the module-level ``events`` list).
* Module registries: ``created`` (all blocks created, in creation order), ``events``, ``warnings``, ``infos``;
  helpers ``find(elem_id)``, ``find_all(cls=None, **attrs)`` and ``reset()``.

``update(**kw)`` returns a dict like gradio 3 does (``{"__type__": "generic_update", ...}``), and
``Component.update(**kw)`` returns ``{"__type__": "update", ...}``. ``Warning``/``Info`` record their
message (gradio shows a toast), ``Error`` is an exception class.

Simplified: no rendering, no queue, no preprocessing/postprocessing of values, no theming, no
``before_component``/``after_component`` hooks (A1111 patches those in through gradio_extensons.py).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

__version__ = "3.41.2"

created: list["Block"] = []
"""every block/component created since the last reset(), in creation order"""

events: list["Event"] = []
"""every event handler registered since the last reset() (chained ones included)"""

warnings: list[str] = []
infos: list[str] = []

_context: list["BlockContext"] = []
_ids = itertools.count(1)


def reset():
    created.clear()
    events.clear()
    warnings.clear()
    infos.clear()
    _context.clear()


def find(elem_id: str):
    """The last created block with this elem_id, or None."""
    for b in reversed(created):
        if b.elem_id == elem_id:
            return b
    return None


def find_all(cls=None, **attrs):
    """All created blocks that are instances of cls (if given) and whose attributes equal attrs."""
    res = []
    for b in created:
        if cls is not None and not isinstance(b, cls):
            continue
        if all(getattr(b, k, None) == v for k, v in attrs.items()):
            res.append(b)
    return res


class Event:
    """One registered handler: ``trigger`` is the method name ('click', 'change', 'then', ...)."""

    def __init__(self, block, trigger, fn=None, inputs=None, outputs=None, js=None, kwargs=None, previous=None):
        self.block = block
        self.trigger = trigger
        self.fn = fn
        self.inputs = _as_list(inputs)
        self.outputs = _as_list(outputs)
        self.js = js
        self.kwargs = kwargs or {}
        self.previous = previous
        self.chain: list[Event] = []

    # the object returned by gradio's event methods (a Dependency) supports .then/.success
    def then(self, fn=None, inputs=None, outputs=None, _js=None, js=None, **kwargs):
        ev = Event(self.block, "then", fn, inputs, outputs, _js if _js is not None else js, kwargs, previous=self)
        self.chain.append(ev)
        events.append(ev)
        return ev

    def success(self, fn=None, inputs=None, outputs=None, _js=None, js=None, **kwargs):
        ev = Event(self.block, "success", fn, inputs, outputs, _js if _js is not None else js, kwargs, previous=self)
        self.chain.append(ev)
        events.append(ev)
        return ev

    def __call__(self, *args, **kwargs):
        """Call the Python handler (None if there is none, as for JS-only events)."""
        if self.fn is None:
            return None
        return self.fn(*args, **kwargs)

    def __repr__(self):
        name = getattr(self.fn, "__name__", None)
        return f"<Event {self.trigger} on {self.block!r} fn={name} js={'yes' if self.js else 'no'}>"


def _as_list(x):
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, set):
        return list(x)
    return [x]


def _event_method(trigger):
    def method(self, fn=None, inputs=None, outputs=None, _js=None, js=None, **kwargs):
        ev = Event(self, trigger, fn, inputs, outputs, _js if _js is not None else js, kwargs)
        self.events.append(ev)
        events.append(ev)
        return ev

    method.__name__ = trigger
    return method


class Block:
    """Base of every stand-in block. Positional args are mapped by ``_positional``."""

    _positional: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = dict(kwargs)
        self._id = next(_ids)
        values = dict(self._defaults)
        for name, value in zip(self._positional, args):
            values[name] = value
        values.update(kwargs)
        self.value = None
        self.label = None
        self.elem_id = None
        self.visible = True
        self.interactive = None
        for k, v in values.items():
            if callable(getattr(type(self), k, None)):
                continue  # e.g. render=False: kept in .kwargs, the method stays usable
            setattr(self, k, v)
        ec = values.get("elem_classes")
        self.elem_classes = [ec] if isinstance(ec, str) else list(ec or [])
        self._normalize()
        self.events: list[Event] = []
        self.children: list[Block] = []
        self.parent = _context[-1] if _context else None
        if self.parent is not None:
            self.parent.children.append(self)
        created.append(self)

    def _normalize(self):
        """per-class normalisation gradio 3.41.2 applies in its constructors"""

    def __repr__(self):
        extra = f" elem_id={self.elem_id!r}" if self.elem_id else (f" label={self.label!r}" if self.label else "")
        return f"<{type(self).__name__}#{self._id}{extra}>"

    def get_block_name(self):
        return type(self).__name__.lower()

    def render(self):
        return self

    def unrender(self):
        return self

    @classmethod
    def update(cls, **kwargs):
        return {"__type__": "update", **kwargs}

    # events that gradio 3.41 components offer (not every class has every one in gradio; here all do)
    click = _event_method("click")
    change = _event_method("change")
    input = _event_method("input")
    submit = _event_method("submit")
    select = _event_method("select")
    release = _event_method("release")
    blur = _event_method("blur")
    focus = _event_method("focus")
    upload = _event_method("upload")
    clear = _event_method("clear")


class BlockContext(Block):
    """A layout block usable as a context manager."""

    def __enter__(self):
        _context.append(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        if _context and _context[-1] is self:
            _context.pop()
        return False


class Blocks(BlockContext):
    _positional = ("theme", "analytics_enabled", "mode", "title", "css")

    load = _event_method("load")

    def queue(self, *args, **kwargs):
        return self

    def launch(self, *args, **kwargs):
        raise RuntimeError("the gradio stand-in cannot launch a server")


class Row(BlockContext):
    _defaults = {"variant": "default", "equal_height": True}


class Column(BlockContext):
    _defaults = {"scale": 1, "min_width": 320, "variant": "default"}


class Group(BlockContext):
    pass


class Box(BlockContext):
    pass


class Accordion(BlockContext):
    _positional = ("label",)
    _defaults = {"open": True}


class Tabs(BlockContext):
    _defaults = {"selected": None}


class Tab(BlockContext):
    _positional = ("label",)


TabItem = Tab


class Form(BlockContext):
    pass


class Component(Block):
    pass


IOComponent = Component
FormComponent = Component


class HTML(Component):
    _positional = ("value",)
    _defaults = {"value": ""}


class Markdown(Component):
    _positional = ("value",)
    _defaults = {"value": ""}


class Textbox(Component):
    _positional = ("value",)
    _defaults = {"value": "", "lines": 1, "max_lines": 20, "placeholder": None}


Text = Textbox


class TextArea(Textbox):
    _defaults = {"value": "", "lines": 7, "max_lines": 20, "placeholder": None}


class Slider(Component):
    _positional = ("minimum", "maximum", "value")
    _defaults = {"minimum": 0, "maximum": 100, "step": None}

    def _normalize(self):
        if self.step is None:
            self.step = 10 ** math.floor(math.log10(self.maximum - self.minimum) - 2)
        if self.value is None:
            self.value = self.minimum


class Number(Component):
    _positional = ("value",)
    _defaults = {"precision": None}


class Checkbox(Component):
    _positional = ("value",)
    _defaults = {"value": False}


class _TupleChoices:
    _positional = ("choices",)
    _defaults = {"choices": None, "type": "value"}

    def _normalize(self):
        self.choices = [c if isinstance(c, tuple) else (str(c), c) for c in self.choices] if self.choices else []


class CheckboxGroup(_TupleChoices, Component):
    pass


class Radio(_TupleChoices, Component):
    pass


class Dropdown(Component):
    _positional = ("choices",)
    _defaults = {"choices": None, "type": "value", "multiselect": None, "allow_custom_value": False}

    def _normalize(self):
        self.choices = [str(c) for c in self.choices] if self.choices else []
        if self.multiselect and isinstance(self.value, str):
            self.value = [self.value]


class Button(Component):
    _positional = ("value",)
    _defaults = {"value": "Run", "variant": "secondary"}


class UploadButton(Button):
    pass


class JSON(Component):
    _positional = ("value",)


class HighlightedText(Component):
    _positional = ("value",)


class Label(Component):
    _positional = ("value",)


class State(Component):
    _positional = ("value",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.visible = False


class Gallery(Component):
    _positional = ("value",)


class Image(Component):
    _positional = ("value",)


class File(Component):
    _positional = ("value",)


class Dataframe(Component):
    _positional = ("value",)


class ColorPicker(Component):
    _positional = ("value",)


class Code(Component):
    _positional = ("value",)


def update(**kwargs) -> dict:
    kwargs["__type__"] = "generic_update"
    return kwargs


def skip() -> dict:
    return {"__type__": "update"}


def Warning(message: str = "Warning issued."):  # noqa: A001 - gradio's name
    warnings.append(message)


def Info(message: str = "Info issued."):
    infos.append(message)


class Error(Exception):
    def __init__(self, message: str = "Error raised."):
        self.message = message
        super().__init__(message)


class _Themes:
    class Base:
        def __init__(self, *args, **kwargs):
            self.args = args
            self.kwargs = kwargs

    Default = Base
    Soft = Base


themes = _Themes()


class _Namespace:
    def __init__(self, **kw):
        self.__dict__.update(kw)


# module-like aliases some WebUI code reaches through (gr.components.Form, gr.blocks.Block, ...)
components = _Namespace(Component=Component, IOComponent=IOComponent, FormComponent=FormComponent, Form=Form,
                        Button=Button, Textbox=Textbox, Dropdown=Dropdown, Checkbox=Checkbox, Slider=Slider,
                        HTML=HTML, Gallery=Gallery, Image=Image)
blocks = _Namespace(Block=Block, BlockContext=BlockContext, Blocks=Blocks)
layouts = _Namespace(Row=Row, Column=Column, Group=Group, Box=Box, Accordion=Accordion, Tab=Tab, Tabs=Tabs, Form=Form)
