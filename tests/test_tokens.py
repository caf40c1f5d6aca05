"""Prompt tokens, multiplier curves and infotext hashes (no WebUI needed)."""

from __future__ import annotations

import pytest

from lycoris_ext.curves import Curve, parse_weight
from lycoris_ext.infotext import clean_name, format_hashes, parse_hashes, remap_prompt
from lycoris_ext.tokens import TokenError, find_tokens, parse_token, strip_tokens


@pytest.mark.parametrize(
    "items, want",
    [
        (["a"], dict(name="a", te=1.0, unet=1.0, dyn=None)),
        (["a", "0.5"], dict(te=0.5, unet=0.5)),
        (["a", "0.5", "0.2"], dict(te=0.5, unet=0.2)),
        (["a", "-1.5"], dict(te=-1.5, unet=-1.5)),
        (["a", "1", "1", "16"], dict(dyn=16)),
        (["a", "te=0.3", "unet=0.7", "dyn=8"], dict(te=0.3, unet=0.7, dyn=8)),
        (["a", "0.8", "unet=0.3"], dict(te=0.8, unet=0.3)),
        (["a", "unet=0.3", "0.8"], dict(te=0.8, unet=0.3)),  # any order
        (["a", "1", "lbw=MIDD"], dict(lbw="MIDD")),
        (["a", "1", "w=OUTS"], dict(lbw="OUTS")),
        (["a", "1", "MIDD"], dict(lbw="MIDD", te=1.0)),  # preset in a positional slot
        (["a", "lbw=1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0", "x=0.5"], dict(lbw="1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0", x=0.5)),
        (["a", "1", "start=3"], dict(start=3, stop=None)),
        (["a", "1", "stop=10"], dict(start=None, stop=10)),
        (["a", "1", "step=3-7"], dict(start=3, stop=7)),
        (["a", "1", "start=1", "step=3-7"], dict(start=3, stop=7)),  # step wins
        (['"x', 'y"', "0.5"], dict(name="x:y", te=0.5)),
        (["'x", "y", "z'", "0.5"], dict(name="x:y:z", te=0.5)),
        (['"plain"', "0.5"], dict(name="plain", te=0.5)),
        (["a", "", "0.5"], dict(te=1.0, unet=0.5)),  # empty slot keeps the default
        ([" a ", " 0.5 "], dict(name="a", te=0.5)),
        (["a", 0.7], dict(te=0.7)),  # the WebUI's sd_lora option passes a float
    ],
)
def test_parse_token(items, want):
    spec = parse_token(items)
    for k, v in want.items():
        assert getattr(spec, k) == v, (items, k)


def test_default_multiplier():
    assert parse_token(["a"], default_multiplier=0.6).te == 0.6
    assert parse_token(["a"], default_multiplier=0.6).unet == 0.6


def test_hires_multipliers():
    spec = parse_token(["a", "0.8", "hr=0.5"])
    assert spec.multipliers(False) == (0.8, 0.8)
    assert spec.multipliers(True) == (0.5, 0.5)
    spec = parse_token(["a", "0.8", "hrunet=0.2"])
    assert spec.multipliers(True) == (0.8, 0.2)
    assert parse_token(["a", "0.8"]).multipliers(True) == (0.8, 0.8)


@pytest.mark.parametrize(
    "items, fragment",
    [
        ([""], "no network name"),
        (["a", "te=abc"], "te='abc'"),
        (["a", "dyn=1.5"], "whole step"),
        (["a", "step=3"], "A-B"),
        (["a", "x=q"], "x='q'"),
        (['"a', "b"], "unclosed quote"),
        (["a", "1@x"], "te="),
    ],
)
def test_bad_tokens(items, fragment):
    with pytest.raises(TokenError) as info:
        parse_token(items)
    assert fragment in str(info.value)


def test_unknown_named_argument_is_a_warning():
    spec = parse_token(["a", "1", "foo=2"])
    assert spec.te == 1.0 and any("unknown argument 'foo'" in w for w in spec.warnings)
    spec = parse_token(["a", "1", "lbwe=xx"])
    assert any("lbwe" in w for w in spec.warnings)


def test_find_and_strip_tokens():
    prompt = 'a cat <lora:one:0.5>, <lyco:"t:w":1:lbw=MIDD> and <hypernet:x:1> <lora:two>'
    found = find_tokens(prompt)
    assert [(k, i[0]) for k, i, _ in found] == [("lora", "one"), ("lyco", '"t'), ("lora", "two")]
    text, items = strip_tokens(prompt)
    assert text == "a cat ,  and <hypernet:x:1> "
    assert [parse_token(i).name for i in items] == ["one", "t:w", "two"]


def test_curves():
    c = parse_weight("0@0,1@0.5")
    assert isinstance(c, Curve)
    # fractions of the pass: 0.0 is step 0, 1.0 the last sampled step (20 of 0..20)
    assert [c(s, 21) for s in (0, 5, 10, 15, 20)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    c = parse_weight("1@5; 0@15")  # absolute steps, semicolons
    assert [c(s, 30) for s in (0, 5, 10, 15, 29)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    c = parse_weight("0.2@0.5, 1@0")  # any keyframe order
    assert c(0, 10) == 1.0 and c(5, 10) == pytest.approx(0.2) and c(9, 10) == pytest.approx(0.2)
    assert parse_weight("0.75") == 0.75 and parse_weight(2) == 2.0
    c = parse_weight("1@0.5, 0@10")  # a step above 1: every step is absolute (loractl's rule)
    assert [c(s, 30) for s in (0, 1, 10, 29)] == [1.0, pytest.approx(1 - 0.5 / 9.5), 0.0, 0.0]
    with pytest.raises(ValueError):
        parse_weight("a@1")
    with pytest.raises(ValueError):
        parse_weight("1@")


@pytest.mark.parametrize("steps", [2, 3, 8, 20, 31])
def test_curve_end_values_are_sampled(steps):
    """loractl's README: ``1@0,0@1`` goes "back down to 0 when we finish": the
    last sampled step (steps - 1) takes the value at 1.0, step 0 the value at 0.0."""
    down, up = parse_weight("1@0,0@1"), parse_weight("0@0,1@1")
    assert down(steps - 1, steps) == 0.0 and up(steps - 1, steps) == 1.0
    assert down(0, steps) == 1.0 and up(0, steps) == 0.0
    assert parse_weight("0@0,1@0.5")((steps - 1) / 2, steps) == 1.0


def test_loractl_tilde_keyframes():
    """loractl's code splits keyframes at '@' or '~': ``0~0,1~0.5`` is a curve, not block weights."""
    tilde, at = parse_weight("0~0,1~0.5"), parse_weight("0@0,1@0.5")
    assert isinstance(tilde, Curve) and [tilde(s, 11) for s in range(11)] == [at(s, 11) for s in range(11)]
    spec = parse_token(["n", "0~0,1~0.5"])
    assert spec.lbw is None and isinstance(spec.te, Curve) and spec.unet is spec.te
    spec = parse_token(["n", "unet=0~0,1~0.5", "hr=1~0,0~1"])
    assert isinstance(spec.unet, Curve) and isinstance(spec.hr_unet, Curve) and spec.te == 1.0
    assert parse_token(["n", "1", "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0"]).lbw  # lists stay block weights


def test_loractl_token_kind():
    found = find_tokens("a <loractl:one:0@0,1@1> <lora:two>")
    assert [(k, i[0]) for k, i, _ in found] == [("loractl", "one"), ("lora", "two")]
    assert strip_tokens("a <loractl:one:1>")[0] == "a "


def test_hashes_format_matches_the_builtin():
    pairs = {"my:lora": "0123456789ab", "b,c": "ba9876543210"}
    text = format_hashes(pairs)
    assert text == "mylora: 0123456789ab, bc: ba9876543210"
    assert parse_hashes(text) == {"mylora": "0123456789ab", "bc": "ba9876543210"}
    assert clean_name("a:b,c") == "abc"
    assert parse_hashes("junk, x: 1") == {"x": "1"}


def test_remap_prompt():
    hashes = {"old": "aaaaaaaaaaaa", "keep": "bbbbbbbbbbbb", "q": "cccccccccccc"}
    local = {"aaaaaaaaaaaa": "new_name", "cccccccccccc": "with:colon"}.get
    prompt = "x <lora:old:0.5> <lora:keep:1> <lyco:old> <lora:q:1> <lora:unknown:1>"
    assert remap_prompt(prompt, hashes, local) == (
        'x <lora:new_name:0.5> <lora:keep:1> <lyco:new_name> <lora:"with:colon":1> <lora:unknown:1>'
    )


def test_front_end_reads_the_same_tags():
    """The card and panel script edits exactly the tags the Python side reads."""
    import os
    import re

    from lycoris_ext.tokens import TOKEN_KINDS

    js = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "javascript", "lycoris_ext.js")
    with open(js, encoding="utf-8") as f:
        m = re.search(r"var TOKEN = /<\(([\w|]+)\):", f.read())
    assert m and tuple(m[1].split("|")) == TOKEN_KINDS


def test_one_name_grammar_for_every_scanner():
    """Finding, renaming and rewriting read a token's name the same way (the
    WebUI's split at every ':', a quoted name joined again)."""
    from lycoris_ext.tokens import quote_name, rename_tokens, rewrite_token, token_safe

    prompt = 'a <lora:"x:y":0.5:lbw=MIDD> <lyco:plain> <loractl:"open:1> <lora:@0123456789ab:1>'
    names = []
    for _, items, _ in find_tokens(prompt):
        try:
            names.append(parse_token(items).name)
        except TokenError:
            names.append(None)
    assert names == ["x:y", "plain", None, "@0123456789ab"]
    renamed = rename_tokens(prompt, {"x:y": "z", "plain": "a:b", "@0123456789ab": "found"}.get)
    assert renamed == 'a <lora:z:0.5:lbw=MIDD> <lyco:"a:b"> <loractl:"open:1> <lora:found:1>'
    assert rewrite_token(prompt, "x:y", weights=(0.25,)) == prompt.replace('"x:y":0.5', '"x:y":0.25')
    assert rewrite_token(prompt, "plain", named={"lbw": "OUTD"}) == prompt.replace("<lyco:plain>", "<lyco:plain:lbw=OUTD>")
    assert quote_name("a:b") == '"a:b"' and quote_name('a:"b') == "'a:\"b'"
    assert not token_safe("a#b") and not token_safe("@0123456789ab") and token_safe("a:b") and token_safe("@x")
