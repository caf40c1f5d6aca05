"""Per-image networks in a batch, and networks in the negative prompt: the A1111 side.

The WebUI activates the networks of a batch's first prompt for every image
and never reads tokens in negative prompts. Here each image gets its own
(the plan is :mod:`lycoris_ext.plan`'s; this module reads the batch's prompts
and does the WebUI's part):

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

import torch


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
