"""Stand-in for modules/rng.py (A1111 v1.10.1): ``ImageRNG(shape, seeds, subseeds=None,
subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0)`` whose ``next()`` returns one
noise tensor per seed stacked into a batch.
Simplified: CPU ``torch.Generator`` per seed, no variation seeds/slerp, no NV/GPU sources; each
``next()`` call continues the per-seed generators.
"""

import torch

from modules import devices


class ImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0):
        self.shape = tuple(int(x) for x in shape)
        self.seeds = seeds
        self.subseeds = subseeds
        self.subseed_strength = subseed_strength
        self.seed_resize_from_h = seed_resize_from_h
        self.seed_resize_from_w = seed_resize_from_w
        self.generators = [torch.Generator(device="cpu").manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF) for seed in seeds]

    def next(self):
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators]).to(devices.device)
