"""The ``lora`` extra network (alias ``lyco``) the WebUI calls with each prompt's tokens."""

from __future__ import annotations

from modules import extra_networks


class ExtraNetworkLycoris(extra_networks.ExtraNetwork):
    """``activate`` replaces the previous set completely; an empty list restores the model."""

    def __init__(self, ext):
        super().__init__("lora")
        self.ext = ext

    def activate(self, p, params_list):
        self.ext.activate(p, params_list)

    def deactivate(self, p):
        # Networks stay applied between generations (the next prompt with the
        # same set costs nothing); a prompt without tokens restores the model.
        pass
