"""templates/brand.yaml, the brand kit every template reads as `brand` (see nudge.domain.brand).

Apart from the renderer, so a function that needs only the shop's name (the inbound-SMS HELP reply)
reads it without importing Jinja or the CSS inliner (ADR 0020).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nudge.domain.brand import Brand

BRAND_FILE = "brand.yaml"


class TemplateRenderError(Exception):
    """A template is missing or failed to render; the message names the template and the cause."""


def load_brand(templates_dir: Path) -> Brand:
    """templates/brand.yaml as a Brand; TemplateRenderError naming each problem."""
    # PyYAML and pydantic's validation when the kit is read, not when the module is (the run service
    # imports this module for TemplateRenderError alone; ADR 0020, Decision 9).
    import yaml

    from nudge.domain.brand import Brand
    from nudge.domain.validation import ValidationError, validate

    path = templates_dir / BRAND_FILE
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML was built with it
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506  (a safe loader)
        return validate(Brand, data)
    except FileNotFoundError:
        raise TemplateRenderError(f"{path}: no brand kit (shop name, URLs, colours); copy the shipped one") from None
    except yaml.YAMLError as exc:
        raise TemplateRenderError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise TemplateRenderError(f"{path}: {problems}") from exc
