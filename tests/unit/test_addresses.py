"""Email addresses as nudge normalizes them (`nudge.domain.addresses`)."""

from __future__ import annotations

import pytest

from nudge.domain.addresses import InvalidEmail, email_or_none, normalize_email


def test_an_address_with_a_display_name_white_space_or_a_control_character_is_refused() -> None:
    """One search refuses what the rule names character by character: brackets, quotes, separators, white
    space (all of str.isspace's, the widest of them U+3000) and control characters; nothing else."""
    refused = set('<>()",;[]\\')
    for code in range(0x3001):
        char = chr(code)
        try:
            normalize_email(f"ann{char}x@example.com")
            why = ""
        except InvalidEmail as exc:
            why = str(exc)
        assert ("bare address" in why) is (char in refused or char.isspace() or code < 32), hex(code)
    with pytest.raises(InvalidEmail, match="bare address"):
        normalize_email("Ann <ann@example.com>")
    with pytest.raises(InvalidEmail, match="bare address"):
        normalize_email("ann\u2003@example.com")  # an em space


def test_an_address_is_stored_lower_cased_with_its_domain_in_ascii() -> None:
    assert normalize_email("  Ann.Lee@Example.COM ") == "ann.lee@example.com"
    assert normalize_email("ann@bücher.example") == "ann@xn--bcher-kva.example"
    assert email_or_none("not an address") is None and email_or_none(42) is None
