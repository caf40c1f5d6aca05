"""Block-weight specs compatible with the LoRA Block Weight extension (LBW).

Expected values are written out from /work/shared/LBW.md, not taken from the
module under test.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lycoris_ext.resolve.lbw import (
    ALL_BLOCKS,
    DEFAULT_PRESETS,
    BlockSpecError,
    BlockWeights,
    format_block_weights,
    parse_block_weights,
    read_presets,
    write_preset,
)
from lycoris_ext.resolve.tree import SD_BLOCKS, SDXL_BLOCKS

IN = [f"IN{i:02d}" for i in range(12)]
OUT = [f"OUT{i:02d}" for i in range(12)]
# LBW's block lists, by length (LBW.md)
LBW_ORDER = {
    26: ["BASE", *IN, "M00", *OUT],
    17: ["BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00", *OUT[3:]],
    12: ["BASE", "IN04", "IN05", "IN07", "IN08", "M00", *OUT[:6]],
    20: ["BASE", *IN[:9], "M00", *OUT[:9]],
}
LBW_PRESETS = {
    "NONE": ",".join(["0"] * 17),
    "ALL": ",".join(["1"] * 17),
    "INS": "1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "IND": "1,0,0,0,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "INALL": "1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "MIDD": "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0",
    "OUTD": "1,0,0,0,0,0,0,0,1,1,1,1,0,0,0,0,0",
    "OUTS": "1,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1",
    "OUTALL": "1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1",
    "ALL0.5": ",".join(["0.5"] * 17),
}
SEVENTEEN = set(LBW_ORDER[17])
# Which blocks each preset turns on (weight 1), read off the 17-value lists by hand.
PRESET_ON = {
    "NONE": set(),
    "ALL": SEVENTEEN,
    "INS": {"BASE", "IN01", "IN02", "IN04"},
    "IND": {"BASE", "IN05", "IN07", "IN08"},
    "INALL": {"BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08"},
    "MIDD": {"BASE", "IN05", "IN07", "IN08", "M00", "OUT03", "OUT04", "OUT05", "OUT06"},
    "OUTD": {"BASE", "OUT03", "OUT04", "OUT05", "OUT06"},
    "OUTS": {"BASE", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11"},
    "OUTALL": {"BASE", *OUT[3:]},
}


def test_default_presets_are_lbws():
    assert DEFAULT_PRESETS == LBW_PRESETS


def test_block_lists_agree_with_the_trees():
    assert list(ALL_BLOCKS) == LBW_ORDER[26] == list(SD_BLOCKS)
    assert LBW_ORDER[20] == list(SDXL_BLOCKS)


@pytest.mark.parametrize("name", sorted(PRESET_ON))
def test_default_preset_values(name):
    w = parse_block_weights(name)
    assert isinstance(w, BlockWeights)
    assert set(w) == set(LBW_ORDER[26])
    assert {b for b, v in w.items() if v == 1.0} == PRESET_ON[name]
    assert all(v == 0.0 for b, v in w.items() if b not in PRESET_ON[name])
    assert w.unnamed == frozenset(LBW_ORDER[26]) - SEVENTEEN
    assert w.spec == name


def test_all_half_preset():
    w = parse_block_weights("ALL0.5")
    assert {b for b, v in w.items() if v == 0.5} == SEVENTEEN
    assert all(w[b] == 0.0 for b in w.unnamed)


@pytest.mark.parametrize("length", [12, 17, 20, 26])
def test_lists_map_by_block_id_in_lbw_order(length):
    values = [round(0.01 * (i + 1), 2) for i in range(length)]
    w = parse_block_weights(",".join(map(str, values)))
    assert {b: w[b] for b in LBW_ORDER[length]} == dict(zip(LBW_ORDER[length], values))
    missing = set(LBW_ORDER[26]) - set(LBW_ORDER[length])
    assert w.unnamed == frozenset(missing)
    assert all(w[b] == 0.0 for b in missing)  # as LBW: blocks a short list does not name get 0
    assert len(w) == 26


def test_unnamed_counts():
    assert {n: len(parse_block_weights(",".join(["1"] * n)).unnamed) for n in (12, 17, 20, 26)} == {12: 14, 17: 9, 20: 6, 26: 0}


def test_sdxl_12_list_example():
    w = parse_block_weights("1,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.1,1.2")
    assert (w["BASE"], w["IN04"], w["IN05"], w["IN07"], w["IN08"], w["M00"]) == (1, 0.1, 0.2, 0.3, 0.4, 0.5)
    assert [w[f"OUT{i:02d}"] for i in range(6)] == [0.6, 0.7, 0.8, 0.9, 1.1, 1.2]
    assert w["IN00"] == w["OUT06"] == 0.0


@pytest.mark.parametrize("n", [0, 1, 2, 5, 11, 13, 16, 18, 19, 21, 25, 27, 30])
def test_other_lengths_are_rejected_naming_the_allowed_ones(n):
    spec = ",".join(["1"] * n)
    with pytest.raises(BlockSpecError) as e:
        parse_block_weights(spec)
    msg = str(e.value)
    assert "12, 17, 20, 26" in msg
    assert f"not {n}" in msg


@pytest.mark.parametrize("name", ["midd", "Midd", "FOO", "MIDD2", "all"])
def test_unknown_preset_names_are_rejected(name):
    # names are case-sensitive: 'midd' is not 'MIDD'
    with pytest.raises(BlockSpecError) as e:
        parse_block_weights(name)
    assert f"unknown block-weight preset '{name}'" in str(e.value)
    assert "MIDD" in str(e.value)  # the message lists the presets


@pytest.mark.parametrize("name", ["XL", "UNKNOWN", "Roman"])
def test_unknown_preset_names_starting_with_r_u_x_are_named_as_presets(name):
    with pytest.raises(BlockSpecError) as e:
        parse_block_weights(name)
    assert f"unknown block-weight preset '{name}'" in str(e.value)


@pytest.mark.parametrize("spec", [None, "1,a," + ",".join(["1"] * 15), ",".join(["1"] * 16) + ",X*2"])
def test_bad_specs_raise_block_spec_error(spec):
    with pytest.raises(BlockSpecError):
        parse_block_weights(spec)


def test_whitespace_around_names_and_values():
    assert parse_block_weights("  MIDD ") == parse_block_weights("MIDD")
    assert parse_block_weights(" 1, 0 ,0.5," + ",".join(["1"] * 14)) == parse_block_weights("1,0,0.5," + ",".join(["1"] * 14))


def test_random_r_is_0_to_1_with_three_decimals():
    rng = random.Random(1)
    vals = []
    for _ in range(50):
        w = parse_block_weights(",".join(["R"] * 26), rng=rng)
        vals += list(w.values())
    assert all(0.0 <= v <= 1.0 and round(v, 3) == v for v in vals)
    assert len(set(vals)) > 100
    # lower case too, and a seeded rng makes it reproducible
    assert parse_block_weights(",".join(["r"] * 17), rng=random.Random(5)) == parse_block_weights(",".join(["R"] * 17), rng=random.Random(5))


def test_random_u_is_minus_1_5_to_1_5_with_three_decimals():
    rng = random.Random(2)
    vals = []
    for _ in range(50):
        vals += list(parse_block_weights(",".join(["U"] * 26), rng=rng).values())
    assert all(-1.5 <= v <= 1.5 and round(v, 3) == v for v in vals)
    assert min(vals) < -1.0 and max(vals) > 1.0  # the README's range, not 0..1


@pytest.mark.parametrize("tok,x,want", [
    ("X", 0.8, 0.8), ("x", 0.8, 0.8), ("X+0.5", 0.8, 1.3), ("X-0.25", 0.8, 0.55), ("x+1", -1.0, 0.0),
    ("X", 1.0, 1.0), ("X+2", 0.5, 2.5),
])
def test_x_values_use_x(tok, x, want):
    w = parse_block_weights(",".join([tok] + ["1"] * 16), x=x)
    assert w["BASE"] == pytest.approx(want)
    assert w["IN01"] == 1.0


def test_x_defaults_to_1():
    assert parse_block_weights(",".join(["X-0.5"] * 12))["M00"] == pytest.approx(0.5)


def test_spec_from_user_presets():
    presets = {"MINE": ",".join(["0.3"] * 26), "XLONLY": "1,1,1,1,1,1,0,0,0,0,0,0", "MIDD": ",".join(["1"] * 26)}
    w = parse_block_weights("MINE", presets)
    assert set(w.values()) == {0.3} and w.unnamed == frozenset()
    w = parse_block_weights("XLONLY", presets)
    assert {b for b, v in w.items() if v == 1} == {"BASE", "IN04", "IN05", "IN07", "IN08", "M00"}
    # a user preset of the same name replaces the default
    assert set(parse_block_weights("MIDD", presets).values()) == {1.0}


# ----------------------------------------------------------------- presets file

def test_read_presets_file_rules(tmp_path):
    p = tmp_path / "lbwpresets.txt"
    seventeen = ",".join(["1"] * 17)
    twelve = ",".join(["0.5"] * 12)
    p.write_text("\n".join([
        f"GOOD:{seventeen}",
        f"XLGOOD:{twelve}",
        f"good:{','.join(['0'] * 26)}",          # a different name: names are case-sensitive
        f"NOCOLON {seventeen}",                  # no colon
        f"#COMMENTED:{seventeen}",               # has '#'
        f"TRAILING:{seventeen} # note",          # '#' anywhere disqualifies the line
        "SHORT:1,1,1,1,1",                       # invalid count
        f"TWO:COLONS:{','.join(['1'] * 20)}",    # split at the first colon
        f"  SPACED  :  {seventeen}  ",
        "",
    ]), encoding="utf-8")
    got = read_presets(p)
    assert got == {
        "GOOD": seventeen,
        "XLGOOD": twelve,
        "good": ",".join(["0"] * 26),
        "TWO": "COLONS:" + ",".join(["1"] * 20),
        "SPACED": seventeen,
    }
    assert parse_block_weights("GOOD", got) != parse_block_weights("good", got)


def test_read_presets_missing_file(tmp_path):
    assert read_presets(tmp_path / "nope.txt") == {}


def test_write_preset_adds_and_replaces(tmp_path):
    p = tmp_path / "lbwpresets.txt"
    p.write_text("# my presets\nKEEP:" + ",".join(["1"] * 17) + "\nmine:" + ",".join(["0"] * 17) + "\n", encoding="utf-8")
    write_preset(p, "MINE", ",".join(["0.5"] * 26))
    write_preset(p, "XL", ",".join(["1"] * 20))
    write_preset(p, "MINE", ",".join(["0.25"] * 12))  # replaces MINE, keeps 'mine'
    lines = p.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# my presets"
    assert sum(ln.startswith("MINE:") for ln in lines) == 1
    got = read_presets(p)
    assert got == {"KEEP": ",".join(["1"] * 17), "mine": ",".join(["0"] * 17),
                   "XL": ",".join(["1"] * 20), "MINE": ",".join(["0.25"] * 12)}


def test_write_preset_to_a_new_file(tmp_path):
    p = tmp_path / "new.txt"
    write_preset(p, "A", ",".join(["1"] * 26))
    assert p.read_text(encoding="utf-8") == "A:" + ",".join(["1"] * 26) + "\n"


@pytest.mark.parametrize("name", ["", "  ", "A:B", "A#", "A\nB"])
def test_write_preset_rejects_bad_names(tmp_path, name):
    with pytest.raises(BlockSpecError):
        write_preset(tmp_path / "p.txt", name, ",".join(["1"] * 17))
    assert not (tmp_path / "p.txt").exists()


def test_write_preset_rejects_bad_counts(tmp_path):
    with pytest.raises(BlockSpecError) as e:
        write_preset(tmp_path / "p.txt", "A", "1,2,3")
    assert "12, 17, 20, 26" in str(e.value)


# ------------------------------------------------------------------ formatting

def test_format_block_weights_lengths_and_order():
    w = parse_block_weights("MIDD")
    s = format_block_weights(w, "sd1")
    assert s == "1,0,0,0,0,0,1,0,1,1,0,0,0,1,0,0,0,1,1,1,1,0,0,0,0,0"
    assert len(format_block_weights(w, "sd2").split(",")) == 26
    xl = format_block_weights(parse_block_weights("1,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.1,1.2"), "sdxl")
    assert xl == "1,0,0,0,0,0.1,0.2,0,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.1,1.2,0,0,0"


# hypothesis: lists LBW users type (up to 4 decimals)
value = st.decimals(min_value=-3, max_value=3, places=4, allow_nan=False, allow_infinity=False).map(lambda d: str(d.normalize()))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([12, 17, 20, 26]).flatmap(lambda n: st.lists(value, min_size=n, max_size=n)))
def test_any_valid_list_round_trips_through_format(values):
    family = "sdxl" if len(values) in (12, 20) else "sd1"
    w = parse_block_weights(",".join(values))
    s = format_block_weights(w, family)
    assert len(s.split(",")) == (20 if family == "sdxl" else 26)
    back = parse_block_weights(s)
    assert dict(back) == dict(w)
    # and the formatted list says the same thing about every block it names
    assert format_block_weights(back, family) == s


@pytest.mark.parametrize("v", ["0.1234567", "1234567"])
def test_format_keeps_full_precision(v):
    w = parse_block_weights(",".join([v] * 26))
    assert dict(parse_block_weights(format_block_weights(w, "sd1"))) == dict(w)
