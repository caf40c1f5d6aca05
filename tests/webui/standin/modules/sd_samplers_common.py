"""Stand-in for modules/sd_samplers_common.py (A1111 v1.10.1).

``SamplerData(name, constructor, aliases, options)`` with ``total_steps(steps)`` (doubled for
``second_order``), ``setup_img2img_steps(p, steps=None)``, ``InterruptedException`` and the ``Sampler``
base with the step bookkeeping extensions observe: ``launch_sampling(steps, func)`` sets
``model_wrap_cfg.steps = steps``, ``model_wrap_cfg.total_steps = config.total_steps(steps)``,
``state.sampling_steps = steps`` and ``state.sampling_step = 0``; ``callback_state(d)`` sets
``state.sampling_step = d['i']`` AFTER each sampler step (so during the denoiser calls of step i >= 1
``sampling_step`` is ``i - 1``: steps 0 and 1 both see 0); ``initialize(p)`` resets the denoiser's
``step`` to 0 and sets ``p``, ``mask``, ``nmask``, ``image_cfg_scale``.
Simplified: no live previews, no refiner switch, no k-diffusion.
"""

from collections import namedtuple

from modules import shared
from modules.shared import opts, state

SamplerDataTuple = namedtuple('SamplerData', ['name', 'constructor', 'aliases', 'options'])


class SamplerData(SamplerDataTuple):
    def total_steps(self, steps):
        if self.options.get("second_order", False):
            steps = steps * 2
        return steps


def setup_img2img_steps(p, steps=None):
    if opts.img2img_fix_steps or steps is not None:
        requested_steps = (steps or p.steps)
        steps = int(requested_steps / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        t_enc = requested_steps - 1
    else:
        steps = p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc


class InterruptedException(BaseException):
    pass


def apply_refiner(cfg_denoiser, sigma=None):
    return False


class Sampler:
    def __init__(self, funcname):
        self.funcname = funcname
        self.func = funcname
        self.extra_params = []
        self.sampler_noises = None
        self.stop_at = None
        self.eta = None
        self.config: SamplerData = None
        self.last_latent = None
        self.s_min_uncond = None
        self.s_churn = 0.0
        self.s_tmin = 0.0
        self.s_tmax = float('inf')
        self.s_noise = 1.0
        self.eta_option_field = 'eta_ancestral'
        self.eta_infotext_field = 'Eta'
        self.eta_default = 1.0
        self.conditioning_key = getattr(getattr(shared.sd_model, 'model', None), 'conditioning_key', 'crossattn')
        self.p = None
        self.model_wrap_cfg = None
        self.sampler_extra_args = None
        self.options = {}

    def callback_state(self, d):
        step = d['i']
        if self.stop_at is not None and step > self.stop_at:
            raise InterruptedException
        state.sampling_step = step
        shared.total_tqdm.update()

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = self.config.total_steps(steps)
        state.sampling_steps = steps
        state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def number_of_needed_noises(self, p):
        return p.steps

    def initialize(self, p) -> dict:
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.mask = p.mask if hasattr(p, 'mask') else None
        self.model_wrap_cfg.nmask = p.nmask if hasattr(p, 'nmask') else None
        self.model_wrap_cfg.step = 0
        self.model_wrap_cfg.image_cfg_scale = getattr(p, 'image_cfg_scale', None)
        self.eta = p.eta if p.eta is not None else getattr(opts, self.eta_option_field, 0.0)
        self.s_min_uncond = getattr(p, 's_min_uncond', 0.0)
        return {}
