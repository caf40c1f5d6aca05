"""Stand-in for modules/sd_samplers.py + sd_samplers_kdiffusion.py (A1111 v1.10.1).

``samplers``/``all_samplers``/``samplers_for_img2img``/``all_samplers_map``/``samplers_map``,
``find_sampler_config(name)`` (None -> the first sampler), ``create_sampler(name, model)`` and a
``KDiffusionSampler`` whose ``sample(p, x, conditioning, unconditional_conditioning, steps=None,
image_conditioning=None)`` and ``sample_img2img(p, x, noise, conditioning, unconditional_conditioning,
steps=None, image_conditioning=None)`` follow the real step bookkeeping: ``initialize(p)`` then
``launch_sampling(steps, ...)`` (img2img: ``setup_img2img_steps`` -> ``launch_sampling(t_enc + 1)``,
i.e. ``hr_second_pass_steps or steps`` for hires fix), the denoiser called as
``model(x, sigma, cond=, image_cond=, uncond=, cond_scale=, s_min_uncond=)``, and ``callback_state``
after each step's first evaluation.
Simplified: a linear sigma schedule from 14.6146 to 0.0292 then 0; "Heun" and "DPM2" are Heun's
method (two denoiser calls per step except the last, ``second_order``, callback between the two as
in k-diffusion), every other name is plain Euler (one call per step, no ancestral noise).
"""

import torch

from modules import sd_samplers_common
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.sd_samplers_common import SamplerData, setup_img2img_steps


def _sample(model, x, sigmas, extra_args=None, callback=None, second_order=False):
    """k-diffusion's Euler, or Heun (a second denoiser call per step but the last)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = (x - denoised) / sigmas[i]
        if callback is not None:
            callback({'x': x, 'i': i, 'sigma': sigmas[i], 'sigma_hat': sigmas[i], 'denoised': denoised})
        dt = sigmas[i + 1] - sigmas[i]
        if not second_order or sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = (x_2 - denoised_2) / sigmas[i + 1]
            x = x + (d + d_2) / 2 * dt
    return x


def _euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return _sample(model, x, sigmas, extra_args, callback)


def _heun(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return _sample(model, x, sigmas, extra_args, callback, second_order=True)


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname, sd_model, options=None):
        super().__init__(funcname)
        self.options = options or {}
        self.func = _heun if self.options.get("second_order") else _euler
        self.model_wrap_cfg = CFGDenoiser(self)
        self.model_wrap = None
        self.sd_model = sd_model

    def get_sigmas(self, p, steps):
        sigmas = torch.linspace(14.6146, 0.0292, steps)
        return torch.cat([sigmas, sigmas.new_zeros([1])])

    def _extra_args(self, p, conditioning, unconditional_conditioning, image_conditioning):
        return {
            'cond': conditioning,
            'image_cond': image_conditioning,
            'uncond': unconditional_conditioning,
            'cond_scale': p.cfg_scale,
            's_min_uncond': self.s_min_uncond,
        }

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        sigmas = self.get_sigmas(p, steps)
        x = x * sigmas[0]
        self.initialize(p)
        self.last_latent = x
        self.sampler_extra_args = self._extra_args(p, conditioning, unconditional_conditioning, image_conditioning)
        return self.launch_sampling(steps, lambda: self.func(self.model_wrap_cfg, x, sigmas, extra_args=self.sampler_extra_args, callback=self.callback_state))

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps, t_enc = setup_img2img_steps(p, steps)
        sigmas = self.get_sigmas(p, steps)
        sigma_sched = sigmas[steps - t_enc - 1:]
        xi = x + noise * sigma_sched[0]
        self.initialize(p)
        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        self.sampler_extra_args = self._extra_args(p, conditioning, unconditional_conditioning, image_conditioning)
        return self.launch_sampling(t_enc + 1, lambda: self.func(self.model_wrap_cfg, xi, sigma_sched, extra_args=self.sampler_extra_args, callback=self.callback_state))


def _constructor(funcname, options):
    return lambda model: KDiffusionSampler(funcname, model, options)


_list = [
    ('DPM++ 2M', 'sample_dpmpp_2m', ['k_dpmpp_2m'], {}),
    ('Euler a', 'sample_euler_ancestral', ['k_euler_a', 'k_euler_ancestral'], {"uses_ensd": True}),
    ('Euler', 'sample_euler', ['k_euler'], {}),
    ('Heun', 'sample_heun', ['k_heun'], {"second_order": True}),
    ('DPM2', 'sample_dpm_2', ['k_dpm_2'], {"second_order": True}),
]

all_samplers = [SamplerData(label, _constructor(funcname, options), aliases, options) for label, funcname, aliases, options in _list]
all_samplers_map = {x.name: x for x in all_samplers}
samplers = all_samplers
samplers_for_img2img = all_samplers
samplers_map = {}
for _s in all_samplers:
    samplers_map[_s.name.lower()] = _s.name
    for _alias in _s.aliases:
        samplers_map[_alias.lower()] = _s.name


def find_sampler_config(name):
    if name is not None:
        return all_samplers_map.get(name, None)
    return all_samplers[0]


def create_sampler(name, model):
    config = find_sampler_config(name)
    assert config is not None, f'bad sampler name: {name}'
    sampler = config.constructor(model)
    sampler.config = config
    return sampler


def fix_p_invalid_sampler_and_scheduler(p):
    if p.sampler_name is not None and p.sampler_name not in all_samplers_map:
        p.sampler_name = all_samplers[0].name
