"""The extension's state inside the WebUI: the folder index, the cache of
loaded networks, one runtime per loaded model, and the path of a prompt.

One :class:`LycorisExtension` exists per WebUI process (made by the script in
``scripts/``); nothing else holds state.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict

from .. import infotext
from ..library import NetworkLibrary, default_hash
from ..parts import UNET
from ..plan import Activation, Job, PassResult, Planner, add_words
from ..resolve.family import compatible
from ..resolve.lbw import PRESETS_FILE, read_presets
from ..runtime import MODES, NetworkCache, Runtime, Use
from ..runtime.cache import file_stamp
from ..runtime.memory import IDLE_DELAY, allocator_state
from ..summary import top_tags
from ..tokens import TOKEN_KINDS
from . import batch, host

log = logging.getLogger(__name__)

LBW_PRESETS = os.path.join("sd-webui-lora-block-weight", "scripts", PRESETS_FILE)


def _hashes_for_image(p, index, all_prompts=None, **_):
    """``Lora hashes`` of one image (the WebUI calls this per image).

    The WebUI calls it with the image's index in the job (``Processed.infotext``)
    or, while a batch is saved, with its index in the batch and that batch's
    ``p.prompts`` as ``all_prompts``; hashes are kept by index in the job.
    """
    if all_prompts is not None and all_prompts is getattr(p, "prompts", None):
        index += int(getattr(p, "iteration", 0) or 0) * int(getattr(p, "batch_size", 1) or 1)
    d = getattr(p, "lycoris_image_hashes", {}).get(index)
    return infotext.format_hashes(d) if d else None


def sampling_step(params) -> tuple[int, int]:
    """(step, steps) of the denoiser call ``params`` announces, counted from 0.

    ``params.sampling_step`` is only updated by the sampler's callback after a
    step, so the first two calls both read 0; the denoiser's own call counter
    is exact. Second-order samplers call it twice per step (``total_steps`` is
    then twice the steps), so the call index is scaled to sampling steps.
    """
    steps = int(params.total_sampling_steps)
    denoiser = getattr(params, "denoiser", None)
    calls, total_calls = getattr(denoiser, "step", None), getattr(denoiser, "total_steps", None)
    if isinstance(calls, int) and isinstance(total_calls, int) and total_calls > 0 and steps > 0:
        return min(steps - 1, calls * steps // total_calls), steps
    return int(params.sampling_step), steps


def owner_of(obj) -> str:
    """The extension (folder name) whose code defines ``obj``'s class, else the class's module."""
    cls = type(obj)
    files = [f.__code__.co_filename for f in vars(cls).values() if hasattr(f, "__code__")]
    try:
        from modules import extensions

        for e in extensions.extensions:
            root = os.path.abspath(e.path) + os.sep
            if any(os.path.abspath(f).startswith(root) for f in files):
                return e.name
    except Exception:  # noqa: BLE001 - only a label for a message
        pass
    return f"{cls.__module__}.{cls.__qualname__}"


class LycorisExtension:
    def __init__(self, ext_dir: str):
        self.ext_dir = ext_dir
        self.library = NetworkLibrary(host.network_dirs(), hasher=self._hash)
        self.cache = NetworkCache(int(host.opt("lycoris_cache_count", 16)), int(host.opt("lycoris_cache_mb", 4096)) << 20)
        self._runtimes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        self.planner = Planner(self.library, self.load, self.presets, self.refresh)
        self.last: PassResult = PassResult()
        self._embeddings: dict[str, object] = {}
        # tokens -> what they meant for the text encoder when last activated
        self._te_meaning: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.extra_network = None
        self.panel_script = None
        # activations so far, and the count when the WebUI last finished activating
        self._activations = 0
        self._activations_checked = 0
        self._takeovers_reported: set[str] = set()

    # --------------------------------------------------------------- files
    @staticmethod
    def _hash(entry) -> str:
        """The WebUI's cached hash, under the built-in's title ``lora/<name>``.

        ``name`` is the stem unless two files share it (then the relative
        path), so such files never read each other's hash. The WebUI trusts
        a cached hash while the file is not newer than it; a file replaced by
        an older one (``cp -p``, an unpacked archive) would keep the old hash,
        so any other modification time drops the cached value.
        """
        try:
            from modules import hashes
        except ImportError:  # pragma: no cover - outside the WebUI
            return default_hash(entry)
        title = "lora/" + entry.name
        cached = hashes.cache("hashes-addnet" if entry.is_safetensors else "hashes")
        rec = cached.get(title)
        try:
            stale = rec is not None and rec.get("mtime") != os.path.getmtime(entry.path)
        except OSError:
            stale = False
        if stale:
            cached.pop(title, None)
        return hashes.sha256(entry.path, title, use_addnet_hash=entry.is_safetensors) or ""

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
        return self.cache.get(entry.path)

    # ------------------------------------------------------------- models
    def runtime(self, sd_model=None, create: bool = True) -> Runtime | None:
        sd_model = sd_model if sd_model is not None else host.current_model()
        if sd_model is None:
            return None
        rt = self._runtimes.get(sd_model)
        if rt is None and create:
            rt = Runtime(host.model_tree(sd_model), mode=self.mode(), originals_device=self.originals_device(),
                         trim_delay=self.trim_delay())
            self._runtimes[sd_model] = rt
        return rt

    def memory(self) -> dict:
        """What the extension holds in memory now, in bytes: the loaded
        model's kept originals, the buffers waiting for the next originals,
        and the network files (the cache, and networks in use it evicted);
        beside them what the process's allocator reports (its free pages
        are the host's, not the extension's: ``runtime.memory.allocator_state``)."""
        rt = self.runtime(create=False)
        networks = {id(n): n for n in self.cache.networks()}
        if rt is not None:
            networks.update((id(u.network), u.network) for u in rt.uses)
        return {
            "originals": rt.kept_bytes if rt is not None else 0,
            "pooled": rt.pool.nbytes if rt is not None else 0,
            "networks": sum(n.nbytes for n in networks.values()),
            "networks_count": len(networks),
            "layers": rt.layers() if rt is not None else {},
            "allocator": allocator_state(),
        }

    @staticmethod
    def _writes(rt: Runtime):
        """Where ``rt`` may write its model's weights (Forge's are inference tensors)."""
        return host.writing(t.module for t in rt.tree.targets[:1] if t.module is not None)

    @staticmethod
    def mode() -> str:
        m = str(host.opt("lycoris_mode", "merge")).lower()
        return m if m in MODES else "merge"

    @staticmethod
    def originals_device():
        return "cpu" if host.opt("lycoris_originals_on_cpu", False) else None

    @staticmethod
    def trim_delay() -> float | None:
        """Seconds without a change before freed memory goes back (Settings; None: never)."""
        try:
            seconds = float(host.opt("lycoris_trim_seconds", IDLE_DELAY))
        except (TypeError, ValueError):
            seconds = IDLE_DELAY
        return None if seconds < 0 else seconds

    def apply_trim_delay(self) -> None:
        """The setting changed: every runtime follows it from its next change."""
        for rt in self._runtimes.values():
            rt.trimmer.delay = self.trim_delay()

    def on_model_loaded(self, sd_model) -> None:
        """New weights were loaded into ``sd_model``: forget its state, touch nothing."""
        rt = self._runtimes.pop(sd_model, None)
        if rt is not None:
            rt.forget()

    def unload(self) -> None:
        """The scripts are being reloaded: give every model its weights back."""
        for rt in list(self._runtimes.values()):
            try:
                with self._writes(rt):
                    rt.restore()
            except Exception:  # noqa: BLE001 - best effort while shutting down
                log.exception("restoring a model on unload")
                rt.forget()
        self._runtimes.clear()

    # --------------------------------------------------------- activation
    def read_job(self, p, params_list, hires: bool) -> Job:
        """This pass of this batch, read from the processing object once."""
        raw = batch.batch_slice(p, hires)
        prompts, negatives = raw if raw is not None else ((), ())
        n = len(getattr(p, "prompts", None) or []) or 1
        first = int(getattr(p, "iteration", 0) or 0) * int(getattr(p, "batch_size", n) or n)
        return Job(tokens=tuple(tuple(params.items) for params in params_list), prompts=tuple(prompts),
                   negative_prompts=tuple(negatives), hires=hires, steps=self.total_steps(p), first_index=first,
                   default_multiplier=float(host.opt("lycoris_default_multiplier", 1.0)))

    @staticmethod
    def total_steps(p) -> int:
        if getattr(p, "is_hr_pass", False):
            return int(getattr(p, "hr_second_pass_steps", 0) or getattr(p, "steps", 0) or 0)
        return int(getattr(p, "steps", 0) or 0)

    @staticmethod
    def _our_params(data) -> list:
        return [a for k, args in (data or {}).items() if k in TOKEN_KINDS for a in args]

    def is_hires_activation(self, p, params_list) -> bool:
        """The hires pass, or the hires networks activated early to compute its conds (lowvram)."""
        if getattr(p, "is_hr_pass", False):
            return True
        hr = getattr(p, "hr_extra_network_data", None)
        if not getattr(p, "enable_hr", False) or hr is None:
            return False
        first = self._our_params(getattr(p, "extra_network_data", None))
        return list(params_list) != first and list(params_list) == self._our_params(hr)

    def activate(self, p, params_list) -> PassResult:
        """The WebUI's call for one pass: plan, apply to the model, write back."""
        from . import embeddings

        self._activations += 1
        hires = self.is_hires_activation(p, params_list)
        if (getattr(p, "is_hr_pass", False) and not host.opt("hires_fix_use_firstpass_conds", False)
                and any(k in ("hr", "hrte") for params in params_list for k in getattr(params, "named", {}))):
            host.drop_hires_conds(p)
        act = self.planner.plan(self.read_job(p, params_list, hires))
        self._act = act
        if act.per_image:
            # The WebUI feeds negative prompts to the text encoder as they are: take our tokens out.
            if act.batch.has_negative:
                setattr(p, "hr_negative_prompts" if hires else "negative_prompts", list(act.batch.negative_prompts))
        else:
            p.__dict__.pop("get_conds_with_caching", None)
            p.lycoris_plan = None
            self._rows_off()
        rt = self.runtime()
        if rt is not None:
            with self._writes(rt):
                self.planner.apply(rt, act, self.mode())
        if act.per_image:
            # text encoders per group of images at encoding; the UNet's rows before each call
            p.lycoris_plan = act.batch
            p.get_conds_with_caching = batch.conds_function(self, p)
            self._rows_on()
        else:
            self.check_cached_conds(p, params_list, hires, act.uses, act.result)
        self.planner.conclude(act)
        embeddings.register(self, [u.network for u in act.uses])
        self.add_trigger_words(p, act)
        self.note_schedule(p, act.uses, hires)
        self.record(p, act)
        self.last = act.result
        return act.result

    # ------------------------------- generations this extension was not asked for
    def clear(self, p) -> None:
        """Nothing of this extension in the model (free when nothing is applied)."""
        p.__dict__.pop("get_conds_with_caching", None)
        p.lycoris_plan = None
        self._rows_off()
        rt = self.runtime(create=False)
        if rt is not None and rt.uses:
            with self._writes(rt):
                self.planner.set_uses(rt, [], self.total_steps(p), self.mode())

    def generation_started(self, p) -> None:
        """Before anything is activated: a generation that activates no extra
        network at all (``disable_extra_networks``) gets the plain model."""
        if getattr(p, "disable_extra_networks", False):
            self.clear(p)

    def batch_started(self, p) -> None:
        """Before each batch's activation: take the ``lora`` token back when
        another extension registered its own handler for it (sd-webui-loractl
        does in every generation), so tokens are applied once, by this extension."""
        from . import reclaim

        other = reclaim(self)
        if other is not None:
            self._report_takeover(p, f"Another extension ({owner_of(other)}) registered its own handler for "
                                     "<lora:...> tokens; this extension took them back (loractl's weight curves "
                                     "and <loractl:...> tokens are read here too)")

    def activation_finished(self, p, extra_network_data) -> None:
        """After the WebUI activated the extra networks of a pass: if no call
        reached this extension (another extension holds the ``lora`` slot and
        the prompt has no token for this one), none of its weights stay on."""
        reached = self._activations != self._activations_checked
        self._activations_checked = self._activations
        if reached:
            return
        self.clear(p)
        from modules import extra_networks

        for kind in TOKEN_KINDS:
            if (extra_network_data or {}).get(kind):
                other = extra_networks.extra_network_registry.get(kind) or extra_networks.extra_network_aliases.get(kind)
                if other is not None:
                    self._report_takeover(p, f"<{kind}:...> tokens were handled by {owner_of(other)}, not by this "
                                             "extension: its block weights (lbw=) and schedules did not apply", every_time=True)

    def _report_takeover(self, p, message: str, every_time: bool = False) -> None:
        """In the generation info, and once per message in the console."""
        if message not in self._takeovers_reported:
            self._takeovers_reported.add(message)
            log.warning(message)
        elif not every_time:
            return
        p.comment(message)

    TE_MEANINGS_KEPT = 32

    def check_cached_conds(self, p, params_list, hires: bool, uses: list[Use], result: PassResult) -> None:
        """Drop the WebUI's cached conditionings when the same tokens now mean a
        different text encoder: a file changed on disk or went missing, a
        default multiplier or preset changed."""
        key = (hires, tuple(tuple(params.items) for params in params_list))
        meaning = []
        for u in uses:
            if u.label not in result.applied or u.te == 0:
                continue
            path = u.extra["entry"].path
            try:
                stamp = file_stamp(path)
            except OSError:
                stamp = None
            base = u.blocks.get("BASE", 1.0) if u.blocks else 1.0
            meaning.append((path, stamp, str(u.te), u.dyn, base, u.scale))
        meaning = tuple(sorted(meaning, key=repr))
        before = self._te_meaning.pop(key, None)
        if before is not None and before != meaning:
            host.drop_cached_conds(p)
        self._te_meaning[key] = meaning
        while len(self._te_meaning) > self.TE_MEANINGS_KEPT:
            self._te_meaning.popitem(last=False)

    # ------------------------------------------------- trigger words, plot
    TAG_WORDS = 5

    def trigger_words(self, entry) -> list[str]:
        """The activation text of the user metadata, or else the most frequent training tags."""
        from modules import extra_networks

        um = extra_networks.get_user_metadata(entry.path) or {}
        text = str(um.get("activation text") or "").strip()
        if text:
            return [text]
        return [tag for tag, _ in top_tags(entry.metadata, self.TAG_WORDS)]

    def add_trigger_words(self, p, act: Activation) -> None:
        """Append missing trigger words to the prompts the text encoder sees and the infotext shows."""
        if not host.opt("lycoris_trigger_words", False):
            return
        hires = act.job.hires
        prompts = getattr(p, "hr_prompts" if hires else "prompts", None)
        all_prompts = getattr(p, "all_hr_prompts" if hires else "all_prompts", None)
        if not prompts:
            return
        words = self.planner.trigger_words(act, self.trigger_words)
        for i in range(min(len(prompts), len(words))):
            for lst, k in ((prompts, i), (all_prompts, act.job.first_index + i)):
                if lst is not None and k < len(lst):
                    lst[k] = add_words(lst[k], words[i])

    def note_schedule(self, p, uses, hires: bool) -> None:
        from .plot import weight_series

        total = self.total_steps(p)
        series = weight_series(uses, total)
        plots = p.__dict__.setdefault("lycoris_plot", {})
        plots["Hires pass" if hires else "First pass"] = (total, series)

    def set_text_encoder(self, p, plan, key) -> None:
        """Called while encoding: the row-wise UNet uses plus one group's text-encoder uses."""
        rt = self.runtime()
        rows = [u for u in rt.uses if u.rowwise]
        with self._writes(rt):
            self.planner.set_uses(rt, rows + self.planner.te_uses(self._act, key), self.total_steps(p), self.mode())

    # -------------------------------------------------------- row context
    def _rows_on(self) -> None:
        rt = self.runtime()
        unet = host.model_parts(host.current_model()).get(UNET)
        if rt is None or unet is None:
            return
        if getattr(self, "_row_hook", None) is not None and self._row_hook[0] is unet:
            return
        self._rows_off()
        state = {"images": [], "uncond": [], "cursor": 0}

        def pre_hook(module, args, kwargs):
            x = args[0] if args else kwargs.get("x")
            if x is None or not state["images"]:
                rt.rows.clear()
                return None
            n = int(x.shape[0])
            layout = host.row_layout(kwargs, n)
            if layout is not None:  # Forge, reForge: the call's own chunk layout
                rt.rows.set(*layout)
                return None
            total = len(state["images"])
            start = state["cursor"] % total
            idx = [(start + k) % total for k in range(n)]
            rt.rows.set([state["images"][k] for k in idx], [state["uncond"][k] for k in idx])
            state["cursor"] = start + n
            return None

        self._row_hook = (unet, unet.register_forward_pre_hook(pre_hook, with_kwargs=True), state, rt)

    def _rows_off(self) -> None:
        hook = getattr(self, "_row_hook", None)
        if hook is not None:
            hook[1].remove()
            hook[3].rows.clear()
        self._row_hook = None

    def record(self, p, act: Activation) -> None:
        """Hashes into the infotext (the built-in's format, per image when images
        differ) and messages into the generation info."""
        hires = act.job.hires
        if host.opt("lycoris_hashes_to_infotext", True):
            if not hires or not hasattr(p, "lora_hashes"):
                p.lora_hashes = {}
            p.lora_hashes.update({infotext.clean_name(k): v for k, v in act.hashes.items()})
            per_image = p.__dict__.setdefault("lycoris_image_hashes", {})
            for i, hashes in act.hashes_per_image.items():
                if not hires or i not in per_image:
                    per_image[i] = {}
                per_image[i].update({infotext.clean_name(k): v for k, v in hashes.items()})
            if act.per_image:
                p.lycoris_special = True
            if getattr(p, "lycoris_special", False):
                p.extra_generation_params["Lora hashes"] = _hashes_for_image
            elif p.lora_hashes:
                p.extra_generation_params["Lora hashes"] = infotext.format_hashes(p.lora_hashes)
        messages = act.result.messages()
        for m in messages:
            p.comment(m)
            log.warning(m)
        if messages and act.result.serious and host.opt("lycoris_missing_popup", False):
            try:
                import gradio as gr

                gr.Warning(messages[0])
            except Exception:  # pragma: no cover - no UI (API call)
                pass

    # ------------------------------------------------------------- steps
    def on_cfg_denoiser(self, params) -> None:
        rt = self.runtime(create=False)
        if rt is None or not rt.uses:
            return
        p = getattr(getattr(params, "denoiser", None), "p", None)
        hook = getattr(self, "_row_hook", None)
        if hook is not None and p is not None and getattr(p, "lycoris_plan", None) is not None:
            images, uncond = batch.row_plan(p, params)
            hook[2].update(images=images, uncond=uncond, cursor=0)
        with self._writes(rt):
            rt.step(*sampling_step(params))

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
    def shown_for_model(family: str) -> bool:
        """Whether a network of this base model is offered (cards, plot axes):
        it fits the loaded model (before Forge loads one: the checkpoint it
        will load), or *show all* is on, or the model's family is unknown."""
        if host.opt("lycoris_show_all", False) or host.opt("lora_show_all", False):
            return True
        model_family = host.current_family()
        return model_family == "unknown" or compatible(family, model_family)

    @staticmethod
    def prefer_alias() -> bool:
        return host.opt("lycoris_preferred_name", "Alias from file") != "Filename"
