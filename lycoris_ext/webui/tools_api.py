"""HTTP routes of the network tools (see :mod:`lycoris_ext.tools`).

- ``POST /lycoris/v1/bake``: the networks of a prompt (or a list) merged into
  a checkpoint (default: the loaded one), written to the checkpoint folder.
- ``POST /lycoris/v1/convert``: the networks of a prompt (or a list) as one
  kohya LoRA/LoCon at a rank or energy, written to the Lora folder.

Both answer the tool's report (``--json`` of the CLI). Errors: 400 for invalid
arguments (names, ranks, dtypes, curves), 404 for unknown networks or
checkpoints, 409 when the output exists and ``overwrite`` is not set, 422 with
the file and key for unreadable or unfitting network files. The work runs in
the server's thread pool (the loaded model is never touched: checkpoints are
read from disk).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import NetworkFileError

MAX_NAME = 200
_busy = threading.Lock()


class RequestError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def output_name(name: Any) -> str:
    """A plain file name (no folders), with ``.safetensors``."""
    if not isinstance(name, str) or not name.strip():
        raise RequestError(400, "'name' (the output file's name) is required")
    name = name.strip()
    if len(name) > MAX_NAME or "\x00" in name or "/" in name or "\\" in name or name.startswith(".") or ":" in name:
        raise RequestError(400, f"invalid output name {name!r}: a plain file name, no folders")
    return name if name.lower().endswith(".safetensors") else name + ".safetensors"


def _number(body: dict, key: str, kind=float):
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise RequestError(400, f"'{key}' must be a {'whole number' if kind is int else 'number'}, not {v!r}")
    return kind(v)


def network_specs(ext, body: dict) -> list:
    """``NetSpec`` values from ``prompt`` (its ``<lora:...>`` tokens) or ``networks``."""
    from ..tokens import TokenError, find_tokens, parse_token
    from ..tools.specs import NetSpec

    items = []
    if body.get("prompt"):
        if not isinstance(body["prompt"], str):
            raise RequestError(400, "'prompt' must be text")
        for _tag, parts, _span in find_tokens(body["prompt"]):
            try:
                tok = parse_token(parts)
            except TokenError as e:
                raise RequestError(400, str(e)) from None
            if not all(isinstance(w, (int, float)) for w in (tok.te, tok.unet)) or tok.start is not None or tok.stop is not None:
                raise RequestError(400, f"{tok.raw}: weight curves and step schedules do not apply to a file")
            items.append((tok.name, float(tok.te), float(tok.unet), tok.lbw, tok.x, tok.dyn))
    for n in body.get("networks") or []:
        if not isinstance(n, dict) or not isinstance(n.get("name"), str):
            raise RequestError(400, "each of 'networks' needs a 'name'")
        try:
            w = float(n.get("weight", 1.0))
            te = float(n.get("te", w))
            unet = float(n.get("unet", te if "te" in n else w))
            dyn = None if n.get("dyn") is None else int(n["dyn"])
        except (TypeError, ValueError):
            raise RequestError(400, f"bad weights for network {n.get('name')!r}") from None
        items.append((n["name"], te, unet, n.get("lbw"), n.get("x"), dyn))
    if not items:
        raise RequestError(400, "no networks: give a 'prompt' with <lora:...> tokens or a list of 'networks'")
    specs = []
    for name, te, unet, lbw, x, dyn in items:
        if not name or len(name) > 1024 or "\x00" in name:
            raise RequestError(400, "invalid network name")
        entry = ext.library.find(name)
        if entry is None:
            raise RequestError(404, f"no network named {name!r} in the network folders")
        specs.append(NetSpec(entry.path, te, unet, lbw, x, dyn))
    return specs


def checkpoint_file(body: dict) -> str:
    """The checkpoint named in ``checkpoint`` (a title, name or hash A1111 knows), else the loaded one."""
    from modules import sd_models, shared

    name = body.get("checkpoint")
    if name:
        info = sd_models.get_closet_checkpoint_match(str(name))
        if info is None:
            raise RequestError(404, f"no checkpoint named {name!r}")
    else:
        model = getattr(shared, "sd_model", None)
        info = getattr(model, "sd_checkpoint_info", None)
        if info is None:
            raise RequestError(404, "no checkpoint is loaded; name one in 'checkpoint'")
    path = getattr(info, "filename", None)
    if not path or not os.path.isfile(path):
        raise RequestError(404, f"the checkpoint file {path!r} is not on disk")
    return path


def _progress(body: dict):
    """A progress callback the UI passes in (never from a request's JSON)."""
    p = body.get("progress")
    return p if callable(p) else False


def checkpoint_dir() -> str:
    from modules import sd_models, shared

    return getattr(shared.cmd_opts, "ckpt_dir", None) or sd_models.model_path


def _target(folder: str, body: dict) -> str:
    out = os.path.join(folder, output_name(body.get("name")))
    if os.path.exists(out) and not body.get("overwrite"):
        raise RequestError(409, f"{out} exists; set 'overwrite' to replace it")
    os.makedirs(folder, exist_ok=True)
    return out


def bake_request(ext, body: dict) -> dict:
    from ..tools import bake

    specs = network_specs(ext, body)
    ckpt = checkpoint_file(body)
    out = _target(checkpoint_dir(), body)
    dtype = body.get("dtype") or None
    if dtype not in (None, "fp16", "bf16", "fp32"):
        raise RequestError(400, f"'dtype' must be fp16, bf16 or fp32, not {dtype!r}")
    report = bake(ckpt, specs, out, dtype=dtype, progress=_progress(body))
    try:
        from modules import sd_models

        if hasattr(sd_models, "list_models"):
            sd_models.list_models()  # the new checkpoint appears in the dropdown after a refresh
    except Exception:  # noqa: BLE001 - listing is a courtesy
        pass
    return report


def convert_request(ext, body: dict) -> dict:
    from ..tools import convert
    from ..tools.convert import check_rank

    specs = network_specs(ext, body)
    rank, energy, conv_rank = _number(body, "rank", int), _number(body, "energy"), _number(body, "conv_rank", int)
    folder = ext.library.roots[0] if getattr(ext.library, "roots", None) else os.path.dirname(specs[0].path)
    out = _target(folder, body)
    try:
        check_rank(out, rank, energy, conv_rank)
    except NetworkFileError as e:
        raise RequestError(400, e.reason) from None
    base = model = None
    try:
        base = checkpoint_file(body)
    except RequestError:
        if body.get("checkpoint"):
            raise
        # no file on disk: the loaded model's layout (weight-dependent networks then need a file)
        from modules import shared

        from .host import model_family

        model = {"sd1": "sd15", "sd2": "sd2", "sdxl": "sdxl"}.get(model_family(getattr(shared, "sd_model", None)))
    dtype = body.get("dtype") or "fp16"
    report = convert(specs, out, rank=rank, energy=energy, conv_rank=conv_rank, dtype=dtype, base=base, model=model,
                     progress=_progress(body))
    ext.refresh()
    return report


def add_tool_routes(ext, app) -> None:
    from fastapi import HTTPException
    from fastapi.responses import JSONResponse

    def run(fn, body):
        if not isinstance(body, dict):
            raise HTTPException(status_code=400, detail="the body must be a JSON object")
        if not _busy.acquire(blocking=False):
            raise HTTPException(status_code=409, detail="another bake or convert is running")
        try:
            return JSONResponse(fn(ext, body))
        except RequestError as e:
            raise HTTPException(status_code=e.status, detail=e.detail) from None
        except NetworkFileError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        finally:
            _busy.release()

    def bake_route(body: dict):
        return run(bake_request, body)

    def convert_route(body: dict):
        return run(convert_request, body)

    app.add_api_route("/lycoris/v1/bake", bake_route, methods=["POST"])
    app.add_api_route("/lycoris/v1/convert", convert_route, methods=["POST"])
