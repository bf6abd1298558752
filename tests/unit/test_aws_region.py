"""Without boto3 (ADR 0020), build_aws still picks the region boto3's session picked, then AWS_REGION."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from nudge import wiring


@pytest.mark.parametrize(
    ("default_region", "region", "profile_region"),
    [
        ("eu-west-1", "us-east-2", None),  # AWS_DEFAULT_REGION first, as botocore reads it
        (None, "us-east-2", "ap-southeast-2"),  # then the profile's region
        (None, "us-east-2", None),  # then AWS_REGION (Lambda sets both)
        (None, None, None),
    ],
)
def test_the_region_is_the_one_a_boto3_session_chose(
    default_region: str | None,
    region: str | None,
    profile_region: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\n" + (f"region = {profile_region}\n" if profile_region else ""), encoding="utf-8")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in (("AWS_DEFAULT_REGION", default_region), ("AWS_REGION", region)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)

    expected = boto3.Session().region_name or region or "us-east-1"
    assert (wiring._configured_region() or region or "us-east-1") == expected
    assert expected == (default_region or profile_region or region or "us-east-1")
