"""The lab's text limits: a too-long link's text is cut to the limit and the cut is said, the counter names the
limit, and the model-fit warning gives the backend's reasons."""
from __future__ import annotations

from app.components import text_limits as tl


def test_a_long_link_text_is_cut_and_the_cut_is_said():
    text = "a" * 2500 + "tail"
    query, problems = tl.clip_link_text({"text": text, "in": "text"})
    assert query["text"] == text[:tl.TEXT_LIMIT] and query["in"] == "text"
    assert len(problems) == 1 and "2,504 characters" in problems[0] and "2,000" in problems[0]
    same, none = tl.clip_link_text({"text": "short"})
    assert same == {"text": "short"} and none == []
    assert tl.clip_link_text({})[1] == []


def test_counter_and_fit_notice():
    assert tl.counter_text(12) == "12 / 2,000 characters"
    assert tl.counter_text(2000).startswith("2,000 / 2,000 characters: the limit")
    assert tl.fit_notice({"far_outside": False, "reasons": []}) is None
    notice = tl.fit_notice({"far_outside": True, "model": "demo", "reasons": ["it is 540 tokens long"]})
    text = str(notice)
    assert "Far outside what the demo model handles" in text and "540 tokens" in text and "model card" in text
