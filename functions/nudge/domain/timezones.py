"""A contact's time zone: from the profile, else the phone number, else the address, else the default.

A phone number gives a zone when libphonenumber's prefix data names exactly one for it: the whole country
for single-zone countries, the area code for multi-zone ones (+1 415 is America/Los_Angeles, +1 212
America/New_York, +61 8 Australia/Perth). A prefix that spans zones (toll-free, mobile ranges in some
countries) names several and falls through, as does an address in a multi-zone country: a wrong guess
would be worse than the account default.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nudge.domain.model import Contact

# ISO 3166 alpha-2 -> the country's single IANA zone.
_COUNTRY_ZONES = {
    "AT": "Europe/Vienna",
    "BE": "Europe/Brussels",
    "CH": "Europe/Zurich",
    "CZ": "Europe/Prague",
    "DE": "Europe/Berlin",
    "DK": "Europe/Copenhagen",
    "FI": "Europe/Helsinki",
    "FR": "Europe/Paris",
    "GB": "Europe/London",
    "GR": "Europe/Athens",
    "HU": "Europe/Budapest",
    "IE": "Europe/Dublin",
    "IN": "Asia/Kolkata",
    "IT": "Europe/Rome",
    "JP": "Asia/Tokyo",
    "KR": "Asia/Seoul",
    "NL": "Europe/Amsterdam",
    "NO": "Europe/Oslo",
    "NZ": "Pacific/Auckland",
    "PL": "Europe/Warsaw",
    "RO": "Europe/Bucharest",
    "SE": "Europe/Stockholm",
    "SG": "Asia/Singapore",
    "ZA": "Africa/Johannesburg",
    "IL": "Asia/Jerusalem",
    "AE": "Asia/Dubai",
    "PH": "Asia/Manila",
    "TH": "Asia/Bangkok",
    "TR": "Europe/Istanbul",
    "AR": "America/Argentina/Buenos_Aires",
    "CO": "America/Bogota",
    "PE": "America/Lima",
    "CN": "Asia/Shanghai",
}
# E.164 calling code -> ISO country, for the single-zone countries above (longest prefix wins).
_CALLING_CODES = {
    "43": "AT",
    "32": "BE",
    "41": "CH",
    "420": "CZ",
    "49": "DE",
    "45": "DK",
    "358": "FI",
    "33": "FR",
    "44": "GB",
    "30": "GR",
    "36": "HU",
    "353": "IE",
    "91": "IN",
    "39": "IT",
    "81": "JP",
    "82": "KR",
    "31": "NL",
    "47": "NO",
    "64": "NZ",
    "48": "PL",
    "40": "RO",
    "46": "SE",
    "65": "SG",
    "27": "ZA",
    "972": "IL",
    "971": "AE",
    "63": "PH",
    "66": "TH",
    "90": "TR",
    "54": "AR",
    "57": "CO",
    "51": "PE",
    "86": "CN",
}


@lru_cache(maxsize=1024)  # a handful of names, asked on every advance
def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def country_of_phone(phone: str | None) -> str | None:
    if not phone or not phone.startswith("+"):
        return None
    digits = phone[1:]
    for length in (3, 2):
        if (country := _CALLING_CODES.get(digits[:length])) is not None:
            return country
    return None


def _country_of_address(contact: Contact) -> str | None:
    props = contact.properties
    address = props.get("address")
    if not isinstance(address, dict):
        address = {}
    code = props.get("country_code") or props.get("country") or address.get("country_code")
    return str(code).upper() if code else None


@lru_cache(maxsize=1 << 16)
def zone_of_phone(phone: str | None) -> str | None:
    """The one IANA zone the number's prefix lies in (its area code for +1 numbers), else None."""
    if not phone or not phone.startswith("+"):
        return None
    # Imported on first use: phonenumbers (~14 ms) and its prefix table (~40 ms) cost at import, which
    # functions that never read a contact's local time (most API calls) should not pay at cold start.
    import phonenumbers
    from phonenumbers import timezone as phone_zones

    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    zones = [zone for zone in phone_zones.time_zones_for_number(number) if zone != phone_zones.UNKNOWN_TIMEZONE]
    return zones[0] if len(zones) == 1 else None


def zone_for(contact: Contact | None, default: str) -> ZoneInfo:
    """The zone to read local times in for this contact."""
    if contact is not None:
        # In order, each looked at only when the ones before gave no zone (asked on every advance).
        if (zone := _zone(contact.timezone)) is not None:
            return zone
        if contact.phone:
            if (zone := _zone(zone_of_phone(contact.phone))) is not None:
                return zone
            if (zone := _zone(_COUNTRY_ZONES.get(country_of_phone(contact.phone) or ""))) is not None:
                return zone
        if (zone := _zone(_COUNTRY_ZONES.get(_country_of_address(contact) or ""))) is not None:
            return zone
    return _zone(default) or ZoneInfo("UTC")
