"""`nudge keys create|revoke` against the keys table (on moto): shown once, stored hashed, revocable."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from nudge.cli.main import app
from nudge.local.moto_stack import MotoStack
from nudge.ports import KeyKind
from nudge.services.keys import hash_key

runner = CliRunner()


def test_a_created_key_authenticates_until_revoked(moto_stack: MotoStack) -> None:
    created = runner.invoke(app, ["keys", "create", "--name", "backend"])
    assert created.exit_code == 0, created.output
    plain = re.search(r"nudge_sk_[A-Za-z0-9_-]{43}", created.output)
    assert plain is not None
    keys = moto_stack.container.keys

    assert keys.authenticate(plain.group(0), KeyKind.SECRET) is not None
    # Only the hash is stored: the table holds no item containing the key itself
    stored = [item.attribute_values for item in keys._keys._model.scan()]  # type: ignore[attr-defined]
    assert plain.group(0) not in repr(stored)
    assert hash_key(plain.group(0)) in created.output

    revoked = runner.invoke(app, ["keys", "revoke", plain.group(0)])

    assert revoked.exit_code == 0, revoked.output
    assert keys.authenticate(plain.group(0), KeyKind.SECRET) is None


def test_a_publishable_key_keeps_its_origins_and_opt_in(moto_stack: MotoStack) -> None:
    created = runner.invoke(
        app,
        ["keys", "create", "--name", "footer", "--publishable", "--origin", "https://shop.example/", "--double-opt-in"],
    )
    plain = re.search(r"nudge_pk_\S+", created.output)
    assert plain is not None

    record = moto_stack.container.keys.authenticate(plain.group(0), KeyKind.PUBLISHABLE)

    assert record is not None
    assert (record.origins, record.double_opt_in) == (("https://shop.example",), True)


def test_revoking_an_unknown_key_fails(moto_stack: MotoStack) -> None:
    result = runner.invoke(app, ["keys", "revoke", "0" * 64])

    assert result.exit_code == 1
    assert "no such key" in result.output
