"""URL state: parsing (types, bounds, choices, problems), canonical hrefs, and the round trip."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from app import state as st


def test_defaults_when_the_query_is_empty():
    s, problems = st.parse("layer", {})
    assert problems == []
    assert s == {"run": None, "stack": "text_decoder", "layer": 0, "concept": None, "sort": "ap", "order": "desc",
                 "comp": "all", "site": None, "min_ap": None, "max_ap": None}


def test_values_are_typed_and_bad_ones_replaced_with_a_named_problem():
    s, problems = st.parse("layer", {"layer": "3", "concept": "x7", "min_ap": "0.25", "max_ap": "1.5", "sort": "bogus",
                                     "stack": "speech_encoder", "unknown": "ignored"})
    assert (s["layer"], s["min_ap"], s["stack"]) == (3, 0.25, "speech_encoder")
    assert (s["concept"], s["max_ap"], s["sort"]) == (None, None, "ap")
    assert problems == [
        "concept=x7: not a whole number; using the default",
        "sort=bogus: expected one of unit_id, ap, on_p50, on_p90, off_mean, off_p50; using the default",
        "max_ap=1.5: outside 0..1; using the default",
    ]


def test_non_finite_floats_and_overlong_strings_are_refused():
    s, problems = st.parse("overview", {"thr": "nan", "task": "t" * 65})
    assert s["thr"] == 0.9 and s["task"] is None
    assert problems[0].startswith("task=") and "longer than 64 characters" in problems[0]
    assert problems[1] == "thr=nan: not a finite number; using the default"


def test_unit_lists_parse_from_comma_separated_text():
    s, problems = st.parse("lab", {"units": "5, 7,5,12"})
    assert s["units"] == (5, 7, 12) and not problems
    s, problems = st.parse("lab", {"units": "5,a"})
    assert s["units"] == () and problems == ["units=5,a: 'a' is not a whole number; using the default"]


def test_repeated_keys_take_the_last_value():
    s, _ = st.parse("unit", {"unit": ["4", "9"]})
    assert s["unit"] == 9


def test_href_is_canonical_and_round_trips():
    s, _ = st.parse("lab", {"ex": "builtin:s000:deu:deu-m1", "text": "Grüße & Küsse", "units": "3,1", "k": "20"})
    url = st.href("lab", s)
    parts = urlsplit(url)
    assert parts.path == "/lab"
    keys = [k for k, _ in st.query_items("lab", s)]
    assert keys == [k.name for k in st.PAGES["lab"].keys if k.name in keys]
    assert "units=3%2C1" in parts.query and "text" in keys and "run" not in keys
    again, problems = st.parse("lab", {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()})
    assert not problems and again == s


def test_empty_lists_and_none_are_left_out_of_the_url():
    s, _ = st.parse("lab", {})
    s["units"] = []
    assert "units" not in st.href("lab", s) and "ex=" not in st.href("lab", s)


def test_page_of_paths():
    assert st.page_of("/") == "overview" and st.page_of("/layer/") == "layer" and st.page_of("/nope") is None


@pytest.mark.parametrize("page", list(st.PAGES))
def test_every_page_parses_its_own_defaults(page):
    defaults = {k.name: k.default for k in st.PAGES[page].keys}
    s, problems = st.parse(page, {})
    assert s == defaults and not problems
    assert st.href(page, s).startswith(st.PAGES[page].path)
