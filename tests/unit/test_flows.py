"""Flow files: the shipped ones load; broken ones are refused with the file and field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from nudge.domain.durations import format_duration, parse_duration
from nudge.domain.flows import WaitUntilStep
from nudge.domain.records import replace
from nudge.flow_files import FlowFileError, load_catalog, load_flow
from tests.conftest import ROOT


def test_shipped_flows_load() -> None:
    catalog = load_catalog(ROOT / "flows")
    assert {f.id for f in catalog} == {
        "abandoned_cart",
        "back_in_stock",
        "birthday",
        "browse_abandonment",
        "client_onboarding",
        "course_drip",
        "course_enrollment_funnel",
        "double_opt_in",
        "missed_call",
        "post_purchase",
        "product_launch",
        "replenishment",
        "review_referral",
        "sunset",
        "vip_loyalty",
        "welcome",
        "win_back",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("2d", 172800),
        ("1w", 604800),
        ("1d12h", 129600),
        ("1D 2H", 93600),
    ],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h", "0h", "1.5h", "P1D"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


BROKEN = {
    "unknown step type": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: teleport}\n",
        "broken.yaml:5: steps.0: Input tag 'teleport' found using 'type' does not match any of the expected tags",
    ),
    "bad duration": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: wait, duration: soon}\n",
        "broken.yaml:5: steps.0.duration: 'soon' is not a duration",
    ),
    "duplicate step ids": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: end}\n  - {id: a, type: end}\n",
        "broken.yaml:1: <root>: step id 'a' is used twice",
    ),
    "missing trigger": ("id: f\nname: F\nsteps:\n  - {id: a, type: end}\n", "broken.yaml:1: trigger: Field required"),
    "unknown field": (
        "id: f\nname: F\ntrigger: {event: x}\nwhen: now\nsteps:\n  - {id: a, type: end}\n",
        "broken.yaml:4: when: Extra inputs are not permitted",
    ),
    "bad id": (
        "id: Flow One\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: end}\n",
        "id: String should match",
    ),
    "no steps": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps: []\n",
        "steps: List should have at least 1 item",
    ),
    "not a mapping": ("- just\n- a list\n", "a flow file holds one mapping"),
    "filter that does not compile": (
        "id: f\nname: F\ntrigger:\n  event: x\n  filter: 'event.total >'\nsteps:\n  - {id: a, type: end}\n",
        "broken.yaml:5: trigger.filter: 'event.total >' does not compile",
    ),
    "condition on a field a contact does not have": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n"
        "  - {id: a, type: branch, if: 'contact.orders_count > 0 and contact.email', then: b}\n"
        "  - {id: b, type: end}\n",
        "broken.yaml:5: steps.0.if: 'contact.orders_count > 0 and contact.email': a contact has no "
        "orders_count (it has ads_marketing, aggregates,",
    ),
    "bad time of day": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: wait_until, time: '25:00'}\n",
        "broken.yaml:5: steps.0.time: '25:00' is not a time of day",
    ),
    "wait_until with nothing to wait for": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: wait_until}\n",
        "broken.yaml:5: steps.0: wait_until needs a time of day, a date, or both",
    ),
    "unknown trigger type": (
        "id: f\nname: F\ntrigger: {type: cron, at: daily}\nsteps:\n  - {id: a, type: end}\n",
        "broken.yaml:3: trigger: Input tag 'cron' found using _trigger_kind() does not match",
    ),
    "segment trigger on neither entry nor exit": (
        "id: f\nname: F\ntrigger:\n  type: segment\n  segment: lapsed\n  when: stayed\n"
        "steps:\n  - {id: a, type: end}\n",
        "broken.yaml:6: trigger.when: Input should be 'entered' or 'exited'",
    ),
    "bad reentry": (
        "id: f\nname: F\ntrigger: {event: x}\nentry: {reentry: sometimes}\nsteps:\n  - {id: a, type: end}\n",
        "broken.yaml:4: entry.reentry: reentry is 'always', 'never' or a duration",
    ),
    "split with one variant": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: split, variants: [{name: x}]}\n",
        "broken.yaml:5: steps.0.variants: List should have at least 2 items",
    ),
    "webhook to a non-http url": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: webhook, url: 'ftp://x'}\n",
        "broken.yaml:5: steps.0.url: String should match pattern",
    ),
    "goto a missing step": (
        "id: f\nname: F\ntrigger: {event: x}\nsteps:\n  - {id: a, type: branch, if: 'true', then: zz}\n",
        "'zz', which is not a step of this flow",
    ),
    "not yaml": ("id: [unclosed\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_flows_are_refused_precisely(case: str, tmp_path: Path) -> None:
    text, expected = BROKEN[case]
    path = tmp_path / "broken.yaml"
    path.write_text(text)

    with pytest.raises(FlowFileError) as error:
        load_flow(path)

    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_a_catalog_reports_every_broken_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("id: a\nname: A\nsteps: []\n")
    (tmp_path / "b.yaml").write_text("id: b\nname: B\ntrigger: {event: x}\nsteps: [{id: s, type: nope}]\n")

    with pytest.raises(FlowFileError) as error:
        load_catalog(tmp_path)

    assert "a.yaml" in str(error.value) and "b.yaml" in str(error.value)


def test_the_fields_a_condition_may_read_are_exactly_the_contacts_view() -> None:
    from nudge.domain.model import CONTACT_FIELDS, Contact

    assert set(Contact(contact_id="c").template_view()) == CONTACT_FIELDS


def test_a_flows_steps_are_found_by_id_and_a_copy_with_other_steps_reads_its_own() -> None:
    """`Flow.step` and `Flow.following` read an index kept per flow object (the engine asks on every step):
    the answers are the list's, and a copy with another list answers from that list, not the original's."""
    flow = load_catalog(ROOT / "flows").get("abandoned_cart")
    assert flow is not None
    ids = [s.id for s in flow.steps]
    for i, step_id in enumerate(ids):
        assert flow.step(step_id) is flow.steps[i]
        assert flow.following(step_id) == (ids[i + 1] if i + 1 < len(ids) else None)
    with pytest.raises(KeyError):
        flow.step("no_such_step")
    with pytest.raises(ValueError, match="not in list"):
        flow.following("no_such_step")
    shorter = replace(flow, steps=flow.steps[1:])
    assert shorter.following(ids[1]) == (ids[2] if len(ids) > 2 else None)
    with pytest.raises(KeyError):
        shorter.step(ids[0])
    assert flow.step(ids[0]) is flow.steps[0]  # the original's answers did not move
    renamed = replace(flow, id="campaign.x")  # the same list, another flow (as a campaign's)
    assert renamed.step(ids[0]) is flow.steps[0]


def test_the_catalog_names_the_flows_an_event_type_may_start_in_its_order() -> None:
    """`FlowCatalog.started_by`, the engine's index, against asking every flow's trigger."""
    import pickle

    from nudge.domain.flows import DateTrigger, EventTrigger, SegmentTrigger

    catalog = load_catalog(ROOT / "flows")
    types = {"order_placed", "checkout_started", "subscribed", "segment_entered", "segment_exited", "nothing_of_ours"}
    for flow in catalog:
        if isinstance(flow.trigger, EventTrigger):
            types |= {flow.trigger.event} if isinstance(flow.trigger.event, str) else set(flow.trigger.event)
    for event_type in sorted(types):
        expected = [
            flow
            for flow in catalog
            if (isinstance(flow.trigger, EventTrigger) and flow.trigger.accepts(event_type))
            or (isinstance(flow.trigger, SegmentTrigger) and flow.trigger.event_type == event_type)
        ]
        assert catalog.started_by(event_type) == expected, event_type
        assert catalog.started_by(event_type) is catalog.started_by(event_type)  # worked out once
    assert catalog.started_by("order_placed") and not catalog.started_by("nothing_of_ours")
    assert not any(isinstance(flow.trigger, DateTrigger) for t in types for flow in catalog.started_by(t))
    again = pickle.loads(pickle.dumps(catalog))  # the compiled catalog: pickled without its index
    assert "_started_by" not in vars(again) and again.started_by("order_placed") == catalog.started_by("order_placed")


def _post_purchase_with_subject(subject: str) -> object:
    flow = load_flow(ROOT / "flows" / "post_purchase.yaml")
    steps = [replace(step, subject=subject) if step.id == "thank_you" else step for step in flow.steps]
    return replace(flow, steps=steps)


@pytest.mark.parametrize(
    ("subject", "segments", "aggregates"),
    [
        (
            "Thanks, {{ contact.first_name }} {{ contact['last_name'] }} ({{ contact . email }}) {{ event.total }}",
            False,
            False,
        ),
        ("You are a {{ contact.stage }} customer", True, False),
        ("{{ contact['segments'] | length }} segments", True, False),
        ("Your {{ contact.aggregates.orders_count }}th order", False, True),
        ("{{ contact['aggregates'].total_spent }} spent", False, True),
        ("Picked for you: {{ recommendations[0].title }}", False, True),  # made from the products bought
        ("Back on {{ contact.predicted.next_order_at }}?", False, True),
        ("{{ contact | tojson }}", True, True),  # the contact whole
        ("{{ contact.get(key) }}", True, True),  # a key worked out as it runs
        ("{{ contact[key] }}", True, True),
        ("{{ (contact).first_name }}", True, True),
        ("{% include 'subjects/thanks.txt' %}", True, True),  # another template's text is not the flow's
        ("{% from 'macros.txt' import thanks %}{{ thanks() }}", True, True),
    ],
)
def test_a_flow_reads_segments_or_aggregates_if_any_of_its_text_may(
    subject: str, segments: bool, aggregates: bool
) -> None:
    # Given post-purchase, which reads neither, with a subject that reads the contact this way
    flow = _post_purchase_with_subject(subject)
    # Then the backtest's checks see whether it may read the contact's segments or stage, or its aggregates
    assert (flow.reads_segments(), flow.reads_aggregates()) == (segments, aggregates)  # type: ignore[attr-defined]


def test_a_segment_trigger_or_segment_event_reads_segments() -> None:
    catalog = {flow.id: flow for flow in load_catalog(ROOT / "flows")}
    # Post-purchase and the rest read none; the VIP flow starts on entering the `vip` stage
    assert [flow_id for flow_id, flow in catalog.items() if flow.reads_segments()] == ["vip_loyalty"]
    # An exit on a segment move is read too
    flow = catalog["post_purchase"]
    exits = [*flow.exit, replace(flow.exit[0], event="segment_entered", match={})]
    assert replace(flow, exit=exits).reads_segments()


def test_a_wait_for_the_best_time_reads_the_aggregates() -> None:
    # Given no flow of the library reads the aggregates (the VIP flow's segments do, in a backtest)
    catalog = {flow.id: flow for flow in load_catalog(ROOT / "flows")}
    assert [flow_id for flow_id, flow in catalog.items() if flow.reads_aggregates()] == []
    # When one waits for the contact's best hour, which comes from the hours they engaged at
    flow = catalog["post_purchase"]
    best = WaitUntilStep(id="best_hour", type="wait_until", best_time=True)
    # Then it reads them
    assert replace(flow, steps=[best, *flow.steps]).reads_aggregates()
