"""Shared fixtures: fake AWS credentials everywhere, a virtual clock, in-memory and moto deployments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nudge.clocks import VirtualClock
from nudge.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# No test may reach real AWS: fake credentials and a fixed region before any client exists.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",  # tests that check EMF turn it back on
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        work_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/nudge-work",
        work_queue_arn="arn:aws:sqs:us-east-1:123456789012:nudge-work",
        scheduler_role_arn="arn:aws:iam::123456789012:role/nudge-scheduler",
        from_address="hello@shop.example",
        flows_dir=ROOT / "flows",
        templates_dir=ROOT / "templates",
        signing_key="test-signing-key",
        unsubscribe_key="test-unsubscribe-key",
        unsubscribe_base_url="https://api.shop.example/v1/unsubscribe",
        unsubscribe_mailto="unsubscribe@shop.example",
        postal_address="Linen & Clay, 12 Harbour Street, Portland, ME 04101, USA",
    )


@pytest.fixture
def moto_stack(clock: VirtualClock) -> Iterator[object]:
    from nudge.local.moto_stack import start_moto_stack

    stack = start_moto_stack(clock)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> object:
    """A Store under the contract (tests/contract): the in-memory twin, or the DynamoDB adapter on moto."""
    if request.param == "memory":
        from nudge.adapters.memory import MemoryStore

        return MemoryStore()
    return request.getfixturevalue("moto_stack").container.store
