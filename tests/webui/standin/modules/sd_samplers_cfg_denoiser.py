"""Stand-in for modules/sd_samplers_cfg_denoiser.py (A1111 v1.10.1).

``CFGDenoiser(sampler)`` with the fields extensions read (``p``, ``step``, ``steps``, ``total_steps``,
``sampler``, ``inner_model``, ``mask``, ``nmask``, ``init_latent``, ``image_cfg_scale``,
``mask_before_denoising``, ``cond_scale_miltiplier``) and ``forward(x, sigma, uncond, cond, cond_scale,
s_min_uncond, image_cond)`` reproducing the real order of events and row layout for a non-edit model
without AND: rows ``[cond_0..cond_{B-1}, uncond_0..uncond_{B-1}]``; ``CFGDenoiserParams(x_in,
image_cond_in, sigma_in, state.sampling_step, state.sampling_steps, cond, uncond, self)`` goes through
``cfg_denoiser_callback`` and x/image_cond/sigma/text_cond/text_uncond are read back; skip-uncond
(``skip_early_cond``, NGMS) drops the uncond rows and reuses each image's cond output; one inner
call with ``opts.batch_cond_uncond`` else chunks of ``batch_size`` rows; ``cfg_denoised_callback``;
CFG combine; ``cfg_after_cfg_callback``; ``step += 1``. ``catenate_conds`` and ``subscript_cond``
handle tensors and SDXL dict conds.
The inner model is ``p.denoiser_hook(x, sigma, cond=...)`` when the processing object has one,
otherwise ``shared.sd_model.apply_model(x, sigma, cond=...)``; ``cond`` is the real condition dict
(``{"c_crossattn": [c], "c_concat": [image_cond]}``, or ``{**c, "c_concat": [...]}`` for dict conds).
Simplified: no AND (each image one sub-prompt of weight 1), no edit (InstructPix2Pix) or unCLIP
models, no cond/uncond padding, no inpainting mask blend, no live preview.
"""

import torch

from modules import shared, script_callbacks
from modules.script_callbacks import CFGDenoiserParams, CFGDenoisedParams, AfterCFGCallbackParams
from modules.shared import state


def catenate_conds(conds):
    if not isinstance(conds[0], dict):
        return torch.cat(conds)
    return {key: torch.cat([x[key] for x in conds]) for key in conds[0].keys()}


def subscript_cond(cond, a, b):
    if not isinstance(cond, dict):
        return cond[a:b]
    return {key: vec[a:b] for key, vec in cond.items()}


def _rows(cond):
    return (cond['crossattn'] if isinstance(cond, dict) else cond).shape[0]


def _tokens(cond):
    t = cond['crossattn'] if isinstance(cond, dict) else cond
    return t.shape[1] if t.dim() > 1 else 1


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sampler):
        super().__init__()
        self.model_wrap = None
        self.mask = None
        self.nmask = None
        self.init_latent = None
        self.steps = None
        self.total_steps = None
        self.step = 0
        self.image_cfg_scale = None
        self.padded_cond_uncond = False
        self.padded_cond_uncond_v0 = False
        self.sampler = sampler
        self.p = None
        self.cond_scale_miltiplier = 1.0
        self.need_last_noise_uncond = False
        self.last_noise_uncond = None
        self.mask_before_denoising = False

    @property
    def inner_model(self):
        hook = getattr(self.p, "denoiser_hook", None) if self.p is not None else None
        if hook is not None:
            return hook
        return lambda x, sigma, cond: shared.sd_model.apply_model(x, sigma, cond=cond)

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        denoised_uncond = x_out[-_rows(uncond):]
        denoised = torch.clone(denoised_uncond)
        for i, conds in enumerate(conds_list):
            for cond_index, weight in conds:
                denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
        return denoised

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        if state.interrupted or state.skipped:
            from modules.sd_samplers_common import InterruptedException
            raise InterruptedException

        batch_size = x.shape[0]
        conds_list = [[(i, 1.0)] for i in range(batch_size)]
        tensor = cond

        def make_condition_dict(c_crossattn, c_concat):
            if isinstance(c_crossattn, dict):
                return {**c_crossattn, "c_concat": [c_concat]}
            return {"c_crossattn": [c_crossattn], "c_concat": [c_concat]}

        x_in = torch.cat([x, x])
        sigma_in = torch.cat([sigma, sigma])
        image_cond_in = torch.cat([image_cond, image_cond])

        params = CFGDenoiserParams(x_in, image_cond_in, sigma_in, state.sampling_step, state.sampling_steps, tensor, uncond, self)
        script_callbacks.cfg_denoiser_callback(params)
        x_in = params.x
        image_cond_in = params.image_cond
        sigma_in = params.sigma
        tensor = params.text_cond
        uncond = params.text_uncond

        skip_uncond = False
        opts = shared.opts
        if opts.skip_early_cond != 0. and self.step / self.total_steps <= opts.skip_early_cond:
            skip_uncond = True
            self.p.extra_generation_params["Skip Early CFG"] = opts.skip_early_cond
        elif (self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            skip_uncond = True
            self.p.extra_generation_params["NGMS"] = s_min_uncond
            if opts.s_min_uncond_all:
                self.p.extra_generation_params["NGMS all steps"] = opts.s_min_uncond_all

        if skip_uncond:
            x_in = x_in[:-batch_size]
            sigma_in = sigma_in[:-batch_size]

        if _tokens(tensor) == _tokens(uncond) or skip_uncond:
            cond_in = tensor if skip_uncond else catenate_conds([tensor, uncond])
            if opts.batch_cond_uncond:
                x_out = self.inner_model(x_in, sigma_in, cond=make_condition_dict(cond_in, image_cond_in))
            else:
                x_out = torch.zeros_like(x_in)
                for a in range(0, x_out.shape[0], batch_size):
                    b = a + batch_size
                    x_out[a:b] = self.inner_model(x_in[a:b], sigma_in[a:b], cond=make_condition_dict(subscript_cond(cond_in, a, b), image_cond_in[a:b]))
        else:
            x_out = torch.zeros_like(x_in)
            chunk = batch_size * 2 if opts.batch_cond_uncond else batch_size
            n = _rows(tensor)
            for a in range(0, n, chunk):
                b = min(a + chunk, n)
                x_out[a:b] = self.inner_model(x_in[a:b], sigma_in[a:b], cond=make_condition_dict(subscript_cond(tensor, a, b), image_cond_in[a:b]))
            if not skip_uncond:
                u = _rows(uncond)
                x_out[-u:] = self.inner_model(x_in[-u:], sigma_in[-u:], cond=make_condition_dict(uncond, image_cond_in[-u:]))

        denoised_image_indexes = [c[0][0] for c in conds_list]
        if skip_uncond:
            x_out = torch.cat([x_out, torch.cat([x_out[i:i + 1] for i in denoised_image_indexes])])

        denoised_params = CFGDenoisedParams(x_out, state.sampling_step, state.sampling_steps, self.inner_model)
        script_callbacks.cfg_denoised_callback(denoised_params)  # x is not read back (as in the real code)

        if self.need_last_noise_uncond:
            self.last_noise_uncond = torch.clone(x_out[-batch_size:])

        scale = 1.0 if skip_uncond else cond_scale * self.cond_scale_miltiplier
        denoised = self.combine_denoised(x_out, conds_list, uncond, scale)

        self.sampler.last_latent = torch.cat([x_out[i:i + 1] for i in denoised_image_indexes])

        after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        script_callbacks.cfg_after_cfg_callback(after)
        denoised = after.x

        self.step += 1
        return denoised
