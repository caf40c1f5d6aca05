"""The three commands on the command line: help, text and JSON reports,
progress, and bad input as one line naming the file with exit code 2."""

from __future__ import annotations

import io
import json

import pytest

from lycoris_ext.cli import main
from lycoris_ext.tools.progress import Progress, make


@pytest.mark.parametrize("cmd", ["bake", "convert", "extract"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "-o OUT.safetensors" in capsys.readouterr().out


def test_bake_convert_extract_json(sd15, tmp_path, capsys):
    parts, tree, ck, nets = sd15
    baked = tmp_path / "b.safetensors"
    assert main(["bake", ck, nets["lora"] + ":0.8:lbw=MIDD", nets["lokr"] + ":0.5", "-o", str(baked), "--dtype", "fp32", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["output"] == str(baked) and [n["name"] for n in rep["networks"]] == ["lora", "lokr"]
    conv = tmp_path / "c.safetensors"
    assert main(["convert", nets["lora"], nets["loha"] + ":0.5", "--base", ck, "--rank", "3", "-o", str(conv), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert isinstance(rep["relative_error"], float) and all("relative_error" in r for r in rep["layers"])
    ex = tmp_path / "e.safetensors"
    assert main(["extract", ck, str(baked), "--energy", "0.99", "-o", str(ex), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["layers_written"] > 0 and 0 <= rep["relative_error"] < 1


def test_text_report(sd15, tmp_path, capsys):
    parts, tree, ck, nets = sd15
    assert main(["convert", nets["lora"], "--base", ck, "--rank", "2", "-o", str(tmp_path / "c.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "lora_unet_" in text and "relative error of the change" in text


@pytest.mark.parametrize("argv,name", [
    (["bake", "{ck}", "{missing}", "-o", "{out}"], "missing.safetensors"),
    (["bake", "{net}", "{net}", "-o", "{out}"], "lora.safetensors"),
    (["convert", "{net}", "--rank", "0", "--base", "{ck}", "-o", "{out}"], "out.safetensors"),
    (["extract", "{ck}", "{missing}", "--rank", "2", "-o", "{out}"], "missing.safetensors"),
])
def test_bad_input_is_one_line_and_exit_code_2(sd15, tmp_path, capsys, argv, name):
    parts, tree, ck, nets = sd15
    subst = {"ck": ck, "net": nets["lora"], "missing": str(tmp_path / "missing.safetensors"), "out": str(tmp_path / "out.safetensors")}
    assert main([a.format(**subst) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0]
    assert not (tmp_path / "out.safetensors").exists()


def test_progress_bar_and_callback():
    s = io.StringIO()
    p = Progress(4, "bake", stream=s)
    for _ in range(4):
        p.update(1, "x")
    p.close()
    assert "100.0%" in s.getvalue()
    seen = []
    cb = make(lambda f, note: seen.append(f), 2, "convert")
    cb.update(1)
    cb.update(1)
    assert seen == [0.5, 1.0]
