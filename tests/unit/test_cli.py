"""The `nudge validate` command: passes the shipped flows, names every broken template."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nudge.cli.main import app
from tests.conftest import ROOT

runner = CliRunner()


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_validate_passes_the_shipped_flows() -> None:
    result = runner.invoke(app, ["validate"])

    assert result.exit_code == 0, result.output
    assert "✓ abandoned_cart: 7 steps" in result.output


def test_validate_names_a_missing_template_and_fails(tmp_path: Path) -> None:
    flow = (ROOT / "flows" / "welcome.yaml").read_text().replace("welcome/story", "welcome/missing")
    (tmp_path / "welcome.yaml").write_text(flow)

    result = runner.invoke(app, ["validate", str(tmp_path)])

    assert result.exit_code == 1
    assert "steps.story_email: welcome/missing.html.j2: TemplateNotFound" in result.output


def test_validate_fails_on_a_subject_that_does_not_compile(tmp_path: Path) -> None:
    flow = (ROOT / "flows" / "welcome.yaml").read_text().replace('"Why we started"', '"Why {{ we"')
    (tmp_path / "welcome.yaml").write_text(flow)

    result = runner.invoke(app, ["validate", str(tmp_path)])

    assert result.exit_code == 1
    assert "steps.story_email.subject: TemplateSyntaxError" in result.output


def test_validate_fails_when_there_is_nothing_to_validate(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path)])

    assert result.exit_code == 1
    assert "no flow files" in result.output


def test_validate_fails_on_a_template_that_uses_an_unknown_variable(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    for source in (path for path in (ROOT / "templates").rglob("*") if path.is_file()):
        target = templates / source.relative_to(ROOT / "templates")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    story = templates / "welcome" / "story.txt.j2"
    story.write_text(story.read_text() + "\n{{ cupon_code }}\n")  # a typo of a variable nobody provides
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "welcome.yaml").write_text((ROOT / "flows" / "welcome.yaml").read_text())

    result = runner.invoke(app, ["validate", str(flows), "--templates", str(templates)])

    assert result.exit_code == 1
    assert "steps.story_email: welcome/story.txt.j2: unknown variable(s) cupon_code" in result.output


def test_validate_fails_on_a_subject_with_an_unknown_variable(tmp_path: Path) -> None:
    flow = (ROOT / "flows" / "welcome.yaml").read_text().replace('"Why we started"', '"Why {{ shop.name }}"')
    (tmp_path / "welcome.yaml").write_text(flow)

    result = runner.invoke(app, ["validate", str(tmp_path)])

    assert result.exit_code == 1
    assert "steps.story_email.subject: unknown variable(s) shop" in result.output


def _library_copy(tmp_path: Path) -> tuple[Path, Path]:
    templates = tmp_path / "templates"
    for source in (path for path in (ROOT / "templates").rglob("*") if path.is_file()):
        target = templates / source.relative_to(ROOT / "templates")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "welcome.yaml").write_text((ROOT / "flows" / "welcome.yaml").read_text())
    return flows, templates


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        ("welcome/story.mjml", 'href="{{ brand.urls.home }}"', 'href="https://shop.example/about"'),
        ("welcome/story.txt.j2", "{{ brand.urls.home }}", "https://shop.example/about"),
        ("layouts/footer.mjml", "{{ link.url }}", "http://instagram.com/shop"),
    ],
)
def test_validate_fails_on_a_template_that_writes_a_shop_url(tmp_path: Path, path: str, old: str, new: str) -> None:
    flows, templates = _library_copy(tmp_path)
    target = templates / path
    assert old in target.read_text()
    target.write_text(target.read_text().replace(old, new))

    result = runner.invoke(app, ["validate", str(flows), "--templates", str(templates)])

    assert result.exit_code == 1
    assert f"steps.story_email: {path}: writes the URL {new.split(chr(34))[-2] if chr(34) in new else new}" in (
        result.output
    )


def test_validate_fails_on_a_marketing_email_without_a_call_to_action(tmp_path: Path) -> None:
    flows, templates = _library_copy(tmp_path)
    story = templates / "welcome" / "story.mjml"
    button = '<mj-button href="{{ brand.urls.home }}">Read our story</mj-button>'
    assert button in story.read_text()
    story.write_text(story.read_text().replace(button, ""))

    result = runner.invoke(app, ["validate", str(flows), "--templates", str(templates)])

    assert result.exit_code == 1
    assert "steps.story_email: welcome/story: a marketing email needs a call to action" in result.output
    assert "welcome_email" not in result.output.split("call to action")[0].splitlines()[-1]


def test_whatsapp_check_templates_reports_what_the_account_does_not_hold(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("socialmessaging", region_name="us-east-1")
    stub = Stubber(client)
    listed = {"templateName": "cart_reminder", "templateLanguage": "en_US", "templateStatus": "REJECTED"}
    stub.add_response(
        "list_whatsapp_message_templates",
        {"templates": [listed | {"templateCategory": "MARKETING"}]},
        {"id": "waba-0123456789abcdef", "maxResults": 100},
    )
    stub.activate()
    monkeypatch.setattr(boto3, "client", lambda service, **_: client)
    (tmp_path / "_whatsapp.yaml").write_text(
        "templates:\n  cart_reminder: {languages: [en_US], category: marketing, parameters: [first_name]}\n"
    )

    result = runner.invoke(
        app, ["whatsapp", "check-templates", "--waba-id", "waba-0123456789abcdef", "--flows-dir", str(tmp_path)]
    )

    assert result.exit_code == 1
    assert "cart_reminder/en_US: declared, but its status is REJECTED" in result.output
