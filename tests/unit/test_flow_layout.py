"""The layered layout of flow diagrams: layers top-down, branches side by side, long edges beside boxes, loops."""

from __future__ import annotations

from nudge.flow_layout import LANE, Layout, layout

BOX = (100.0, 40.0)


def draw(edges: dict[str, list[tuple[str, str]]]) -> Layout:
    nodes = set(edges) | {target for targets in edges.values() for target, _ in targets}
    return layout("root", edges, dict.fromkeys(nodes, BOX))


def test_a_chain_stacks_down_one_column() -> None:
    drawn = draw({"root": [("a", "")], "a": [("b", "")]})

    root, a, b = (drawn.nodes[n] for n in ("root", "a", "b"))
    assert root.y < a.y < b.y
    assert root.centre_x == a.centre_x == b.centre_x
    assert [r.path for r in drawn.routes][0].startswith(f"M{root.centre_x:g},{root.bottom:g} C")


def test_a_branch_puts_yes_left_of_no_on_one_layer_and_rejoins_below() -> None:
    drawn = draw(
        {"root": [("if", "")], "if": [("then", "yes"), ("else", "no")], "then": [("end", "")], "else": [("end", "")]}
    )

    yes, no, end = drawn.nodes["then"], drawn.nodes["else"], drawn.nodes["end"]
    assert yes.y == no.y and yes.right < no.x
    assert end.y > yes.bottom
    assert end.centre_x == drawn.nodes["if"].centre_x
    labels = {(r.source, r.target): r.label for r in drawn.routes}
    assert labels[("if", "then")] == "yes" and labels[("if", "else")] == "no"


def test_an_edge_that_skips_a_layer_runs_beside_the_box_in_between() -> None:
    # if -> skip (yes) is one layer long by the shortest path but two by the longest: `detour` leads to it too.
    drawn = draw({"root": [("if", "")], "if": [("skip", "yes"), ("detour", "no")], "detour": [("skip", "")]})

    detour, skip = drawn.nodes["detour"], drawn.nodes["skip"]
    assert skip.y > detour.bottom  # the longest path decides the layer
    [route] = [r for r in drawn.routes if (r.source, r.target) == ("if", "skip")]
    lane_x = float(route.path.split(" L")[1].split(",")[0])  # the straight run through the crossed layer
    assert lane_x + LANE / 2 <= detour.x  # yes is left of no, and clear of the detour box


def test_a_loop_goes_back_up_the_right_hand_side() -> None:
    drawn = draw({"root": [("wait", "")], "wait": [("check", "")], "check": [("wait", "again"), ("done", "no")]})

    [back] = [r for r in drawn.routes if r.back]
    assert (back.source, back.target, back.label) == ("check", "wait", "again")
    check, wait = drawn.nodes["check"], drawn.nodes["wait"]
    start, across, up, into = back.path.split(" ")
    assert start.startswith(f"M{check.right:g},") and into == f"H{wait.right:g}"
    assert float(across[1:]) > max(n.right for n in drawn.nodes.values())  # right of every box
    assert float(up[1:]) < check.y  # up to the wait
    assert drawn.width > float(across[1:])
    assert drawn.nodes["done"].y > check.y  # the loop pushed nothing up


def test_a_step_that_loops_to_itself_still_shows_as_a_loop() -> None:
    drawn = draw({"root": [("poll", "")], "poll": [("poll", "again")]})

    [loop] = [r for r in drawn.routes if r.back]
    start, _, up, _ = loop.path.split(" ")
    assert float(up[1:]) < float(start.split(",")[1])  # leaves lower than it comes back in
