"""Use case: turn an email step into the message that goes out — template, footer, preheader, links, headers.

One composer for sends (services.runs) and previews (`nudge preview --html`), so what a person checks in a
browser is what a recipient gets.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Callable, Mapping
from dataclasses import field
from datetime import datetime
from email.headerregistry import Address
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from nudge.domain import links
from nudge.domain.flows import EmailStep
from nudge.domain.frozen import dataclass
from nudge.domain.model import Category, Message
from nudge.domain.unsubscribe import make_token
from nudge.names import CONTACT_HEADER, MESSAGE_HEADER
from nudge.ports import OutgoingEmail, PermanentSendError

if TYPE_CHECKING:  # the renderer is handed in; its module (Jinja, the CSS inliner) loads where mail renders
    from nudge.templating import TemplateRenderer


@dataclass(frozen=True, slots=True)
class MailPolicy:
    """What every email carries besides its template: unsubscribe links, the postal address, UTM tags."""

    unsubscribe_base_url: str | None = None  # https://<api>/v1/unsubscribe; the token is appended
    unsubscribe_mailto: str | None = None  # unsubscribe@shop.example, offered as the mailto alternative
    postal_address: str | None = None  # the sender's postal address, in every footer (CAN-SPAM)
    utm: Mapping[str, str] = field(default_factory=dict)  # e.g. utm_source=nudge; campaign/content added


class MissingPostalAddress(PermanentSendError):
    """Marketing email without the sender's postal address: CAN-SPAM forbids it, so nothing is sent."""


def sender(display_name: str, address: str) -> str:
    """`"Display Name" <addr>` as a header value (RFC 2047-encoded by the MIME builder when not ASCII)."""
    if not display_name:
        return address
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=display_name, username=local, domain=domain))


class EmailComposer:
    """Renders an email step for a message: the same result for a send and for a preview."""

    def __init__(
        self,
        *,
        renderer: TemplateRenderer,
        from_address: str,
        policy: MailPolicy,
        unsubscribe_key: Callable[[], str | None],
    ) -> None:
        self._renderer = renderer
        self._from = from_address
        self._policy = policy
        self._unsubscribe_key = unsubscribe_key

    def compose(self, step: EmailStep, message: Message, context: dict[str, Any], now: datetime) -> OutgoingEmail:
        """Render, add footer, preheader and UTM tags, inline the CSS; marketing mail gets RFC 8058 headers."""
        policy = self._policy
        postal_address = policy.postal_address or self._renderer.brand.postal_address or None
        if not self._renderer.renders_bodies:
            return self._recorded(step, message, context, postal_address, now)
        headers = {
            "Message-ID": make_msgid(domain=self._from.rpartition("@")[2] or None),
            # Our own ids survive SES (which replaces Message-ID): its events carry them back, so feedback
            # finds the record before the provider-id index shows it, and reconciles an UNKNOWN send (ADR
            # 0007). Opaque: a hash of run, wake-up and step, and the contact's id.
            MESSAGE_HEADER: message.message_id,
            CONTACT_HEADER: message.contact_id,
        }
        unsubscribe_url = None
        if (checked := self._marketing_checks(message, postal_address)) is not None:
            key, base_url = checked
            token = make_token(key, message.contact_id)
            # `m` names the message, so an unsubscribe counts against its flow step (the token alone authorizes).
            unsubscribe_url = f"{base_url.rstrip('/')}/{token}?m={quote(message.message_id, safe='')}"
            targets = [f"<{unsubscribe_url}>"]
            if policy.unsubscribe_mailto:
                targets.append(f"<mailto:{policy.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}>")
            headers["List-Unsubscribe"] = ", ".join(targets)
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        context = {**context, "unsubscribe_url": unsubscribe_url, "postal_address": postal_address}
        from nudge.templating import FOOTER_HTML, FOOTER_MARK, FOOTER_TEXT, inline_css

        subject, html, text = self._renderer.email(step.template, step.subject, context)
        if FOOTER_MARK not in html:
            # A layout of the shop's own without the footer: append it (the MJML layouts carry it in the card).
            html = _before_body_end(html, self._renderer.render_file(FOOTER_HTML, context))
        text = f"{text}\n\n{self._renderer.render_file(FOOTER_TEXT, context)}".rstrip()
        if step.preheader:
            preheader = self._renderer.render_string(step.preheader, context, label=f"{step.template} preheader")
            html = _after_body_start(html, _PREHEADER.format(html_lib.escape(preheader)))
        if policy.utm:
            params = {**policy.utm, "utm_campaign": message.flow_id, "utm_content": message.step_id, **(step.utm or {})}
            keep = _is_unsubscribe_link(policy.unsubscribe_base_url)
            html = links.tag_html(html, params, keep=keep)
            text = links.tag_text(text, params, keep=keep)
        return OutgoingEmail(
            to=message.recipient or "",
            from_address=sender(self._renderer.brand.sender_name, self._from),
            subject=subject,
            html=inline_css(html),
            text=text,
            date=now,
            headers=headers,
            tags={"flow": message.flow_id, "step": message.step_id, "category": message.category.value},
        )

    def _marketing_checks(self, message: Message, postal_address: str | None) -> tuple[str, str] | None:
        """Marketing email's preconditions, or the error that fails the send: its unsubscribe key and base URL
        (None: not marketing)."""
        if message.category is not Category.MARKETING:
            return None
        if not postal_address:
            # Fails closed everywhere, not only in prod: a footer without an address is never sent.
            raise MissingPostalAddress(
                "marketing email needs the sender's postal address (brand.yaml postal_address or "
                "the postalAddress deploy setting)"
            )
        key, base_url = self._unsubscribe_key(), self._policy.unsubscribe_base_url
        if not key or not base_url:
            raise PermanentSendError("marketing email needs an unsubscribe link: no unsubscribe key or base URL")
        return key, base_url

    def _recorded(
        self, step: EmailStep, message: Message, context: dict[str, Any], postal_address: str | None, now: datetime
    ) -> OutgoingEmail:
        """For a renderer that renders no template file (the backtest's): the checks that can fail a send
        (postal address, unsubscribe key and link), then only what can fail or lands in the message record
        (subject, preheader); no headers, unsubscribe token, body, footer, UTM tags or CSS inlining."""
        unsubscribe_url = None
        if (checked := self._marketing_checks(message, postal_address)) is not None:
            unsubscribe_url = f"{checked[1].rstrip('/')}/(token)"  # no token is made: the link is never mailed
        context = {**context, "unsubscribe_url": unsubscribe_url, "postal_address": postal_address}
        subject = self._renderer.render_string(step.subject, context, label=f"{step.template} subject")
        if step.preheader:
            self._renderer.render_string(step.preheader, context, label=f"{step.template} preheader")
        return OutgoingEmail(
            to=message.recipient or "",
            from_address=self._from,
            subject=subject,
            html="",
            text="",
            date=now,
            headers={},
            tags={"flow": message.flow_id, "step": message.step_id, "category": message.category.value},
        )


# Shown as the inbox preview line, never in the body: hidden in every client that honours CSS.
_PREHEADER = (
    '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;'
    'overflow:hidden;mso-hide:all;">{}</div>'
)


def _is_unsubscribe_link(base_url: str | None) -> Callable[[str], bool]:
    # Unsubscribe links stay untagged: their token is the whole authorization, and analytics needs none.
    return lambda url: bool(base_url) and url.startswith(str(base_url))


def _before_body_end(markup: str, fragment: str) -> str:
    at = markup.lower().rfind("</body>")
    return markup + fragment if at < 0 else markup[:at] + fragment + markup[at:]


def _after_body_start(markup: str, fragment: str) -> str:
    start = markup.lower().find("<body")
    end = markup.find(">", start) if start >= 0 else -1
    return fragment + markup if end < 0 else markup[: end + 1] + fragment + markup[end + 1 :]
