"""templates/brand.yaml, the brand kit every template reads as `brand` (see nudge.domain.brand).

Apart from the renderer, so a function that needs only the shop's name (the inbound-SMS HELP reply)
reads it without importing Jinja or the CSS inliner (ADR 0020).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from nudge.domain.brand import Brand

BRAND_FILE = "brand.yaml"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML was built with it


class TemplateRenderError(Exception):
    """A template is missing or failed to render; the message names the template and the cause."""


def load_brand(templates_dir: Path) -> Brand:
    """templates/brand.yaml as a Brand; TemplateRenderError naming each problem."""
    path = templates_dir / BRAND_FILE
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506  (a safe loader)
        return Brand.model_validate(data)
    except FileNotFoundError:
        raise TemplateRenderError(f"{path}: no brand kit (shop name, URLs, colours); copy the shipped one") from None
    except yaml.YAMLError as exc:
        raise TemplateRenderError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise TemplateRenderError(f"{path}: {problems}") from exc
