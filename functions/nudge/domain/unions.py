"""The kinds of a discriminated union, read off the union itself: the one list of step, trigger and
condition kinds (ADR 0020), so a new member cannot be missing from a hand-written copy."""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

from pydantic import Tag


def union_tags(annotated: Any) -> tuple[str, ...]:
    """Each member's tag, in order: its pydantic `Tag`, else the value of its `type` literal."""
    union = get_args(annotated)[0] if get_origin(annotated) is Annotated else annotated
    tags: list[str] = []
    for member in get_args(union):
        if get_origin(member) is Annotated:
            _, *metadata = get_args(member)
            tags.append(next(item.tag for item in metadata if isinstance(item, Tag)))
        else:
            (literal,) = get_args(member.model_fields["type"].annotation)
            tags.append(str(literal))
    return tuple(tags)
