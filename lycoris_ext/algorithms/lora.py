"""LoRA and LoCon: ``dW = gamma * up @ down`` (Tucker, DoRA, DyLoRA included)."""

from __future__ import annotations

from .. import functional as F
from .base import Adapter


class LoRA(Adapter):
    """``lora_up``/``lora_down`` (PEFT's ``lora_B``/``lora_A``), optional Tucker ``lora_mid``.

    A 2-D ``lora_up`` over a conv ``lora_down`` is how DyLoRA files store a
    LoCon; it is the same product.
    """

    algorithm = "lora"
    detect = ("lora_up.weight", "lora_down.weight")
    suffixes = ("lora_up.weight", "lora_down.weight", "lora_mid.weight", "alpha", "dora_scale")
    allows_dora = True

    def _parse(self) -> None:
        up = self.tensor("lora_up.weight", (2, 3, 4, 5))
        down = self.tensor("lora_down.weight", (2, 3, 4, 5))
        rank = down.shape[0]
        if up.shape[1] != rank and not self.has("lora_mid.weight"):
            raise self.error("lora_up.weight", f"has {up.shape[1]} ranks but lora_down has {rank} (shapes {tuple(up.shape)} and {tuple(down.shape)})")
        if any(d != 1 for d in up.shape[2:]):
            raise self.error("lora_up.weight", f"has shape {tuple(up.shape)}; expected (out, rank) or (out, rank, 1, 1)")
        self.mid = None
        if self.has("lora_mid.weight"):
            mid = self.tensor("lora_mid.weight", (3, 4, 5))
            if mid.shape[0] != up.shape[1] or mid.shape[1] != rank:
                raise self.error("lora_mid.weight", f"has shape {tuple(mid.shape)}, which does not join lora_up {tuple(up.shape)} and lora_down {tuple(down.shape)}")
            if any(d != 1 for d in down.shape[2:]):
                raise self.error("lora_down.weight", f"has shape {tuple(down.shape)}; with lora_mid it must be (rank, in, 1, 1)")
            self.mid = mid
            self.features.add("tucker")
            self._natural = (up.shape[0], down.shape[1], *mid.shape[2:])
        else:
            self._natural = (up.shape[0], *down.shape[1:])
        if up.dim() == 2 and down.dim() > 2:
            self.features.add("dylora")
        self.set_rank_alpha(rank)
        self.full_rank = rank

    def natural_shape(self):
        return self._natural

    def _factors(self, device):
        up = F.flat(self.param("lora_up.weight", device))
        down = self.param("lora_down.weight", device)
        if self.mid is not None:
            down = F.tucker_down(self.param("lora_mid.weight", device), down)
        else:
            down = F.flat(down)
        return up, down

    def core_delta(self, weight, bias=None):
        up, down = self._factors(weight.device)
        return ((up * self.scale) @ down).reshape(weight.shape), None

    def lowrank(self, device=None):
        if self.magnitude is not None:
            return None
        up, down = self._factors(device)
        return up * self.scale, down

    def lowrank_source(self):
        """``(up, down, gamma)`` as the file stores them (its dtype, 2-D), with
        ``lowrank(d) == (up.to(d, float32) * gamma, down.to(d, float32))``, so
        the runtime converts them per layer instead of keeping float32 copies;
        None where :meth:`lowrank` computes more (Tucker, DoRA)."""
        if self.magnitude is not None or self.mid is not None:
            return None
        src = self.__dict__.get("_source")
        if src is None:  # views of the file's tensors, kept: asked for at every rebuild
            src = self._source = (F.flat(self._entries["lora_up.weight"][1]),
                                  F.flat(self._entries["lora_down.weight"][1]), self.scale)
        return src

    def drop_device_cache(self) -> None:
        super().drop_device_cache()
        for t in self.__dict__.get("_truncations", {}).values():
            t.drop_device_cache()

    def truncated(self, rank):
        """The first ``rank`` ranks, gamma unchanged (alpha over the file's rank).

        This is ``dyn`` as A1111's built-in Lora defines it, so a prompt gives
        the same picture here as there (``dyn=0`` keeps no rank: no change).
        """
        if rank is None or rank >= self.full_rank:
            return self
        rank = max(0, int(rank))
        cache = self.__dict__.setdefault("_truncations", {})
        if rank in cache:
            return cache[rank]
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._device_cache = {}
        new.__dict__.pop("_source", None)  # the truncated factors' own views
        entries = dict(self._entries)
        raw, up = entries["lora_up.weight"]
        entries["lora_up.weight"] = (raw, up[:, :rank])
        raw, down = entries["lora_down.weight"]
        entries["lora_down.weight"] = (raw, down[:rank])
        if self.mid is not None:
            raw, mid = entries["lora_mid.weight"]
            new.mid = mid[:rank, :rank]
            entries["lora_mid.weight"] = (raw, new.mid)
        new._entries = entries
        new._truncations = {}
        new.rank = rank
        cache[rank] = new
        return new
