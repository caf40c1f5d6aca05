"""Host glue: the only package that imports the WebUI's ``modules``.

``setup(ext_dir)`` is called once by ``scripts/lycoris_ext_main.py``; it makes
the :class:`LycorisExtension` and registers every callback.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def take_over(ext) -> None:
    """Own the ``lora`` network and its tab, also when the built-in Lora is enabled.

    The WebUI runs ``before_ui`` callbacks in reverse load order, so the
    built-in (loaded first) registers last and would win ``lora``; this runs
    again after all of them (from the block-weight panel's ``ui()`` and at
    app start), replacing the built-in's network and removing its card page
    so a token is applied exactly once and there is one tab for these files.
    """
    from modules import extra_networks, ui_extra_networks

    from ..tokens import TOKEN_KINDS
    from .extra_network import ExtraNetworkLycoris
    from .page import LycorisPage

    if not isinstance(extra_networks.extra_network_registry.get("lora"), ExtraNetworkLycoris):
        if ext.extra_network is None:
            ext.extra_network = ExtraNetworkLycoris(ext)
        extra_networks.register_extra_network(ext.extra_network)
    for alias in TOKEN_KINDS[1:]:
        if not isinstance(extra_networks.extra_network_aliases.get(alias), ExtraNetworkLycoris):
            extra_networks.register_extra_network_alias(ext.extra_network, alias)
    pages = ui_extra_networks.extra_pages
    pages[:] = [p for p in pages if p.name != "lora" or isinstance(p, LycorisPage)]
    if not any(isinstance(p, LycorisPage) for p in pages):
        ui_extra_networks.register_page(LycorisPage(ext))


def reclaim(ext):
    """Take the ``lora`` token (and its aliases) back from another extension
    that registered itself for it; returns that extension's network, or None."""
    from modules import extra_networks

    from .extra_network import ExtraNetworkLycoris

    other = extra_networks.extra_network_registry.get("lora")
    if other is None or isinstance(other, ExtraNetworkLycoris):
        return None
    ext.extra_network = ext.extra_network or ExtraNetworkLycoris(ext)
    extra_networks.register_extra_network(ext.extra_network)
    take_over(ext)
    return other


def setup(ext_dir: str):
    from modules import script_callbacks

    from . import api, settings
    from .extension import LycorisExtension
    from .panel import make_panel_script

    ext = LycorisExtension(ext_dir)

    def before_ui():
        # The registries were just cleared by the WebUI: fresh objects.
        from . import xyz
        from .extra_network import ExtraNetworkLycoris

        ext.extra_network = ExtraNetworkLycoris(ext)
        take_over(ext)
        xyz.register_axes(ext)

    def app_started(demo, app):
        # With --nowebui there is no before_ui: the token and the plot axes are set up here.
        from . import xyz

        take_over(ext)
        xyz.register_axes(ext)
        api.add_routes(ext, app)

    script_callbacks.on_before_ui(before_ui)
    script_callbacks.on_app_started(app_started)
    script_callbacks.on_model_loaded(ext.on_model_loaded)
    script_callbacks.on_cfg_denoiser(ext.on_cfg_denoiser)
    script_callbacks.on_infotext_pasted(ext.infotext_pasted)
    script_callbacks.on_ui_settings(lambda: settings.on_ui_settings(ext))
    script_callbacks.on_script_unloaded(ext.unload)
    ext.panel_script = make_panel_script(ext)
    return ext
