"""The planner: one generation pass as plain values, and what this extension does with it.

A host adapter (``webui/``: A1111 today; Forge and reForge read the same
values) reads its processing object once into a :class:`Job`. The
:class:`Planner` turns the job, the network folders, the cache of loaded
networks and the block-weight presets into an :class:`Activation`: the uses to
set on the model's runtime, the per-image plan when images differ (row-wise
UNet uses, text-encoder groups), and, once applied, the hashes per image and
the messages for the generation info. Nothing here imports a WebUI, so it is
tested with plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from .errors import NetworkApplyError, NetworkFileError
from .resolve.family import FAMILY_NAMES
from .resolve.lbw import BlockSpecError, parse_block_weights
from .resolve.resolution import FITS, OTHER_MODEL
from .runtime import Runtime, Use
from .runtime.uses import RowWeights
from .tokens import TokenError, TokenSpec, parse_token, strip_tokens


@dataclass(frozen=True)
class Job:
    """One pass of one batch, as the host asked for it.

    ``tokens`` are the items of each token the host's extra-network call
    handed over (the first prompt's, as the WebUI parses them); ``prompts``
    and ``negative_prompts`` are the batch's texts as written, tokens included
    (one per image; empty when the host cannot say).
    """

    tokens: tuple[tuple, ...] = ()
    prompts: tuple[str, ...] = ()
    negative_prompts: tuple[str, ...] = ()
    hires: bool = False
    steps: int = 0
    #: index of the batch's first image in the whole job
    first_index: int = 0
    default_multiplier: float = 1.0


@dataclass
class PassResult:
    """What one activation did, for the generation info and the UI."""

    applied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    other_model: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        """Lines for the generation info, most serious first."""
        out = []
        if self.missing:
            out.append("Lora not found: " + ", ".join(self.missing))
        if self.other_model:
            out.append("Networks for another base model, not applied: " + ", ".join(self.other_model))
        if self.errors:
            out.append("Networks with errors: " + "; ".join(self.errors))
        if self.partial:
            out.append("Networks partly applied: " + "; ".join(self.partial))
        if self.warnings:
            out.append("Network warnings: " + "; ".join(self.warnings))
        return out

    @property
    def serious(self) -> bool:
        return bool(self.missing or self.errors or self.other_model)


# ------------------------------------------------------------ per-image batches

def _signature(spec: TokenSpec, hires: bool) -> tuple:
    te, unet = spec.multipliers(hires)
    return (spec.name, str(te), str(unet), spec.dyn, spec.lbw, spec.x, spec.start, spec.stop)


@dataclass
class ImageTokens:
    positive: list[TokenSpec] = field(default_factory=list)
    negative: list[TokenSpec] = field(default_factory=list)


@dataclass
class BatchPlan:
    """Each image's tokens, and the prompts as the text encoder must see them."""

    hires: bool
    images: list[ImageTokens]
    prompts: list[str]
    negative_prompts: list[str]
    errors: list[str] = field(default_factory=list)

    @property
    def mixed(self) -> bool:
        keys = {tuple(_signature(s, self.hires) for s in img.positive) for img in self.images}
        return len(keys) > 1

    @property
    def has_negative(self) -> bool:
        return any(img.negative for img in self.images)

    @property
    def special(self) -> bool:
        """Whether this batch needs the per-image path."""
        return self.mixed or self.has_negative

    def te_key(self, i: int, negative_side: bool) -> tuple:
        """The text-encoder networks of image ``i`` (with its negative tokens on the negative side)."""
        img = self.images[i]
        specs = img.positive + (img.negative if negative_side else [])
        out = []
        for s in specs:
            te, _ = s.multipliers(self.hires)
            out.append((s.name, str(te), s.dyn, s.lbw, s.x))
        return tuple(out)


def _parse_all(prompt: str, default: float, errors: list[str]) -> tuple[str, list[TokenSpec]]:
    text, found = strip_tokens(prompt or "")
    specs = []
    for items in found:
        try:
            specs.append(parse_token(items, default))
        except TokenError as e:
            errors.append(str(e))
    return text, specs


def plan_batch(job: Job) -> BatchPlan | None:
    """Every image's tokens, or None when the host gave no prompts."""
    if not job.prompts:
        return None
    errors: list[str] = []
    images, prompts, negatives = [], [], []
    negs = list(job.negative_prompts) + [""] * (len(job.prompts) - len(job.negative_prompts))
    for a, b in zip(job.prompts, negs):
        text, pspecs = _parse_all(a, job.default_multiplier, errors)
        ntext, nspecs = _parse_all(b, job.default_multiplier, errors)
        images.append(ImageTokens(pspecs, nspecs))
        prompts.append(text)
        negatives.append(ntext)
    return BatchPlan(job.hires, images, prompts, negatives, sorted(set(errors)))


# ------------------------------------------------------------------ activation

@dataclass
class Activation:
    """What the planner decided for one job; the host adapter applies it."""

    job: Job
    #: the wanted set to put on the runtime (row-wise UNet uses for a per-image batch)
    uses: list[Use]
    result: PassResult
    #: set when the batch's images differ or negative prompts carry tokens
    batch: BatchPlan | None = None
    #: ``{image index in the job: {name as written: short hash}}``, after :meth:`Planner.conclude`
    hashes_per_image: dict[int, dict[str, str]] = field(default_factory=dict)
    #: ``{name: short hash}`` of every applied network (the built-in's ``p.lora_hashes``)
    hashes: dict[str, str] = field(default_factory=dict)
    #: the planner's lookups by name, reused for the text-encoder groups of a per-image batch
    lookups: dict = field(default_factory=dict, repr=False)

    @property
    def per_image(self) -> bool:
        return self.batch is not None

    def names_for_image(self, i: int, negative: bool = True) -> list[str]:
        """Names of the networks image ``i`` of the batch asked for."""
        if self.batch is None:
            return [u.label for u in self.uses]
        img = self.batch.images[i]
        return [s.name for s in img.positive + (img.negative if negative else [])]


class Planner:
    """Job + network folders + cache + presets -> :class:`Activation`.

    ``load(entry)`` gives the loaded :class:`~lycoris_ext.network.Network`
    (the cache), ``presets()`` the user's block-weight presets, ``refresh()``
    rescans the folders.
    """

    def __init__(self, library, load: Callable, presets: Callable[[], Mapping[str, str]],
                 refresh: Callable | None = None):
        self.library = library
        self.load = load
        self.presets = presets
        self.refresh = refresh or library.refresh

    # ------------------------------------------------------------- uses
    def use_for(self, spec: TokenSpec, result: PassResult, cache: dict, te=None, unet=None, scale=1.0,
                hires: bool = False) -> Use | None:
        """The :class:`Use` for one parsed token (None, with the reason in ``result``).

        ``cache`` holds what was found per name during one plan, so a name is
        looked up, loaded and reported once.
        """
        if spec.name not in cache:
            cache[spec.name] = self._load(spec.name, result)
        hit = cache[spec.name]
        if hit is None:
            return None
        entry, net = hit
        blocks = None
        if spec.lbw:
            try:
                if "__presets__" not in cache:
                    cache["__presets__"] = self.presets()
                blocks = parse_block_weights(spec.lbw, cache["__presets__"], x=spec.x if spec.x is not None else 1.0)
            except BlockSpecError as e:
                result.errors.append(f"{spec.name}: {e}")
                return None
        if te is None or unet is None:
            te, unet = spec.multipliers(hires)
        return Use(net, te, unet, dyn=spec.dyn, blocks=blocks, start=spec.start, stop=spec.stop,
                   name=spec.name, scale=scale, extra={"entry": entry, "spec": spec})

    def _load(self, name: str, result: PassResult):
        entry = self.library.find(name)
        if entry is None or entry.changed_on_disk():  # new, rewritten (new hash) or deleted
            self.refresh()
            entry = self.library.find(name)
        if entry is None:
            result.missing.append(name)
            return None
        try:
            return entry, self.load(entry)
        except FileNotFoundError:  # deleted since the last scan
            self.refresh()
            result.missing.append(name)
        except (NetworkFileError, OSError) as e:
            result.errors.append(f"{name}: {getattr(e, 'reason', e)}")
        return None

    def uses_for_tokens(self, tokens, hires: bool, default: float, result: PassResult, cache: dict | None = None) -> list[Use]:
        cache = {} if cache is None else cache
        uses = []
        for items in tokens:
            try:
                spec = parse_token(items, default)
            except TokenError as e:
                result.errors.append(str(e))
                continue
            result.warnings.extend(spec.warnings)
            use = self.use_for(spec, result, cache, hires=hires)
            if use is not None:
                uses.append(use)
        return uses

    def plan(self, job: Job) -> Activation:
        """The uses for one pass: the ordinary set, or per-image rows when images differ."""
        result = PassResult()
        batch = plan_batch(job)
        if batch is not None and batch.special:
            result.errors.extend(batch.errors)
            act = Activation(job, [], result, batch)
            act.uses = row_uses(batch, self._maker(result, act.lookups, batch.hires))
            return act
        return Activation(job, self.uses_for_tokens(job.tokens, job.hires, job.default_multiplier, result), result)

    def _maker(self, result: PassResult, cache: dict, hires: bool):
        def make_use(spec, te, unet, scale):
            return self.use_for(spec, result, cache, te=te, unet=unet, scale=scale, hires=hires)

        return make_use

    def te_uses(self, act: Activation, key: tuple) -> list[Use]:
        """Text-encoder uses for one group of a per-image batch (``key`` from :meth:`BatchPlan.te_key`)."""
        return te_uses(act.batch, key, self._maker(act.result, act.lookups, act.batch.hires))

    # ------------------------------------------------------------ apply
    @staticmethod
    def set_uses(rt: Runtime, uses: list[Use], steps: int, mode: str, result: PassResult | None = None):
        """``rt.set`` at step 0; a network that fails is left out (the error in ``result``), the others apply."""
        uses = list(uses)
        while True:
            try:
                return rt.set(uses, step=0, total_steps=steps, mode=mode), uses
            except NetworkApplyError as e:
                if result is not None:
                    result.errors.append(str(e))
                keep = [u for u in uses if u.label != e.network]
                uses = keep if len(keep) < len(uses) else []

    def apply(self, rt: Runtime, act: Activation, mode: str) -> list[Use]:
        """Put the activation's uses on the runtime and report each network; returns the uses in effect."""
        report, uses = self.set_uses(rt, act.uses, act.job.steps, mode, act.result)
        act.uses = uses
        result, seen = act.result, set()
        for n in report.networks:
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.skipped and n.verdict == OTHER_MODEL:
                fam = rt.resolution(next(u.network for u in uses if u.label == n.name)).file_family
                result.other_model.append(f"{n.name} (made for {FAMILY_NAMES.get(fam, fam)})")
            elif n.skipped:
                result.errors.append(f"{n.name}: {n.skipped}")
            else:
                result.applied.append(n.name)
                if n.verdict != FITS:
                    result.partial.append(f"{n.name} ({n.summary})")
            result.warnings.extend(f"{n.name}: {w}" for w in n.warnings)
        return uses

    # ----------------------------------------------------------- results
    def conclude(self, act: Activation) -> None:
        """Short hashes of the applied networks, overall and per image of the batch."""
        for u in act.uses:
            if u.label in act.result.applied:
                h = self.library.ensure_hash(u.extra["entry"])
                if h:
                    act.hashes[u.label] = h[:12]
        n = len(act.job.prompts) or 1
        for i in range(n):
            act.hashes_per_image[act.job.first_index + i] = {k: act.hashes[k] for k in act.names_for_image(i) if k in act.hashes}

    def trigger_words(self, act: Activation, words_of: Callable) -> list[list[str]]:
        """Per image of the batch, the trigger words of its applied networks (``words_of(entry)``)."""
        applied = {u.label: u.extra.get("entry") for u in act.uses if u.extra.get("entry") is not None}
        out = []
        for i in range(len(act.job.prompts)):
            names = act.names_for_image(i, negative=False) if act.per_image else list(applied)
            out.append([w for n in names if n in applied for w in words_of(applied[n])])
        return out


def add_words(text: str, words: list[str]) -> str:
    """``text`` with the words it does not contain yet (case-insensitive), comma-separated."""
    missing = [w for w in words if w and w.lower() not in text.lower()]
    if not missing:
        return text
    return text + (", " if text.strip() else "") + ", ".join(dict.fromkeys(missing))


def row_uses(plan: BatchPlan, make_use) -> list[Use]:
    """One row-wise UNet use per distinct token, weighted per image and side.

    ``make_use(spec, te, unet, scale)`` builds the Use (the caller resolves
    the network); it returns None for a missing network.
    """
    n = len(plan.images)
    groups: dict[tuple, tuple[TokenSpec, list[float], list[float]]] = {}
    for i, img in enumerate(plan.images):
        for side, specs in (("positive", img.positive), ("negative", img.negative)):
            for s in specs:
                key = (side,) + _signature(s, plan.hires)
                if key not in groups:
                    groups[key] = (s, [0.0] * n, [0.0] * n)
                _, cond, unc = groups[key]
                if side == "positive":
                    cond[i] = 1.0
                unc[i] = 1.0
    uses = []
    for (side, *_), (spec, cond, unc) in groups.items():
        _, unet = spec.multipliers(plan.hires)
        use = make_use(spec, 0.0, RowWeights(tuple(cond), tuple(unc)), unet)
        if use is not None:
            uses.append(use)
    return uses


def te_uses(plan: BatchPlan, key: tuple, make_use) -> list[Use]:
    """Text-encoder-only uses for one group of images (``key`` from :meth:`BatchPlan.te_key`)."""
    uses = []
    for i, img in enumerate(plan.images):
        for neg in (False, True):
            if plan.te_key(i, neg) == key:
                specs = img.positive + (img.negative if neg else [])
                for s in specs:
                    te, _ = s.multipliers(plan.hires)
                    use = make_use(s, te, 0.0, 1.0)
                    if use is not None:
                        uses.append(use)
                return uses
    return uses
