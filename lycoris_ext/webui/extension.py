"""The extension's state inside the WebUI: the folder index, the cache of
loaded networks, one runtime per loaded model, and the path of a prompt.

One :class:`LycorisExtension` exists per WebUI process (made by the script in
``scripts/``); nothing else holds state.
"""

from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass, field

from .. import infotext
from ..errors import NetworkApplyError, NetworkFileError
from ..library import NetworkLibrary, default_hash
from ..resolve.family import FAMILY_NAMES
from ..resolve.lbw import PRESETS_FILE, BlockSpecError, parse_block_weights, read_presets
from ..runtime import MODES, NetworkCache, Runtime, Use
from ..tokens import TokenError, parse_token
from . import host

log = logging.getLogger(__name__)

LBW_PRESETS = os.path.join("sd-webui-lora-block-weight", "scripts", PRESETS_FILE)


@dataclass
class PassResult:
    """What one activation did, for the generation info and the UI."""

    applied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    other_model: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class LycorisExtension:
    def __init__(self, ext_dir: str):
        self.ext_dir = ext_dir
        self.library = NetworkLibrary(host.network_dirs(), hasher=self._hash)
        self.cache = NetworkCache(int(host.opt("lycoris_cache_count", 16)), int(host.opt("lycoris_cache_mb", 4096)) << 20)
        self._runtimes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        self.last: PassResult = PassResult()
        self._embeddings: dict[str, object] = {}
        self.extra_network = None
        self.panel_script = None

    # --------------------------------------------------------------- files
    @staticmethod
    def _hash(entry) -> str:
        """The WebUI's cached hash (shared with the built-in: title 'lora/<stem>')."""
        try:
            from modules import hashes
        except ImportError:  # pragma: no cover - outside the WebUI
            return default_hash(entry)
        return hashes.sha256(entry.path, "lora/" + entry.stem, use_addnet_hash=entry.is_safetensors) or ""

    def refresh(self):
        self.library.roots = host.network_dirs()
        return self.library.refresh()

    def presets_path(self) -> str:
        return os.path.join(self.ext_dir, PRESETS_FILE)

    def presets(self) -> dict[str, str]:
        """User presets: LBW's own file (when LBW is installed) then ours, which wins."""
        out = {}
        lbw = os.path.join(os.path.dirname(self.ext_dir), LBW_PRESETS)
        out.update(read_presets(lbw))
        out.update(read_presets(self.presets_path()))
        return out

    def load(self, entry):
        pinned = {u.network.path for rt in self._runtimes.values() for u in rt.uses}
        return self.cache.get(entry.path, pinned=pinned)

    # ------------------------------------------------------------- models
    def runtime(self, sd_model=None, create: bool = True) -> Runtime | None:
        sd_model = sd_model if sd_model is not None else host.current_model()
        if sd_model is None:
            return None
        rt = self._runtimes.get(sd_model)
        if rt is None and create:
            rt = Runtime(host.model_tree(sd_model), mode=self.mode(), originals_device=self.originals_device())
            self._runtimes[sd_model] = rt
        return rt

    @staticmethod
    def mode() -> str:
        m = str(host.opt("lycoris_mode", "merge")).lower()
        return m if m in MODES else "merge"

    @staticmethod
    def originals_device():
        return "cpu" if host.opt("lycoris_originals_on_cpu", False) else None

    def on_model_loaded(self, sd_model) -> None:
        """New weights were loaded into ``sd_model``: forget its state, touch nothing."""
        rt = self._runtimes.pop(sd_model, None)
        if rt is not None:
            rt.forget()

    def unload(self) -> None:
        """The scripts are being reloaded: give every model its weights back."""
        for rt in list(self._runtimes.values()):
            try:
                rt.restore()
            except Exception:  # noqa: BLE001 - best effort while shutting down
                log.exception("restoring a model on unload")
                rt.forget()
        self._runtimes.clear()

    # --------------------------------------------------------- activation
    def uses_for(self, params_list, hires: bool, result: PassResult) -> list[Use]:
        default = float(host.opt("lycoris_default_multiplier", 1.0))
        presets = None
        uses = []
        for params in params_list:
            try:
                spec = parse_token(params.items, default)
            except TokenError as e:
                result.errors.append(str(e))
                continue
            result.warnings.extend(spec.warnings)
            entry = self.library.find(spec.name)
            if entry is None:
                self.refresh()
                entry = self.library.find(spec.name)
            if entry is None:
                result.missing.append(spec.name)
                continue
            try:
                net = self.load(entry)
            except (NetworkFileError, OSError) as e:
                result.errors.append(f"{spec.name}: {getattr(e, 'reason', e)}")
                continue
            blocks = None
            if spec.lbw:
                try:
                    if presets is None:
                        presets = self.presets()
                    blocks = parse_block_weights(spec.lbw, presets, x=spec.x if spec.x is not None else 1.0)
                except BlockSpecError as e:
                    result.errors.append(f"{spec.name}: {e}")
                    continue
            te, unet = spec.multipliers(hires)
            uses.append(Use(net, te, unet, dyn=spec.dyn, blocks=blocks, start=spec.start, stop=spec.stop,
                            name=spec.name, extra={"entry": entry, "spec": spec}))
        return uses

    def apply(self, p, uses: list[Use], result: PassResult) -> None:
        rt = self.runtime()
        if rt is None:
            return
        total = self.total_steps(p)
        uses = list(uses)
        while True:
            try:
                report = rt.set(uses, step=0, total_steps=total, mode=self.mode())
                break
            except NetworkApplyError as e:
                # Leave the failing network out; the others still apply.
                result.errors.append(str(e))
                keep = [u for u in uses if u.label != e.network]
                if len(keep) == len(uses):
                    keep = []
                uses = keep
        for n in report.networks:
            if n.skipped and n.verdict == "made for another base model":
                fam = rt.resolution(next(u.network for u in uses if u.label == n.name)).file_family
                result.other_model.append(f"{n.name} (made for {FAMILY_NAMES.get(fam, fam)})")
            elif n.skipped:
                result.errors.append(f"{n.name}: {n.skipped}")
            else:
                result.applied.append(n.name)
                if n.verdict != "fits":
                    result.partial.append(f"{n.name} ({n.summary})")
            result.warnings.extend(f"{n.name}: {w}" for w in n.warnings)

    @staticmethod
    def total_steps(p) -> int:
        if getattr(p, "is_hr_pass", False):
            return int(getattr(p, "hr_second_pass_steps", 0) or getattr(p, "steps", 0) or 0)
        return int(getattr(p, "steps", 0) or 0)

    def activate(self, p, params_list) -> PassResult:
        hires = bool(getattr(p, "is_hr_pass", False))
        result = PassResult()
        uses = self.uses_for(params_list, hires, result)
        self.apply(p, uses, result)
        from . import embeddings

        embeddings.register(self, [u.network for u in uses])
        self.record(p, uses, result, hires)
        self.last = result
        return result

    def record(self, p, uses: list[Use], result: PassResult, hires: bool) -> None:
        """Hashes into the infotext (the built-in's format) and messages into the info."""
        if host.opt("lycoris_hashes_to_infotext", True):
            if not hires or not hasattr(p, "lora_hashes"):
                p.lora_hashes = {}
            for u in uses:
                if u.label in result.applied:
                    h = self.library.ensure_hash(u.extra["entry"])
                    if h:
                        p.lora_hashes[infotext.clean_name(u.label)] = h[:12]
            if p.lora_hashes:
                p.extra_generation_params["Lora hashes"] = infotext.format_hashes(p.lora_hashes)
        messages = []
        if result.missing:
            messages.append("Lora not found: " + ", ".join(result.missing))
        if result.other_model:
            messages.append("Networks for another base model, not applied: " + ", ".join(result.other_model))
        if result.errors:
            messages.append("Networks with errors: " + "; ".join(result.errors))
        if result.partial:
            messages.append("Networks partly applied: " + "; ".join(result.partial))
        if result.warnings:
            messages.append("Network warnings: " + "; ".join(result.warnings))
        for m in messages:
            p.comment(m)
            log.warning(m)
        if messages and host.opt("lycoris_missing_popup", False) and (result.missing or result.errors or result.other_model):
            try:
                import gradio as gr

                gr.Warning(messages[0])
            except Exception:  # pragma: no cover - no UI (API call)
                pass

    # ------------------------------------------------------------- steps
    def on_cfg_denoiser(self, params) -> None:
        rt = self.runtime(create=False)
        if rt is not None and rt.uses:
            rt.step(int(params.sampling_step), int(params.total_sampling_steps))

    # --------------------------------------------------------- infotext
    def infotext_pasted(self, infotext_text: str, params: dict) -> None:
        """Rename networks in pasted prompts to local files with the same hash."""
        hashes = infotext.parse_hashes(params.get("Lora hashes", "") or "")
        if not hashes:
            return

        def local(shorthash: str):
            e = self.library.find_by_shorthash(shorthash)
            return None if e is None else self.library.display_name(e, self.prefer_alias())

        for key in ("Prompt", "Hires prompt"):
            if isinstance(params.get(key), str):
                params[key] = infotext.remap_prompt(params[key], hashes, local)

    @staticmethod
    def prefer_alias() -> bool:
        return host.opt("lycoris_preferred_name", "Alias from file") != "Filename"
