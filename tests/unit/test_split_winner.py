"""A flow split's automatic winner (`auto_winner`): once its wait after the first entrant is over and a
two-proportion z-test of its variants' emails decides, every later entrant gets the winner."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from nudge.clocks import VirtualClock
from nudge.domain.engine import choose_variant
from nudge.domain.feedback import FeedbackKind
from nudge.domain.flows import Flow, SplitStep
from nudge.domain.validation import validate
from nudge.flow_tools import step_label
from nudge.local.simulation import Simulation
from nudge.services.runs import SPLIT_DOCUMENT_PREFIX
from nudge.settings import Settings
from tests.conftest import START
from tests.factories import contact
from tests.flowkit import flows_dir, simulation

FLOW = """
id: subject_test
name: Subject test
trigger: {event: signed_up}
steps:
  - id: pick
    type: split
    auto_winner: {metric: click, after: 1d, confidence: 0.95}
    variants: [{name: a, next: email_a}, {name: b, next: email_b}]
  - id: email_a
    @EMAIL@
    subject: "Subject A"
    next: done
  - id: email_b
    @EMAIL@
    subject: "Subject B"
  - {id: done, type: end}
"""


def enter(sim: Simulation, prefix: str) -> dict[str, str]:
    """Ten contacts sign up now: their subjects."""
    for i in range(10):
        sim.send({"id": f"e-{prefix}{i}", "type": "signed_up", "contact": contact(f"{prefix}{i}")})
    sent = {email.to.split("@")[0]: email.subject for _, email in sim.mailer.sent}
    return {c: s for c, s in sent.items() if c.startswith(prefix)}


def by_hash(sim: Simulation, prefix: str) -> dict[str, str]:
    """What the split's hash alone gives the ten contacts of `prefix` (the run ids hold their contact ids)."""
    split = sim.container.flows.get("subject_test").step("pick")  # type: ignore[union-attr]
    assert isinstance(split, SplitStep)
    return {
        f"{prefix}{i}": f"Subject {choose_variant('subject_test', split, _contact_id(sim, f'{prefix}{i}'))[0].upper()}"
        for i in range(10)
    }


def counted(sim: Simulation, clicks_b: int) -> None:
    """a: 20 clicks of 200 delivered; b: `clicks_b` of 200."""
    for variant, clicks in (("a", 20), ("b", clicks_b)):
        for _ in range(200):
            sim.store.count_step("subject_test", f"email_{variant}", FeedbackKind.DELIVERY)
        for _ in range(clicks):
            sim.store.count_step("subject_test", f"email_{variant}", FeedbackKind.CLICK)


@pytest.mark.parametrize(("clicks_b", "decided"), [(40, True), (28, False)])
def test_later_entrants_get_the_winner_once_the_wait_is_over_and_the_test_decides(
    settings: Settings, clock: VirtualClock, tmp_path: Path, clicks_b: int, decided: bool
) -> None:
    sim = simulation(settings, clock, flows_dir(tmp_path, FLOW))
    first = enter(sim, "x")  # the first entrant starts the test's clock
    counted(sim, clicks_b)
    clock.advance(timedelta(hours=12))
    early = enter(sim, "y")  # clear or not, the wait (1d) is not over: the hash decides
    clock.advance(timedelta(hours=12, minutes=1))
    late = enter(sim, "z")

    assert first == by_hash(sim, "x") and early == by_hash(sim, "y")
    assert {"Subject A", "Subject B"} <= set(by_hash(sim, "z").values())  # the hash would give both
    document = sim.store.get_document(f"{SPLIT_DOCUMENT_PREFIX}subject_test.pick")
    assert document is not None and document["started_at"] == START.isoformat()
    if decided:
        # By hand: pooled 60 / 400 = 0.15, se = sqrt(0.15 × 0.85 × (1/200 + 1/200)) = 0.035707,
        # z = (0.20 − 0.10) / 0.035707 = 2.8006, p = erfc(z / √2) = 0.0051 < 0.05: b wins
        assert late == {f"z{i}": "Subject B" for i in range(10)}
        assert (document["winner"], document["verdict"]["z"]) == ("b", pytest.approx(2.8006, abs=1e-4))
        assert document["verdict"]["p_value"] == pytest.approx(0.0051, abs=1e-4)
        [run] = sim.store.runs_for(_contact_id(sim, "z0"))
        assert run.variants == {"pick": "b"}
    else:
        # 28 of 200: pooled 0.12, se = 0.032496, z = 0.04 / 0.032496 = 1.2309, p = 0.2184: the test goes on
        assert late == by_hash(sim, "z") and "winner" not in document


def _contact_id(sim: Simulation, name: str) -> str:
    return next(c.contact_id for c in sim.store.contacts.values() if c.email == f"{name}@example.com")


def test_an_auto_winner_needs_an_email_after_each_variant_and_is_drawn() -> None:
    steps = [
        {
            "id": "pick",
            "type": "split",
            "auto_winner": {"metric": "open", "after": "3d"},
            "variants": [{"name": "a", "next": "wait"}, {"name": "b", "next": "wait"}],
        },
        {"id": "wait", "type": "wait", "duration": "1d"},
    ]
    flow = {"id": "f", "name": "F", "trigger": {"event": "x"}, "steps": steps}
    with pytest.raises(ValueError, match="every variant's `next` must be an email step"):
        validate(Flow, flow)
    with pytest.raises(ValueError, match="between 1h and 90d"):
        validate(Flow, {**flow, "steps": [{**steps[0], "auto_winner": {"after": "10m"}}, steps[1]]})
    split = validate(SplitStep, {**steps[0], "holdout": 10})
    assert step_label(split) == "split (holdout 10%, auto winner on opens after 3d)"
