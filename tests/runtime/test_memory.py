"""Freed originals go back to the system once the runtime is idle, not in the middle of switching."""

from __future__ import annotations

import time

from lycoris_ext.runtime import Runtime, Use
from lycoris_ext.runtime import memory
from support.models import small_model, write_sample

MB = 1 << 20


class Calls:
    def __init__(self):
        self.seen = []

    def __call__(self, freed):
        self.seen.append(freed)
        return True


def _wait(pred, seconds=5.0):
    end = time.monotonic() + seconds
    while not pred() and time.monotonic() < end:
        time.sleep(0.01)
    return pred()


def test_trims_once_after_the_delay_and_changes_postpone_it():
    calls = Calls()
    t = memory.Trimmer(0.3, release=calls)
    t.freed(40 * MB)
    time.sleep(0.15)
    assert calls.seen == []
    t.freed(0)  # a change: the clock starts again
    time.sleep(0.2)
    assert calls.seen == []
    assert _wait(lambda: calls.seen == [40 * MB])
    assert t.pending == 0 and t.trims == 1


def test_small_amounts_wait_and_zero_or_none_delay():
    calls = Calls()
    t = memory.Trimmer(0.05, release=calls)
    t.freed(memory.THRESHOLD - 1)
    time.sleep(0.15)
    assert calls.seen == [] and t.pending == memory.THRESHOLD - 1
    now = memory.Trimmer(0, release=calls)
    now.freed(memory.THRESHOLD)
    assert calls.seen == [memory.THRESHOLD]
    never = memory.Trimmer(None, release=calls)
    never.freed(1 << 40)
    never.flush()  # an explicit flush still trims
    assert calls.seen == [memory.THRESHOLD, 1 << 40]


def test_runtime_hands_freed_originals_to_its_trimmer(tmp_path, monkeypatch):
    parts, tree = small_model("sd15", shrink=8)
    net = write_sample(tmp_path / "a.safetensors", tree, "lora", rank=2)
    calls = Calls()
    monkeypatch.setattr(memory, "THRESHOLD", 1)
    rt = Runtime(tree, trim_delay=0.2)
    rt.trimmer._release = calls
    rt.set([Use(net, 1.0)])
    kept = rt.kept_bytes
    assert kept > 0
    rt.set([])
    assert calls.seen == [] and rt.trimmer.pending == kept  # not while switching
    assert _wait(lambda: calls.seen == [kept])
