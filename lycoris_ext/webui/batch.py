"""Per-image networks in a batch, and networks in the negative prompt.

The WebUI activates the networks of a batch's first prompt for every image
and never reads tokens in negative prompts. Here each image gets its own:

- text encoder: the conditioning of each group of images with the same
  text-encoder networks is computed with exactly those networks (the
  processing object's ``get_conds_with_caching`` is wrapped for the batch);
- UNet: one row-wise bypass use per token, weighted per image, on the
  conditional rows (positive prompt) and unconditional rows (positive and
  negative prompt); the row layout comes from the denoiser callback.

A batch whose images share one set and whose negative prompts have no
token takes the ordinary path (the configured mode, the WebUI's cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..runtime import Use
from ..runtime.uses import RowWeights
from ..tokens import TokenError, TokenSpec, parse_token, strip_tokens


def _signature(spec: TokenSpec, hires: bool) -> tuple:
    te, unet = spec.multipliers(hires)
    return (spec.name, str(te), str(unet), spec.dyn, spec.lbw, spec.x, spec.start, spec.stop)


@dataclass
class ImageTokens:
    positive: list[TokenSpec] = field(default_factory=list)
    negative: list[TokenSpec] = field(default_factory=list)


@dataclass
class BatchPlan:
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


def batch_slice(p, hires: bool) -> tuple[list[str], list[str]] | None:
    """The raw (token-carrying) prompts and negative prompts of the current batch."""
    n = len(getattr(p, "prompts", None) or [])
    it = int(getattr(p, "iteration", 0) or 0)
    bs = int(getattr(p, "batch_size", n) or n)
    if hires:
        pos, neg = getattr(p, "all_hr_prompts", None), getattr(p, "all_hr_negative_prompts", None)
    else:
        pos, neg = getattr(p, "all_prompts", None), getattr(p, "all_negative_prompts", None)
    if not pos or not n:
        return None
    pos = list(pos[it * bs: it * bs + n])
    neg = list((neg or [""] * len(pos))[it * bs: it * bs + n])
    if len(pos) != n:
        return None
    return pos, neg + [""] * (n - len(neg))


def plan_batch(p, hires: bool, default: float) -> BatchPlan | None:
    raw = batch_slice(p, hires)
    if raw is None:
        return None
    pos, neg = raw
    errors: list[str] = []
    images, prompts, negatives = [], [], []
    for a, b in zip(pos, neg):
        text, pspecs = _parse_all(a, default, errors)
        ntext, nspecs = _parse_all(b, default, errors)
        images.append(ImageTokens(pspecs, nspecs))
        prompts.append(text)
        negatives.append(ntext)
    return BatchPlan(hires, images, prompts, negatives, sorted(set(errors)))


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


# ------------------------------------------------------------ conditioning

def split_cond(res, count: int) -> list:
    """Per-prompt pieces of what a conditioning function returned for ``count`` prompts."""
    if hasattr(res, "batch"):  # MulticondLearnedConditioning
        return list(res.batch)
    if isinstance(res, list):  # list of ScheduledPromptConditioning lists
        return list(res)
    if isinstance(res, dict):
        return [{k: v[i:i + 1] for k, v in res.items()} for i in range(count)]
    return [res[i:i + 1] for i in range(count)]


def merge_cond(pieces: list, template):
    if hasattr(template, "batch"):
        return type(template)(shape=(len(pieces),), batch=pieces)
    if isinstance(template, list):
        return pieces
    if isinstance(template, dict):
        return {k: torch.cat([p[k] for p in pieces]) for k in template}
    return torch.cat(pieces)


def conds_function(ext, p):
    """A ``get_conds_with_caching`` that encodes each group of images with its own networks."""

    def get_conds_with_caching(function, required_prompts, steps, caches, extra_network_data, hires_steps=None):
        from modules import devices, prompt_parser, shared

        plan = getattr(p, "lycoris_plan", None)
        negative_side = bool(getattr(required_prompts, "is_negative_prompt", False))
        n = len(required_prompts)
        if plan is None or n != len(plan.images):
            return type(p).get_conds_with_caching(p, function, required_prompts, steps, caches, extra_network_data, hires_steps)
        groups: dict[tuple, list[int]] = {}
        for i in range(n):
            groups.setdefault(plan.te_key(i, negative_side), []).append(i)
        pieces: list = [None] * n
        template = None
        for key, idxs in groups.items():
            ext.set_text_encoder(p, plan, key)
            sub = prompt_parser.SdConditioning([required_prompts[i] for i in idxs], copy_from=required_prompts)
            with devices.autocast():
                res = function(shared.sd_model, sub, steps, hires_steps, shared.opts.use_old_scheduling)
            template = res
            for i, piece in zip(idxs, split_cond(res, len(idxs))):
                pieces[i] = piece
        return merge_cond(pieces, template)

    return get_conds_with_caching


# ------------------------------------------------------------------- rows

def row_plan(p, params) -> tuple[list[int], list[bool]]:
    """Image index and side of every row of the denoiser's input.

    Rows are the conditional rows of every image (one per AND sub-prompt) and
    then one unconditional row per image (InstructPix2Pix: two).
    """
    x = params.x
    total = int(x.shape[0])
    cond = params.text_cond
    n_cond = int((cond["crossattn"] if isinstance(cond, dict) else cond).shape[0])
    b = len(getattr(p, "prompts", None) or []) or n_cond
    c = getattr(p, "hr_c" if getattr(p, "is_hr_pass", False) else "c", None)
    if hasattr(c, "batch") and len(c.batch) == b and sum(len(x) for x in c.batch) == n_cond:
        repeats = [len(x) for x in c.batch]
    else:
        repeats = [max(1, n_cond // b)] * b
    images = [i for i, r in enumerate(repeats) for _ in range(r)][:n_cond]
    images += [0] * (n_cond - len(images))
    unc = [False] * len(images)
    for k in range(total - n_cond):
        images.append(k % b)
        unc.append(True)
    return images, unc
