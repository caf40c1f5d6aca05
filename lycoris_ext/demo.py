"""``python -m lycoris_ext demo``: placeholder until the runtime lands."""


def run_demo(out_dir=None, quick=False) -> int:
    raise NotImplementedError
