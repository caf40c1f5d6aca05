"""HTTP routes.

- ``GET /sdapi/v1/loras``: the built-in's JSON shape (``name``, ``alias``, ``path``, ``metadata``).
- ``POST /sdapi/v1/refresh-loras``: rescans the folders and returns the same list.
- ``GET /lycoris/v1/networks/{name}``: the inspect report, with the loaded
  model's resolution report when a model is loaded.
- ``GET /lycoris/v1/memory``: what the extension holds, in bytes (kept
  originals, buffers pooled for the next ones, network files), the layers
  changed now, and what the process's allocator reports.

When the built-in Lora extension is enabled too, its two ``/sdapi/v1`` routes
are replaced by these (same shape), so there is one answer for one folder.
"""

from __future__ import annotations

import json

from ..errors import NetworkFileError
from ..summary import decoded_metadata, summarize
from . import tools_api

ROUTES = (("/sdapi/v1/loras", "GET"), ("/sdapi/v1/refresh-loras", "POST"))
MAX_NAME = 1024


def network_list(ext) -> list[dict]:
    return [{"name": e.name, "alias": e.alias, "path": e.path, "metadata": decoded_metadata(e.metadata)} for e in ext.library]


def _remove_existing(app, path: str, method: str) -> None:
    keep = []
    for r in app.router.routes:
        if getattr(r, "path", None) == path and method in (getattr(r, "methods", None) or ()):
            continue
        keep.append(r)
    app.router.routes[:] = keep


def add_routes(ext, app) -> None:
    from fastapi import HTTPException
    from fastapi.responses import JSONResponse

    for path, method in ROUTES:
        _remove_existing(app, path, method)

    async def get_loras():
        return network_list(ext)

    async def refresh_loras():
        ext.refresh()
        return network_list(ext)

    async def get_network(name: str):
        if not name or len(name) > MAX_NAME or "\x00" in name:
            raise HTTPException(status_code=400, detail="invalid network name")
        entry = ext.library.find(name)
        if entry is None:
            raise HTTPException(status_code=404, detail=f"no network named {name!r} in the network folders")
        try:
            net = ext.load(entry)
        except NetworkFileError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        report = summarize(net)
        report["name"] = entry.name
        report["alias"] = entry.alias
        report["shorthash"] = entry.shorthash
        rt = ext.runtime(create=True)
        if rt is not None:
            report["resolution"] = rt.resolution(net).report()
        return JSONResponse(json.loads(json.dumps(report, default=str)))

    async def get_memory():
        return ext.memory()

    app.add_api_route("/sdapi/v1/loras", get_loras, methods=["GET"])
    app.add_api_route("/sdapi/v1/refresh-loras", refresh_loras, methods=["POST"])
    app.add_api_route("/lycoris/v1/networks/{name:path}", get_network, methods=["GET"])
    app.add_api_route("/lycoris/v1/memory", get_memory, methods=["GET"])
    tools_api.add_tool_routes(ext, app)  # POST /lycoris/v1/bake and /lycoris/v1/convert
