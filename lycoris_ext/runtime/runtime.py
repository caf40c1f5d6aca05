"""The runtime: make a live model compute with a wanted set of networks.

One :class:`Runtime` per loaded model. ``set()`` takes the wanted set and does
the least work to get there: it compares, per layer, the contributions the
set asks for with those in effect, and rebuilds only the layers that differ.
Merge mode writes weights (originals kept, only for touched tensors, and
written back bit for bit when a layer is free again); bypass mode adds the
change in forward hooks on the touched instances. Any exception while
applying rolls every layer changed in that call back to its previous state.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable

import torch

from ..errors import NetworkApplyError
from ..network import Network
from ..resolve import Resolution, resolve
from ..resolve.tree import ModelTree, Target
from ..storage import packed_storage
from .bypass import BypassHook, hookable
from . import memory, threads
from .merge import Contribution, FactorCache, combine
from .params import bias_view, nbytes, swap_original, weight_view
from .uses import RowContext, RowWeights, Use

log = logging.getLogger(__name__)

MERGE, BYPASS, AUTO = "merge", "bypass", "auto"
MODES = (MERGE, BYPASS, AUTO)
#: Elements of weights a change merges below which it runs in the calling
#: thread alone: for small layers, starting threads and passing the GIL
#: between them cost more than the second core gives.
SIDE_BY_SIDE_MIN = 1 << 22
_MERGED, _HOOKED = "merged", "hooked"


@dataclass
class NetworkReport:
    """What happened to one network of the wanted set."""

    name: str
    verdict: str
    summary: str
    layers: int = 0
    skipped: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ApplyReport:
    mode: str
    networks: list[NetworkReport]
    rebuilt: int
    seconds: float

    @property
    def skipped(self) -> list[NetworkReport]:
        return [n for n in self.networks if n.skipped]


def _same_weight(a, b) -> bool:
    return type(a) is type(b) and a == b if callable(a) or callable(b) else a == b


def _same_uses(a: tuple[Use, ...], b: tuple[Use, ...]) -> bool:
    """Whether two wanted sets ask for the same thing (networks by identity:
    a file changed on disk is a new object)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x is y:
            continue
        if not (x.network is y.network and x.name == y.name and x.dyn == y.dyn and x.start == y.start
                and x.stop == y.stop and _same_weight(x.te, y.te) and _same_weight(x.unet, y.unet)
                and _same_weight(x.scale, y.scale)):
            return False
        if x.blocks is not y.blocks and (x.blocks is None or y.blocks is None or dict(x.blocks) != dict(y.blocks)
                                         or getattr(x.blocks, "unnamed", None) != getattr(y.blocks, "unnamed", None)):
            return False
    return True


def _signature(contribs: Iterable[Contribution]) -> tuple:
    return tuple(c.signature for c in contribs)


def _scalar(contribs) -> tuple[Contribution, ...]:
    """Row-wise multipliers on a layer no hook can carry (a packed or sliced
    weight): merged with the first image's conditional weight."""
    return tuple(
        Contribution(c.network, c.key, c.adapter, c.multiplier.cond[0]) if isinstance(c.multiplier, RowWeights) else c
        for c in contribs
    )


def _unwritable_warning(stored: str, labels: list[str]) -> str:
    """Layers a network was not applied to because of how the host stores them."""
    return (f"not applied to {len(labels)} layer{'s' if len(labels) != 1 else ''} whose weights are stored as "
            f"{stored} (e.g. {labels[0]}): that storage cannot be changed exactly, and this change reads the weight "
            "or sits where no forward hook can carry it; low-rank changes (LoRA, LoCon, LoHa, LoKr, full) apply there "
            "through forward hooks")


class Runtime:
    """Apply networks to the model described by ``tree`` (its modules are live).

    ``mode`` is ``"merge"`` (default), ``"bypass"`` or ``"auto"`` (bypass
    while a step schedule is active, merge otherwise). ``originals_device``
    keeps the original tensors elsewhere (e.g. ``"cpu"``); by default they
    stay beside the weights, which makes every switch a device-local copy.
    Originals dropped go back to the system ``trim_delay`` seconds after the
    last change (0: at once; None: never; see :mod:`runtime.memory`).
    """

    def __init__(self, tree: ModelTree, mode: str = MERGE, originals_device=None, trim_delay: float | None = memory.IDLE_DELAY):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.tree = tree
        self.mode = mode
        self.originals_device = originals_device
        self._order = {t.id: i for i, t in enumerate(tree.targets)}
        self._uses: tuple[Use, ...] = ()
        self._resolutions: dict[int, tuple[Network, Resolution]] = {}
        self._applied: dict[tuple, tuple[Contribution, ...]] = {}
        self._state: dict[tuple, str] = {}
        self._orig_w: dict[tuple, torch.Tensor] = {}
        self._orig_b: dict[tuple, torch.Tensor] = {}
        self._hooks: dict[tuple, BypassHook] = {}
        self._factors = FactorCache()
        #: What the last successful ``set`` was asked, and the touched
        #: parameters as it left them: a request equal to it returns at once.
        self._done: tuple | None = None
        self._freed = 0  # bytes freed to the allocator since the last set
        self._freed_lock = threading.Lock()  # layers are rebuilt side by side
        #: buffers freed by going back to originals, reused for the next originals
        self.pool = memory.Pool()
        #: gives dropped originals back to the system once no change came for a while
        self.trimmer = memory.Trimmer(trim_delay, pool=self.pool,
                                      holds_nothing=lambda: not self._orig_w and not self._orig_b)
        self._step: int | None = None
        self._total: int | None = None
        self.last_report: ApplyReport | None = None
        #: Which image/side each row of the UNet's next call is (for row-wise uses).
        self.rows = RowContext()

    # ------------------------------------------------------------ queries
    def resolution(self, network: Network) -> Resolution:
        hit = self._resolutions.get(id(network))
        if hit is None or hit[0] is not network:
            hit = (network, resolve(network, self.tree))
            self._resolutions[id(network)] = hit
        return hit[1]

    @property
    def kept_bytes(self) -> int:
        """Bytes held as originals (exactly the touched tensors)."""
        return sum(nbytes(t) for t in self._orig_w.values()) + sum(nbytes(t) for t in self._orig_b.values())

    @property
    def effective_mode(self) -> str:
        if self.mode != AUTO:
            return self.mode
        return BYPASS if any(u.scheduled for u in self._uses) else MERGE

    @property
    def uses(self) -> tuple[Use, ...]:
        return self._uses

    def layers(self) -> dict[str, int]:
        """Layers changed now, by state (merged, hooked)."""
        out = {_MERGED: 0, _HOOKED: 0}
        for s in self._state.values():
            out[s] += 1
        return out

    # ------------------------------------------------------------- changes
    def set(self, uses: Iterable[Use], step: int | None = None, total_steps: int | None = None, mode: str | None = None) -> ApplyReport:
        """Make the model compute with exactly ``uses`` (at sampling ``step``).

        A request equal to the last one (the same network objects, multipliers,
        options and mode; the same step where a use is scheduled) with the
        touched parameters as that call left them returns at once: no layer
        is looked at. A file changed on disk is a new network object, and a
        model reloaded under the runtime shows in its parameters (replaced, or
        their version counter moved): both take the full path, the latter
        after forgetting the stale originals.
        """
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        t0 = time.perf_counter()
        uses = tuple(uses)
        new_mode = self.mode if mode is None else mode
        if self._done is not None and self.last_report is not None:
            if _same_uses(uses, self._uses) and new_mode == self.mode and (
                    not any(u.scheduled for u in uses) or (step, total_steps) == (self._step, self._total)):
                if self._stamp() == self._done:
                    self._uses, self._step, self._total = uses, step, total_steps
                    self.last_report = ApplyReport(self.effective_mode, self.last_report.networks, 0, time.perf_counter() - t0)
                    return self.last_report
                log.warning("the model's weights changed outside the runtime (reloaded?): its kept originals are dropped")
                self.forget()
        self.mode = new_mode
        self._done = None
        want, reports = self.contributions(uses, step, total_steps)
        prev = (self._uses, self._step, self._total)
        self._uses, self._step, self._total = uses, step, total_steps
        try:
            rebuilt = self._sync(want)
        except BaseException:
            self._uses, self._step, self._total = prev
            raise
        self._forget_unused()
        self.pool.changed()
        freed, self._freed = self._freed, 0
        self.trimmer.freed(freed)
        self.last_report = ApplyReport(self.effective_mode, reports, rebuilt, time.perf_counter() - t0)
        self._done = self._stamp()
        return self.last_report

    def _stamp(self) -> tuple:
        """The touched parameters as objects and version counters (writes
        through the parameter itself, as ``load_state_dict`` makes, move it;
        the runtime writes through ``.data``, which does not)."""
        out = []
        for tid in self._applied:
            target = self.tree.by_id[tid]
            if packed_storage(target.module, target.param) is not None:
                # quantized weights are only hooked, never written nor read: hosts swap
                # their objects at will (Forge: every .to(), a bias cast at first forward)
                continue
            for name in (target.param, target.bias):
                if name is None:
                    continue
                p = getattr(target.module, name, None)
                # inference tensors (Forge loads weights under inference mode) keep no version counter
                out.append((id(p), 0 if p is None or p.is_inference() else p._version))
        return tuple(out)

    def step(self, step: int, total_steps: int | None = None) -> ApplyReport | None:
        """Advance to sampling ``step``; only scheduled networks' layers change."""
        if not any(u.scheduled for u in self._uses):
            self._step, self._total = step, total_steps
            return None
        if step == self._step and total_steps == self._total:
            return None
        return self.set(self._uses, step, total_steps)

    def restore(self) -> ApplyReport:
        """Back to the model's own weights (bit for bit), hooks removed."""
        return self.set(())

    def forget(self) -> None:
        """Drop every state without touching the weights (the model was replaced)."""
        for h in self._hooks.values():
            h.remove()
        self._hooks.clear()
        self._applied.clear()
        self._state.clear()
        self._orig_w.clear()
        self._orig_b.clear()
        self.pool.clear()
        self._resolutions.clear()
        self._factors = FactorCache()
        self._uses = ()
        self._done = None
        self.last_report = None

    close = restore

    # ----------------------------------------------------------- internals
    def contributions(self, uses, step: int | None = None, total: int | None = None):
        """What ``uses`` ask of each layer, changing nothing: ``(want,
        reports)``, ``want`` mapping each target id to its contributions in
        the uses' order (multipliers with part, block and schedule at
        ``step`` applied; zero ones left out), ``reports`` one
        :class:`NetworkReport` per use. ``set`` applies exactly this; the
        tools bake and convert from it."""
        want: dict[tuple, list[Contribution]] = {}
        reports = []
        for use in uses:
            res = self.resolution(use.network)
            rep = NetworkReport(use.label, res.verdict, res.summary())
            reports.append(rep)
            if not res.applicable:
                rep.skipped = f"{res.verdict}: {res.summary()}"
                continue
            if use.blocks is not None:
                rep.warnings.extend(self._block_warnings(use, res))
            unwritable: dict[str, list[str]] = {}
            for m in res.matches:
                stored = packed_storage(m.target.module, m.target.param) if m.target.module is not None else None
                if stored is not None and (m.adapter.reads_weight or not hookable(m.target)):
                    unwritable.setdefault(stored, []).append(m.target.label)
                    continue
                mult = use.part_multiplier(m.target.part, step, total)
                block = use.block_weight(m.target.block)
                mult = mult.scaled(block) if isinstance(mult, RowWeights) else mult * block
                if (mult.is_zero if isinstance(mult, RowWeights) else mult == 0):
                    continue
                adapter = m.adapter.truncated(use.dyn) if use.dyn is not None else m.adapter
                want.setdefault(m.target.id, []).append(Contribution(use.label, m.key, adapter, mult))
                rep.layers += 1
            rep.warnings.extend(_unwritable_warning(stored, labels) for stored, labels in unwritable.items())
        return want, reports

    @staticmethod
    def _block_warnings(use: Use, res: Resolution) -> list[str]:
        off = sorted(b for b, n in res.matched_blocks().items() if n and use.block_weight(b) == 0)
        if not off:
            return []
        unnamed = set(getattr(use.blocks, "unnamed", ()))
        implicit = [b for b in off if b in unnamed]
        msg = f"block weights switch off {', '.join(off)}, where the network changes layers"
        if implicit:
            msg += f" ({', '.join(implicit)} not named by the list, so 0 as in LBW)"
        return [msg]

    def _state_for(self, target: Target, contribs) -> str | None:
        if not contribs:
            return None
        if hookable(target) and (self.effective_mode == BYPASS or any(isinstance(c.multiplier, RowWeights) for c in contribs)
                                 or packed_storage(target.module, target.param) is not None):
            return _HOOKED
        return _MERGED

    def _sync(self, want: dict[tuple, list[Contribution]]) -> int:
        todo = []
        for tid in sorted(set(want) | set(self._applied), key=self._order.__getitem__):
            target = self.tree.by_id[tid]
            new = tuple(want.get(tid, ()))
            new_state = self._state_for(target, new)
            old = self._applied.get(tid, ())
            old_state = self._state.get(tid)
            if new_state == old_state and _signature(new) == _signature(old):
                if new:
                    self._applied[tid] = new  # same effect; keep the fresh objects
                continue
            todo.append((target, new, new_state, old, old_state))
        # Merges into CPU weights run side by side (threads.each: the cores stay
        # busy without waking OpenMP workers), a module's targets in one job
        # (packed q/k/v share a parameter), the largest first so the threads
        # end together; hooks and originals handed back are set here first.
        here, side = [], {}
        for item in todo:
            if self._side_by_side(item):
                side.setdefault(id(item[0].module), []).append(item)
            else:
                here.append(item)
        size = {k: sum(math.prod(i[0].shape) for i in g) for k, g in side.items()}
        groups = [side[k] for k in sorted(side, key=lambda k: -size[k])]
        done, failures = [], []

        def job(items):
            def run():
                for item in items:
                    done.append(item)
                    try:
                        self._apply(item[0], item[1], item[2])
                    except BaseException as e:
                        failures.append((item, e))
                        raise
            return run

        try:
            if here:
                threads.each([job(here)], workers=1)
            if not failures and groups:
                threads.each([job(g) for g in groups], workers=None if sum(size.values()) >= SIDE_BY_SIDE_MIN else 1)
        except BaseException as e:  # between jobs (an interrupt): rolled back all the same
            if not done:
                raise  # nothing changed
            if not failures:
                failures.append((done[-1], e))
        if failures:
            self._rollback(done)
            # the first failure in the model's order is named
            (target, new, _, old, _), e = min(failures, key=lambda f: self._order[f[0][0].id])
            culprit = getattr(e, "contribution", None) or next(iter(new), None) or next(iter(old), None)
            msg = f"{type(e).__name__}: {e}; the model was left as it was"
            raise NetworkApplyError(culprit.network if culprit else None,
                                    f"{culprit.key if culprit else ''} ({target.label})", msg) from e
        return len(todo)

    def _side_by_side(self, item) -> bool:
        """Whether a change runs beside others: a merge into a CPU weight
        (going back to an original mostly hands the kept tensor back: no work
        worth a thread; hooks are set here)."""
        target, _, new_state, _, old_state = item
        if new_state != _MERGED or old_state == _HOOKED or target.module is None:
            return False
        p = getattr(target.module, target.param, None)
        return isinstance(p, torch.Tensor) and p.device.type == "cpu"

    def _rollback(self, done) -> None:
        for target, new, new_state, old, old_state in reversed(done):
            try:
                self._apply(target, old, old_state)
            except BaseException:  # pragma: no cover - last resort keeps originals
                log.exception("rollback of %s failed; restoring its original", target.label)
                self._apply(target, (), None)

    @torch.no_grad()
    def _apply(self, target: Target, contribs: tuple[Contribution, ...], state: str | None) -> None:
        try:
            self._apply_one(target, contribs, state)
        finally:
            # float32 copies the adapters made for this layer go with it
            for c in contribs:
                c.adapter.drop_device_cache()

    def _apply_one(self, target: Target, contribs: tuple[Contribution, ...], state: str | None) -> None:
        tid = target.id
        if self._state.get(tid) == _HOOKED and state != _HOOKED:
            self._hooks.pop(tid).remove()
        if state == _MERGED:
            self._merge(target, _scalar(contribs))
        else:
            self._restore(target)
            if state == _HOOKED:
                hook = self._hooks.get(tid)
                if hook is None:
                    hook = self._hooks[tid] = BypassHook(target, self.rows)
                hook.set(contribs, self._factors)
        if state is None:
            self._applied.pop(tid, None)
            self._state.pop(tid, None)
        else:
            self._applied[tid] = contribs
            self._state[tid] = state

    def _keep(self, store: dict, tid, view: torch.Tensor) -> torch.Tensor:
        orig = store.get(tid)
        if orig is None:
            # the same kind as the weight (hosts write under inference mode, reForge's
            # weights are ordinary tensors), so it can be handed back as it is
            with torch.inference_mode(view.is_inference()):
                if self.originals_device is not None:
                    orig = view.detach().to(self.originals_device, copy=True)
                else:
                    # a buffer freed by an earlier change, else memory of its own on the
                    # CPU (memory.mapped), so the host's heap is left to the host
                    buf = None
                    if view.is_contiguous():
                        buf = self.pool.take(view)
                        buf = memory.mapped(view) if buf is None else buf
                    orig = view.detach().clone() if buf is None else buf.copy_(view)
            store[tid] = orig
        return orig

    def _merge(self, target: Target, contribs) -> None:
        tid = target.id
        view = weight_view(target)
        first = tid not in self._orig_w  # then the weight still holds the original
        orig_w = self._keep(self._orig_w, tid, view)
        bview = bias_view(target)
        orig_b = self._orig_b.get(tid)
        bias_in = orig_b if orig_b is not None else (None if bview is None else bview.detach())
        src = orig_w if orig_w.device == view.device else orig_w.to(view.device)
        direct = view.dtype == torch.float32 and view.is_contiguous() and src.data_ptr() != view.data_ptr()
        new_w, new_b = combine(src, bias_in, contribs, self._factors, out=view if direct else None,
                               out_holds_orig=first and direct and orig_w.dtype == view.dtype)
        if new_w is not None:
            view.copy_(new_w)
        if new_b is not None:
            self._keep(self._orig_b, tid, bview)
            bview.copy_(new_b)
        elif orig_b is not None:
            bview.copy_(orig_b)
            del self._orig_b[tid]
            self._drop(orig_b)

    def _restore(self, target: Target) -> None:
        tid = target.id
        # the kept original goes back as the parameter's tensor where that is
        # exact and nothing else shares the live storage, else it is copied back
        for store, name, view in ((self._orig_w, target.param, weight_view), (self._orig_b, target.bias, bias_view)):
            orig = store.pop(tid, None)
            if orig is not None:
                held = swap_original(target, name, orig)
                if held is None:
                    view(target).copy_(orig)
                self._drop(orig if held is None else held)

    def _drop(self, t: torch.Tensor) -> None:
        """A buffer freed by going back to an original: kept for the next
        originals when it is a whole buffer and originals stay beside the
        weights (the pool gives its pages back when it lets it go), else
        freed to the allocator, counted for the allocator's release."""
        if self.originals_device is None and self.pool.put(t):
            return
        with self._freed_lock:
            self._freed += nbytes(t)

    def _forget_unused(self) -> None:
        live = {id(c.adapter) for cs in self._applied.values() for c in cs}
        self._factors.drop(live)
        used = {id(u.network) for u in self._uses}
        for k in [k for k in self._resolutions if k not in used]:
            # a network no longer wanted keeps no float32 copies on the device
            for adapter in self._resolutions.pop(k)[0].modules.values():
                adapter.drop_device_cache()
