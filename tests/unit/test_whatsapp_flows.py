"""WhatsApp steps in flow files: what the schema refuses, and what `nudge validate` checks against the
approved templates declared in flows/_whatsapp.yaml (names, languages, parameters, the 24-hour window)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nudge.cli.main import app
from nudge.domain.flows import Flow
from nudge.domain.validation import validate
from nudge.flow_files import FlowFileError, load_whatsapp_templates, template_problems
from nudge.flow_tools import mermaid, step_label
from nudge.templating import TemplateRenderer
from tests.conftest import ROOT

DECLARED = """
templates:
  cart_reminder:
    languages: [en_US, de]
    category: marketing
    parameters: [first_name, cart_url]
  order_update:
    languages: [en_US]
    category: utility
    parameters: ["1"]
"""


def flow(*steps: str, trigger: str = "{event: checkout_started}", category: str = "marketing") -> Flow:
    body = f"id: f\nname: F\ncategory: {category}\ntrigger: {trigger}\nsteps:\n" + "".join(
        f"  - {step}\n" for step in steps
    )
    return validate(Flow, yaml.safe_load(body))


def problems(subject: Flow, tmp_path: Path) -> list[str]:
    (tmp_path / "_whatsapp.yaml").write_text(DECLARED)
    return template_problems(subject, TemplateRenderer(ROOT / "templates"), load_whatsapp_templates(tmp_path))


CART = (
    "{id: reminder, type: whatsapp, template: cart_reminder, language: en_US, "
    "parameters: {first_name: '{{ contact.first_name }}', cart_url: '{{ event.recovery_url }}'}}"
)


def test_a_declared_template_with_its_parameters_passes(tmp_path: Path) -> None:
    assert problems(flow(CART), tmp_path) == []


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (CART.replace("cart_reminder", "cart_nudge"), "no WhatsApp template 'cart_nudge' in _whatsapp.yaml"),
        (CART.replace("en_US", "fr"), "cart_reminder is approved in en_US, de, not fr"),
        (CART.replace("first_name:", "name:"), "cart_reminder has no parameter(s) name"),
        (CART.replace(", cart_url: '{{ event.recovery_url }}'", ""), "cart_reminder needs parameter(s) cart_url"),
        (CART.replace("contact.first_name", "contact.frist_name }}{{ cupon"), "unknown variable(s) cupon"),
        (CART.replace("{{ event.recovery_url }}", "{{ event.recovery_url"), "parameters.cart_url: TemplateSyntaxError"),
    ],
)
def test_validate_names_what_is_wrong_with_a_template_step(step: str, expected: str, tmp_path: Path) -> None:
    found = problems(flow(step), tmp_path)
    assert any(expected in line for line in found), found


def test_a_marketing_template_cannot_go_out_as_transactional(tmp_path: Path) -> None:
    found = problems(flow(CART, category="transactional"), tmp_path)
    assert found == ["steps.reminder: cart_reminder is a marketing template; it needs marketing consent"]


TEXT = "{id: reply, type: whatsapp, text: 'Thanks {{ contact.first_name }}!'}"


def test_free_text_outside_a_window_guarded_step_is_refused(tmp_path: Path) -> None:
    [problem] = problems(flow(TEXT), tmp_path)
    assert "free-form text goes out only inside the 24-hour window" in problem


def test_free_text_is_accepted_after_the_customers_message_or_a_branch_on_the_window(tmp_path: Path) -> None:
    on_inbound = flow(TEXT, trigger="{event: whatsapp_received}")
    guarded = flow(
        "{id: open, type: branch, if: 'whatsapp.window_open', then: reply, else: done}", TEXT, "{id: done, type: end}"
    )

    assert problems(on_inbound, tmp_path) == []
    assert problems(guarded, tmp_path) == []


def test_the_fallback_templates_are_checked_like_any_others(tmp_path: Path) -> None:
    step = CART[:-1] + ", fallback: {type: sms, template: abandoned_cart/missing}}"
    [problem] = problems(flow(step), tmp_path)
    assert problem.startswith("steps.reminder: abandoned_cart/missing.sms.j2: TemplateNotFound")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{id: w, type: whatsapp, template: cart_reminder}", "needs its language"),
        ("{id: w, type: whatsapp}", "sends a template"),
        ("{id: w, type: whatsapp, text: hi, template: cart_reminder, language: en_US}", "not both or neither"),
        ("{id: w, type: whatsapp, text: hi, parameters: {a: b}}", "a text step has neither"),
        ("{id: w, type: whatsapp, text: hi, fallback: {type: push}}", "fallback"),
    ],
)
def test_the_schema_refuses_a_malformed_whatsapp_step(step: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        flow(step)


def test_a_malformed_declarations_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "_whatsapp.yaml").write_text("templates:\n  cart_reminder: {languages: [], category: marketing}\n")
    with pytest.raises(FlowFileError, match=r"_whatsapp.yaml:2: templates.cart_reminder.languages"):
        load_whatsapp_templates(tmp_path)


def test_graph_and_labels_show_the_whatsapp_step_and_its_fallback() -> None:
    subject = flow(CART[:-1] + ", fallback: {type: sms, template: abandoned_cart/reminder_2}}")
    assert step_label(subject.steps[0]) == "WhatsApp cart_reminder, else sms"
    assert 'reminder["WhatsApp cart_reminder, else sms"]' in mermaid(subject)


def test_nudge_validate_reads_the_declarations_beside_the_flows(tmp_path: Path) -> None:
    (tmp_path / "_whatsapp.yaml").write_text(DECLARED)
    body = textwrap.dedent(
        """\
        id: cart_whatsapp
        name: Cart by WhatsApp
        trigger: {event: checkout_started}
        steps:
          - {id: reminder, type: whatsapp, template: cart_reminder, language: en_US, parameters: {first_name: x}}
        """
    )
    (tmp_path / "cart.yaml").write_text(body)

    result = CliRunner().invoke(app, ["validate", str(tmp_path), "--templates", str(ROOT / "templates")])

    assert result.exit_code == 1
    assert "cart_whatsapp: steps.reminder: cart_reminder needs parameter(s) cart_url" in result.output
