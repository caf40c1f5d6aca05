"""Stand-in for modules/devices.py (A1111 v1.10.1).

``cpu``, ``device`` (and the per-task device fields), ``dtype``/``dtype_vae``/``dtype_unet``/
``dtype_inference``, ``unet_needs_upcast``, ``fp8``, ``autocast(disable=False)`` and
``without_autocast`` (no-op context managers here), ``cond_cast_unet``/``cond_cast_float``,
``torch_gc`` (counts calls in ``gc_calls``), ``get_optimal_device``/``get_device_for``,
``test_for_nans`` (raises ``NansException`` on an all-NaN tensor), ``NansException``.
Simplified: everything runs on CPU in float32 unless a test changes ``device``/``dtype``; autocast
does not change dtypes.
"""

import contextlib

import torch

cpu: torch.device = torch.device("cpu")
device: torch.device = torch.device("cpu")
device_interrogate: torch.device = cpu
device_gfpgan: torch.device = cpu
device_esrgan: torch.device = cpu
device_codeformer: torch.device = cpu
dtype: torch.dtype = torch.float32
dtype_vae: torch.dtype = torch.float32
dtype_unet: torch.dtype = torch.float32
dtype_inference: torch.dtype = torch.float32
unet_needs_upcast = False
fp8 = False

gc_calls = 0


def get_optimal_device_name():
    return "cpu"


def get_optimal_device():
    return torch.device(get_optimal_device_name())


def get_device_for(task):
    return get_optimal_device()


def torch_gc():
    global gc_calls
    gc_calls += 1


def torch_npu_set_device():
    pass


def cond_cast_unet(input):
    return input.to(dtype_unet) if unet_needs_upcast else input


def cond_cast_float(input):
    return input.float() if unet_needs_upcast else input


@contextlib.contextmanager
def autocast(disable=False):
    yield


@contextlib.contextmanager
def without_autocast(disable=False):
    yield


class NansException(Exception):
    pass


def test_for_nans(x, where):
    if not torch.isnan(x[(0, ) * len(x.shape)]):
        return
    if torch.all(torch.isnan(x)).item():
        raise NansException(f"A tensor with all NaNs was produced in {where}.")


def first_time_calculation():
    pass
