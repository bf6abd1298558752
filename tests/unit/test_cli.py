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
