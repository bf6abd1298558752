"""audiences/*.yaml: validated like flows, with file:line; the flows' audience steps checked against them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nudge.domain.flows import Flow, FlowCatalog
from nudge.domain.segments import SegmentCatalog
from nudge.domain.validation import validate
from nudge.flow_files import FlowFileError, audience_problems, load_audiences
from tests.conftest import ROOT


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.yaml").write_text(text)


def test_the_shipped_examples_cover_every_platform() -> None:
    audiences = load_audiences(ROOT / "audiences")
    assert sorted(a.platform for a in audiences) == ["google", "meta", "tiktok"]
    assert {a.id: a.segment for a in audiences} == {
        "cart_retargeting_meta": None,
        "vip_customer_match": "vip",
        "lapsed_tiktok": "lapsed",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "id: a\nname: A\nplatform: snapchat\naudience_id: '1'\n",
            ":3: platform: Input should be 'meta', 'google' or 'tiktok'",
        ),
        ("id: a\nname: A\nplatform: google\naudience_id: '1'\n", "a google audience needs account_id"),
        ("id: a\nname: A\nplatform: meta\naudience_id: 'act_1'\n", "audience_id is the meta audience's numeric id"),
        (
            "id: a\nname: A\nplatform: meta\naudience_id: '1'\nsource: {type: segment}\n",
            ":5: source.segment: Field required",
        ),
    ],
)
def test_bad_files_are_refused_with_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    write(tmp_path / "audiences", "a", text)
    with pytest.raises(FlowFileError) as raised:
        load_audiences(tmp_path / "audiences")
    assert problem in str(raised.value) and "a.yaml" in str(raised.value)


def test_flow_steps_must_name_a_flows_audience_and_segment_audiences_a_known_segment(tmp_path: Path) -> None:
    write(tmp_path / "audiences", "cart", "id: cart\nname: C\nplatform: meta\naudience_id: '1'\n")
    write(
        tmp_path / "audiences",
        "vips",
        "id: vips\nname: V\nplatform: tiktok\naudience_id: '2'\naccount_id: '3'\n"
        "source: {type: segment, segment: nope}\n",
    )
    flow = validate(
        Flow,
        {
            "id": "f",
            "name": "F",
            "trigger": {"event": "x"},
            "steps": [
                {"id": "a", "type": "audience", "action": "add", "audience": "cart"},
                {"id": "b", "type": "audience", "action": "add", "audience": "vips"},
                {"id": "c", "type": "audience", "action": "remove", "audience": "ghost"},
            ],
        },
    )
    problems = audience_problems(FlowCatalog([flow]), load_audiences(tmp_path / "audiences"), SegmentCatalog())
    assert problems == [
        "f: steps.b.audience: 'vips' follows segment 'nope'; flows may only change audiences whose source is flows",
        "f: steps.c.audience: no audience 'ghost' (known: cart, vips)",
        "vips: source.segment: no segment 'nope'",
    ]
