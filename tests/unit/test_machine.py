"""`nudge bench`'s first line: which interpreter, built how, on how many cores (its figures depend on it)."""

from __future__ import annotations

import platform
from pathlib import Path

from nudge.local import machine


def test_libpython_is_shared_where_the_process_maps_the_library(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "7f0000000000-7f0000001000 r-xp 00000000 08:01 42 /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0\n"
    )
    assert machine.libpython(maps) == "shared"


def test_libpython_is_linked_in_where_no_library_is_mapped(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("55d000000000-55d000001000 r-xp 00000000 08:01 7 /usr/bin/python3.11\n")
    assert machine.libpython(maps) == "linked in"


def test_libpython_is_unknown_without_proc(tmp_path: Path) -> None:
    assert machine.libpython(tmp_path / "absent") is None


def test_the_line_names_the_interpreter_its_build_and_the_cores() -> None:
    line = machine.interpreter_line()

    assert line.startswith(f"on {platform.python_implementation()} {platform.python_version()} (")
    assert platform.python_compiler() in line
    assert "  " not in line  # C's __DATE__ pads a one-digit day with a space
