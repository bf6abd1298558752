"""flows/_whatsapp.yaml: the templates the shop's WhatsApp Business Account has approved (docs/whatsapp.md).

Apart from nudge.domain.whatsapp (the window, the inbound notifications), so the inbound functions read
those without reading this file's records (ADR 0020, Decisions 9 and 11).
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Annotated, Literal

from nudge.domain.records import record

if TYPE_CHECKING:
    from pydantic import Field


@record
class TemplateDeclaration:
    """A template as Meta approved it: its languages, its category and the body parameters it takes."""

    languages: Annotated[list[str], Field(min_length=1, description="The approved languages, e.g. [en_US, de].")]
    category: Annotated[
        Literal["marketing", "utility", "authentication"], Field(description="Meta's template category.")
    ]
    parameters: Annotated[
        list[str], Field(description="Body parameters: names ({{first_name}}) or positions (1, 2, ...).")
    ] = field(default_factory=list)


@record
class WhatsAppTemplates:
    """flows/_whatsapp.yaml: the templates the shop's WhatsApp Business Account has approved."""

    templates: dict[str, TemplateDeclaration] = field(default_factory=dict)
