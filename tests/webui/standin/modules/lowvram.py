"""Stand-in for modules/lowvram.py (A1111 v1.10.1).

``is_needed(sd_model)`` = ``--lowvram or --medvram or (--medvram-sdxl and the model has a
conditioner)``; ``apply(sd_model)`` sets ``sd_model.lowvram`` to that (and
``shared.parallel_processing_allowed``); ``is_enabled(sd_model)`` returns ``sd_model.lowvram``;
``send_everything_to_cpu()`` moves the module currently "on GPU" back to CPU.
Simplified: no forward pre-hooks move modules between devices (everything is on CPU already), so
only the flag and the processing branches that read it are reproduced.
"""

import torch

from modules import shared

module_in_gpu = None
cpu = torch.device("cpu")
send_everything_to_cpu_calls = 0


def send_everything_to_cpu():
    global module_in_gpu, send_everything_to_cpu_calls
    send_everything_to_cpu_calls += 1
    if module_in_gpu is not None:
        module_in_gpu.to(cpu)
    module_in_gpu = None


def is_needed(sd_model):
    return bool(shared.cmd_opts.lowvram or shared.cmd_opts.medvram or shared.cmd_opts.medvram_sdxl and hasattr(sd_model, 'conditioner'))


def apply(sd_model):
    enable = is_needed(sd_model)
    shared.parallel_processing_allowed = not enable
    sd_model.lowvram = enable


def is_enabled(sd_model):
    return sd_model.lowvram
