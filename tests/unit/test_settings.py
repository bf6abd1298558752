"""Settings from the environment: the deliverability variables infra/ sets on each function."""

from __future__ import annotations

import pytest

from nudge import names
from nudge.settings import Settings, SettingsError

REQUIRED = {
    names.ENV_WORK_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/nudge-work",
    names.ENV_WORK_QUEUE_ARN: "arn:aws:sqs:us-east-1:123456789012:nudge-work",
    names.ENV_SCHEDULER_ROLE_ARN: "arn:aws:iam::123456789012:role/nudge-scheduler",
    names.ENV_FROM_ADDRESS: "hello@shop.example",
}


def test_deliverability_settings_default_to_safe_values() -> None:
    settings = Settings.from_env(REQUIRED)

    assert settings.ses_max_send_rate == 14
    assert settings.event_retention_days == 90
    assert settings.utm_params == {"utm_source": "nudge", "utm_medium": "email"}
    assert (settings.suppressions_table, settings.counters_table) == ("nudge-suppressions", "nudge-counters")


def test_deliverability_settings_are_read_from_their_variables() -> None:
    settings = Settings.from_env(
        {
            **REQUIRED,
            names.ENV_UNSUBSCRIBE_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:u",
            names.ENV_UNSUBSCRIBE_BASE_URL: "https://api.example.com/prod/v1/unsubscribe",
            names.ENV_UNSUBSCRIBE_MAILTO: "unsubscribe@shop.example",
            names.ENV_POSTAL_ADDRESS: "1 Main St, Springfield",
            names.ENV_UTM_PARAMS: "utm_source=shop&utm_medium=lifecycle",
            names.ENV_SES_MAX_SEND_RATE: "50",
            names.ENV_EVENT_RETENTION_DAYS: "30",
        }
    )

    assert settings.utm_params == {"utm_source": "shop", "utm_medium": "lifecycle"}
    assert (settings.ses_max_send_rate, settings.event_retention_days) == (50, 30)
    assert settings.unsubscribe_base_url == "https://api.example.com/prod/v1/unsubscribe"


def test_an_empty_utm_variable_turns_tagging_off() -> None:
    assert Settings.from_env({**REQUIRED, names.ENV_UTM_PARAMS: ""}).utm_params == {}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (names.ENV_UNSUBSCRIBE_BASE_URL, "http://api.example.com/v1/unsubscribe"),  # RFC 8058 needs https
        (names.ENV_SES_MAX_SEND_RATE, "0"),
        (names.ENV_UNSUBSCRIBE_MAILTO, "mailto:unsubscribe@shop.example"),
        (names.ENV_WHATSAPP_PHONE_NUMBER_ID, "+14155550100"),  # the service's id, not the number itself
        (names.ENV_WHATSAPP_META_API_VERSION, "20"),
    ],
)
def test_bad_deliverability_settings_are_named(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({**REQUIRED, variable: value})


def test_a_secret_is_fetched_again_only_after_five_minutes_of_wall_time() -> None:
    from nudge.adapters.secrets import SecretReader

    class Client:
        calls = 0

        def get_secret_value(self, SecretId: str) -> dict[str, str]:  # noqa: N803 (boto3's name)
            Client.calls += 1
            return {"SecretString": f"key-{Client.calls}"}

    wall = [1000.0]
    reader = SecretReader(Client(), "arn:secret", monotonic=lambda: wall[0])

    first = [reader.value() for _ in range(3)]
    wall[0] += 300
    still = reader.value()
    wall[0] += 1
    rotated = reader.value()

    assert (first, still, rotated, Client.calls) == (["key-1"] * 3, "key-1", "key-2", 2)


def test_whatsapp_is_off_until_its_phone_number_id_is_set() -> None:
    assert Settings.from_env(REQUIRED).whatsapp_phone_number_id is None
    number_id = "phone-number-id-0123456789abcdef0123456789abcdef"
    settings = Settings.from_env({**REQUIRED, names.ENV_WHATSAPP_PHONE_NUMBER_ID: number_id})
    assert (settings.whatsapp_phone_number_id, settings.whatsapp_meta_api_version) == (number_id, "v20.0")


def test_every_missing_or_bad_variable_is_named_in_one_error() -> None:
    environ = {names.ENV_FROM_ADDRESS: "hello@shop.example", names.ENV_EVENT_RETENTION_DAYS: "a week"}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(environ)
    message = str(raised.value)
    for variable in (names.ENV_WORK_QUEUE_URL, names.ENV_WORK_QUEUE_ARN, names.ENV_SCHEDULER_ROLE_ARN):
        assert f"{variable}: Field required" in message
    assert f"{names.ENV_EVENT_RETENTION_DAYS}: Input should be a valid integer" in message
    assert names.ENV_FROM_ADDRESS not in message


def test_settings_are_frozen_and_a_changed_copy_is_checked_again() -> None:
    import dataclasses

    settings = Settings.from_env(REQUIRED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.ses_max_send_rate = 2  # type: ignore[misc]
    assert settings.model_copy(update={"ses_max_send_rate": 2}).ses_max_send_rate == 2
    with pytest.raises(ValueError, match="ses_max_send_rate"):
        settings.model_copy(update={"ses_max_send_rate": 0})
