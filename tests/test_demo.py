"""README's first command, ``python -m lycoris_ext demo``: every check it prints passes."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_passes_every_check(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lycoris_ext", "demo", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert "[FAILED]" not in out.stdout, out.stdout[-3000:]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("[ok]") >= 4
