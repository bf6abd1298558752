"""The composition root's stand-ins for adapters made at their first use (`wiring._on_first_use`)."""

from __future__ import annotations

from typing import Any

from nudge.wiring import _on_first_use


class _Mailer:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.note = "first"

    def send(self, text: str) -> int:
        self.sent.append(text)
        return len(self.sent)


def test_a_stand_in_makes_its_object_once_at_first_use_and_forwards_to_it() -> None:
    made: list[_Mailer] = []

    def make() -> _Mailer:
        made.append(_Mailer())
        return made[-1]

    mailer = _on_first_use(make)
    assert made == []  # nothing made until used

    assert (mailer.send("a"), mailer.send("b")) == (1, 2)
    assert len(made) == 1 and made[0].sent == ["a", "b"]


def test_a_stand_in_reads_data_afresh_and_forwards_a_function_set_in_place_of_a_method() -> None:
    real: Any = _Mailer()
    real.send = lambda text: -1  # what monkeypatch does to an adapter: a plain function on the object
    mailer = _on_first_use(lambda: real)

    assert mailer.send("a") == -1
    real.send = lambda text: -2
    assert mailer.send("a") == -2  # kept only when it is the object's own bound method
    assert mailer.note == "first"
    real.note = "second"
    assert mailer.note == "second"
