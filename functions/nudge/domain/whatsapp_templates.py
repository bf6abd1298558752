"""flows/_whatsapp.yaml: the templates the shop's WhatsApp Business Account has approved (docs/whatsapp.md).

Apart from nudge.domain.whatsapp (the window, the inbound notifications), so the inbound functions read
those without importing pydantic (ADR 0020, Decision 9).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TemplateDeclaration(BaseModel):
    """A template as Meta approved it: its languages, its category and the body parameters it takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    languages: list[str] = Field(min_length=1, description="The approved languages, e.g. [en_US, de].")
    category: Literal["marketing", "utility", "authentication"] = Field(description="Meta's template category.")
    parameters: list[str] = Field(
        default_factory=list, description="Body parameters: names ({{first_name}}) or positions (1, 2, ...)."
    )


class WhatsAppTemplates(BaseModel):
    """flows/_whatsapp.yaml: the templates the shop's WhatsApp Business Account has approved."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    templates: dict[str, TemplateDeclaration] = Field(default_factory=dict)
