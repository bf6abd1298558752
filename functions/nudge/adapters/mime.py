"""Builds the raw MIME message nudge sends: multipart/alternative, text first, then HTML."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from nudge.domain.bounds import header_safe
from nudge.ports import OutgoingEmail

# RFC 5322 allows 998 characters a line. Python folds longer "words" at 78 into RFC 2047 encoded-words,
# which turns a List-Unsubscribe URL into =?utf-8?q?...?= that no mailbox provider would parse.
# cte_type="7bit": a non-ASCII body goes out quoted-printable or base64, never as 8bit, which SES's
# open/click tracking may mangle when it rewrites the HTML.
_POLICY = SMTP.clone(max_line_length=998, cte_type="7bit")


def build_mime(email: OutgoingEmail) -> bytes:
    """RFC 5322 bytes for SES SendEmail Raw content; headers from `email.headers` are added verbatim."""
    message = EmailMessage(policy=_POLICY)
    # A line break in a header value would let its text start headers of its own (and the email package
    # refuses it, which would fail the send for good): control characters become spaces, whatever stored
    # name or template put them there.
    message["From"] = header_safe(email.from_address)
    message["To"] = header_safe(email.to)
    message["Subject"] = header_safe(email.subject)
    message["Date"] = format_datetime(email.date)
    for name, value in email.headers.items():
        message[name] = header_safe(value)
    message.set_content(email.text, subtype="plain", charset="utf-8")
    message.add_alternative(email.html, subtype="html", charset="utf-8")
    return message.as_bytes()
