"""The shared base of every algorithm.

An :class:`Adapter` is what one module key of a file becomes: its tensors,
validated once at load, and the math that turns a target weight into the
weight the network asks for. Adapters never touch a model; they take tensors
and return new ones.
"""

from __future__ import annotations

import math
from typing import ClassVar, Mapping

import torch

from .. import functional as F
from ..errors import NetworkFileError

Entry = tuple[str, torch.Tensor]  # (raw key in the file, tensor)


def natural_fits(natural: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether a delta of shape ``natural`` can be written into ``target``.

    Equal element counts with the same output rows, and the same spatial
    kernel, where a 1x1 kernel and a Linear count as the same thing (SD1's
    1x1 ``proj_in`` is SD2's Linear ``proj_in``). A flattened ``(out, in*k)``
    natural shape fits any target with those counts.
    """
    if not natural or not target or natural[0] != target[0]:
        return False
    if math.prod(natural[1:]) != math.prod(target[1:]):
        return False
    if len(natural) <= 2:
        return True

    def kernel(s):
        k = tuple(s[2:])
        return () if all(d == 1 for d in k) else k

    return kernel(natural) == kernel(target)


class Adapter:
    """One module's worth of a network file.

    Subclasses set the class attributes below, validate their tensors in
    :meth:`_parse`, and implement :meth:`core_delta` (the change at
    multiplier 1 before DoRA). The base adds DoRA, the multiplier and the
    final cast, so every algorithm gets them the same way.
    """

    #: Short name shown to users and used by the registry.
    algorithm: ClassVar[str] = ""
    #: Suffixes whose presence claims a module for this algorithm.
    detect: ClassVar[tuple[str, ...]] = ()
    #: Every suffix this algorithm consumes.
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: ``delta(m) == m * delta(1)`` for every target weight.
    linear_in_multiplier: ClassVar[bool] = True
    #: The delta depends on the target's current weight.
    needs_weight: ClassVar[bool] = False
    #: Whether the file may carry a DoRA magnitude for this algorithm.
    allows_dora: ClassVar[bool] = False
    #: ``core_delta`` returns a new tensor (not a view of a stored one), so
    #: callers may scale it in place.
    fresh_delta: ClassVar[bool] = True
    #: The runtime may keep :meth:`lowrank`'s factors while the adapter is
    #: in use (False when they are much larger than the file's tensors and
    #: cheap to rebuild).
    cache_lowrank: ClassVar[bool] = True

    def __init__(self, key: str, entries: Mapping[str, Entry], path: str | None = None):
        self.key = key
        self.path = path
        self._entries = dict(entries)
        self._device_cache: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.magnitude: torch.Tensor | None = None
        self.magnitude_on_out = True
        self.rank: int | None = None
        self.alpha: float | None = None
        self.scale = 1.0
        #: Where ``scale`` came from: "alpha tensor", "adapter metadata"
        #: (PEFT's ``lora_adapter_metadata``), "default" (no alpha: 1), or
        #: None for algorithms without an alpha.
        self.scale_source: str | None = None
        self.features: set[str] = set()
        for suffix, (raw, t) in self._entries.items():
            if not isinstance(t, torch.Tensor):
                raise self.error(suffix, "is not a tensor")
        self._parse()
        if self.allows_dora and "dora_scale" in self._entries:
            self._parse_dora()

    # ----------------------------------------------------------- validation
    @classmethod
    def claims(cls, entries: Mapping[str, Entry]) -> bool:
        """Whether a module whose suffixes are ``entries`` is this algorithm's."""
        return any(s in entries for s in cls.detect)

    def error(self, suffix: str | None, message: str) -> NetworkFileError:
        key = self._entries[suffix][0] if suffix in self._entries else (
            f"{self.key}.{suffix}" if suffix else self.key
        )
        return NetworkFileError(self.path, key, message)

    def has(self, suffix: str) -> bool:
        return suffix in self._entries

    def tensor(self, suffix: str, ndims: tuple[int, ...] | None = None) -> torch.Tensor:
        """A floating, finite tensor of the file, checked once."""
        if suffix not in self._entries:
            raise self.error(None, f"missing '{suffix}' needed by {self.algorithm}")
        t = self._entries[suffix][1]
        if not (t.is_floating_point()):
            raise self.error(suffix, f"holds {t.dtype} values where floating point values are needed")
        if ndims is not None and t.dim() not in ndims:
            raise self.error(suffix, f"has shape {tuple(t.shape)}; {self.algorithm} expects {' or '.join(map(str, ndims))} dimensions")
        if t.numel() == 0:
            raise self.error(suffix, f"is empty (shape {tuple(t.shape)})")
        if not bool(torch.isfinite(t.float()).all()):
            raise self.error(suffix, f"contains NaN or Inf values (module '{self.key}')")
        return t

    def scalar(self, suffix: str) -> float | None:
        """A scalar entry (any dtype, 0-d or one element), or None if absent."""
        if suffix not in self._entries:
            return None
        t = self._entries[suffix][1]
        if t.numel() != 1:
            raise self.error(suffix, f"should be a single number but has shape {tuple(t.shape)}")
        if t.dtype == torch.bool:
            return float(t.item())
        v = float(t.float().item()) if t.is_floating_point() else float(t.item())
        if not math.isfinite(v):
            raise self.error(suffix, f"is {v} (module '{self.key}')")
        return v

    def set_rank_alpha(self, rank: int | None, alpha_suffix: str = "alpha") -> None:
        """gamma = alpha / rank, once; alpha missing or 0 means gamma = 1."""
        self.rank = rank
        alpha = self.scalar(alpha_suffix)
        self.alpha = alpha
        self.scale = 1.0 if (not alpha or not rank) else alpha / rank
        self.scale_source = "default" if alpha is None else "alpha tensor"

    def set_scale(self, alpha: float, scale: float, source: str) -> None:
        """A scale from outside the module's tensors (adapter metadata)."""
        self.alpha = alpha
        self.scale = scale
        self.scale_source = source

    def _parse(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _parse_dora(self) -> None:
        m = self.tensor("dora_scale")
        shape = tuple(m.shape)
        self.features.add("dora")
        if self._entries["dora_scale"][0].endswith(("lora_magnitude_vector", "lora_magnitude_vector.weight")):
            # PEFT: one magnitude per output row, (out,) for a Linear and
            # (1, out, 1, 1) for a conv (its norm transposed).
            self.magnitude_on_out = True
        elif m.dim() == 1:
            self.magnitude_on_out = True
        elif shape[0] == m.numel():
            self.magnitude_on_out = True
        elif len(shape) >= 2 and shape[1] == m.numel() and shape[0] == 1:
            self.magnitude_on_out = False
        else:
            raise self.error("dora_scale", f"has shape {shape}; expected (out, 1, ...) or (1, in, ...)")
        self.magnitude = m

    # -------------------------------------------------------------- targets
    def natural_shape(self) -> tuple[int, ...] | None:
        """The delta's own shape, where the file determines it."""
        return None

    def check_target(self, shape: tuple[int, ...] | torch.Size) -> None:
        """Raise a :class:`NetworkFileError` unless this fits a weight of ``shape``."""
        shape = tuple(shape)
        natural = self.natural_shape()
        if natural is not None and not natural_fits(natural, shape):
            raise self.error(None, f"{self.algorithm} of shape {natural} does not fit a weight of shape {shape}")
        self._check_target(shape)
        if self.magnitude is not None:
            want = shape[0] if self.magnitude_on_out else (shape[1] if len(shape) > 1 else -1)
            if self.magnitude.numel() != want:
                axis = "output rows" if self.magnitude_on_out else "input columns"
                raise self.error("dora_scale", f"has {self.magnitude.numel()} values but the weight {shape} has {want} {axis}")

    def _check_target(self, shape: tuple[int, ...]) -> None:
        """Algorithm-specific fit checks (beyond the natural shape)."""

    @property
    def reads_weight(self) -> bool:
        """Whether the change depends on the target's weight (the algorithm
        itself, or a DoRA magnitude's normalisation)."""
        return self.needs_weight or self.magnitude is not None

    def fits(self, shape) -> bool:
        try:
            self.check_target(shape)
        except NetworkFileError:
            return False
        return True

    # ----------------------------------------------------------------- math
    def param(self, suffix: str, device: torch.device | str | None = None) -> torch.Tensor:
        """A file tensor as float32 on ``device`` (cached per device)."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        k = (suffix, device)
        t = self._device_cache.get(k)
        if t is None:
            t = self._entries[suffix][1].to(device=device, dtype=torch.float32)
            self._device_cache[k] = t
        return t

    def drop_device_cache(self) -> None:
        """Forget the float32 copies :meth:`param` made (the runtime calls
        this when the network is no longer wanted)."""
        self._device_cache.clear()

    def core_delta(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        """The float32 change of ``(weight, bias)`` at multiplier 1, before DoRA.

        Returns ``(dw, db)``; ``dw`` has ``weight``'s shape, ``db`` is None
        when the bias does not change.
        """
        raise NotImplementedError

    def unit_delta(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        """The float32 change at multiplier 1, DoRA included."""
        dw, db = self.core_delta(weight, bias)
        if self.magnitude is not None:
            mag = self.param("dora_scale", weight.device)
            if self.magnitude_on_out:
                mag = mag.reshape(-1, *[1] * (weight.dim() - 1))
            else:
                mag = mag.reshape(1, -1, *[1] * (weight.dim() - 2))
            dw = F.dora(weight + dw, mag, self.magnitude_on_out) - weight
        return dw, db

    def delta(self, weight: torch.Tensor, multiplier: float = 1.0, bias: torch.Tensor | None = None):
        """The float32 change of ``(weight, bias)`` at ``multiplier``.

        ``weight`` must already be float32 on the compute device. For
        algorithms the reference does not make the identity at 0 (DoRA,
        rescaled OFT) this is ``m * (W'(1) - W)``, linear by definition.
        """
        dw, db = self.unit_delta(weight, bias)
        if multiplier != 1:
            # In place when the change is a fresh tensor: same bits, one
            # full-size temporary fewer.
            dw = dw.mul_(multiplier) if (self.fresh_delta or self.magnitude is not None) else dw * multiplier
            db = None if db is None else db * multiplier
        return dw, db

    def add_into(self, target: torch.Tensor, weight: torch.Tensor, multiplier: float = 1.0,
                 bias: torch.Tensor | None = None):
        """``target += delta(weight, multiplier)``; returns the bias change or None.

        ``target`` is float32, contiguous, with ``weight``'s number of
        elements and never ``weight`` itself. Both :meth:`apply` and the
        runtime add changes this way, so they give the same bits; algorithms
        whose change is separable by rows override it to never hold the whole
        change.
        """
        f = self.lowrank(weight.device)
        if f is not None:  # as the runtime adds it: one addmm_ on the float32 factors
            up, down = f
            target.view(up.shape[0], -1).addmm_(up if multiplier == 1 else up * multiplier, down)
            return None
        dw, db = self.delta(weight, multiplier, bias)
        target.add_(dw.reshape(target.shape))
        return db

    def apply(self, weight: torch.Tensor, bias: torch.Tensor | None = None, multiplier: float = 1.0):
        """Return ``(new_weight, new_bias)``; the inputs are not modified.

        The change is computed in float32 on the weight's device and cast to
        the weight's dtype once. Multiplier 0 returns exact copies.
        """
        self.check_target(weight.shape)
        if multiplier == 0:
            return weight.clone(), (None if bias is None else bias.clone())
        w32 = weight.detach().to(torch.float32)
        b32 = None if bias is None else bias.detach().to(torch.float32)
        out = w32.clone(memory_format=torch.contiguous_format)
        db = self.add_into(out, w32, multiplier, b32)
        new_w = out.to(weight.dtype)
        new_b = None
        if bias is not None:
            new_b = bias.clone() if db is None else (b32 + db).to(bias.dtype)
        return new_w, new_b

    # ------------------------------------------------------ runtime helpers
    def lowrank(self, device=None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(up, down)`` float32 with ``delta(1) == (up @ down).reshape(W)``.

        Only for algorithms whose change is one low-rank product that does
        not depend on the weight; the runtime concatenates these to write
        every such network of a layer with one matrix product.
        """
        return None

    def truncated(self, rank: int | None) -> "Adapter":
        """This adapter using only its first ``rank`` ranks (``dyn``)."""
        return self

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for _, t in self._entries.values())

    def raw_keys(self) -> list[str]:
        """This module's keys as the file spells them."""
        return [raw for raw, _ in self._entries.values()]

    def consumed(self) -> set[str]:
        """Suffixes of this module the algorithm used."""
        return {s for s in self._entries if s in self.suffixes}

    def describe(self) -> dict:
        d = {"algorithm": self.algorithm, "rank": self.rank, "alpha": self.alpha, "scale": self.scale}
        if self.scale_source is not None:
            d["scale_source"] = self.scale_source
        if self.features:
            d["features"] = sorted(self.features)
        return d

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} rank={self.rank} alpha={self.alpha}>"
