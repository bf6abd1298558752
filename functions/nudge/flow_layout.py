"""A layered drawing of a small directed graph (a flow) as geometry: boxes, SVG path data, label spots.

A simplified Sugiyama layout, enough for flows, which are chains with a few branches and splits:

1. edges that close a loop (found by depth-first search from the root) are set aside as back edges;
2. every node goes on the layer of its longest path from the root, so a step never sits above a step
   that leads to it (a breadth-first depth would put a branch's rejoining step beside its other arm);
3. an edge spanning several layers gets a narrow placeholder on each layer it crosses, so it runs
   beside the boxes in between rather than through them;
4. one top-down pass orders each layer by where the nodes' parents are (ties: the parent's edge order,
   so a branch's `yes` is left of its `no` and split variants keep their file order);
5. each layer is centred; back edges run up the right-hand side.

No SVG here: the HTML report turns this into markup, and tests can check the geometry directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nudge.domain.frozen import dataclass

H_GAP = 26.0  # between boxes of one layer
V_GAP = 44.0  # between layers: room for an edge label
MARGIN = 10.0
LANE = 12.0  # the width a long edge takes on a layer it crosses
BACK_GAP = 16.0  # between the vertical runs of back edges on the right
BACK_LABEL_ROOM = 70.0

OutEdges = Mapping[str, Sequence[tuple[str, str]]]  # node -> [(target, label)], in the order they are drawn


@dataclass(frozen=True, slots=True)
class Placed:
    """A box: top-left corner and size."""

    id: str
    x: float
    y: float
    width: float
    height: float

    @property
    def centre_x(self) -> float:
        return self.x + self.width / 2

    @property
    def centre_y(self) -> float:
        return self.y + self.height / 2

    @property
    def bottom(self) -> float:
        return self.y + self.height

    @property
    def right(self) -> float:
        return self.x + self.width


@dataclass(frozen=True, slots=True)
class Route:
    """One edge as SVG path data, with the spot where its label goes."""

    source: str
    target: str
    label: str
    path: str
    label_x: float
    label_y: float
    back: bool


@dataclass(frozen=True, slots=True)
class Layout:
    nodes: dict[str, Placed]
    routes: list[Route]
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class _Edge:
    source: str
    target: str
    label: str
    rank: int  # its position among the source's edges


def layout(root: str, out_edges: OutEdges, sizes: Mapping[str, tuple[float, float]]) -> Layout:
    """Place every node reachable from `root` (sizes: width, height) and route every edge between them."""
    edges = [
        _Edge(source, target, label, rank)
        for source, targets in out_edges.items()
        for rank, (target, label) in enumerate(targets)
    ]
    back = _back_edges(root, edges)
    forward = [e for e in edges if e not in back]
    layer_of = _longest_path_layers(root, forward)
    edges = [e for e in edges if e.source in layer_of and e.target in layer_of]
    chains, lanes = _chains(forward, layer_of)
    layers = _ordered_layers(root, {**layer_of, **lanes}, chains)
    boxes = _place(layers, {**sizes, **dict.fromkeys(lanes, (LANE, 0.0))})
    content_width = max((b.right for b in boxes.values()), default=0.0) + MARGIN
    routes = [_forward_route(e, [boxes[n] for n in chains[e]]) for e in edges if e not in back]
    back_runs = [e for e in edges if e in back]
    routes += [
        _back_route(e, boxes[e.source], boxes[e.target], content_width + BACK_GAP * i) for i, e in enumerate(back_runs)
    ]
    width = content_width + BACK_GAP * len(back_runs) + (BACK_LABEL_ROOM if any(e.label for e in back_runs) else 0)
    height = max((b.bottom for b in boxes.values()), default=0.0) + MARGIN
    real = {node: boxes[node] for layer in layers for node in layer if node not in lanes}
    return Layout(nodes=real, routes=routes, width=width, height=height)


def _back_edges(root: str, edges: list[_Edge]) -> set[_Edge]:
    """Edges that lead back to a node still on the depth-first path: each closes a loop."""
    out: dict[str, list[_Edge]] = {}
    for edge in edges:
        out.setdefault(edge.source, []).append(edge)
    back: set[_Edge] = set()
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> None:
        on_path.add(node)
        for edge in out.get(node, []):
            if edge.target in on_path:
                back.add(edge)
            elif edge.target not in done:
                visit(edge.target)
        on_path.discard(node)
        done.add(node)

    visit(root)
    return back


def _longest_path_layers(root: str, forward: list[_Edge]) -> dict[str, int]:
    """Layer = length of the longest forward path from the root (the graph without back edges is acyclic)."""
    out: dict[str, list[str]] = {}
    for edge in forward:
        out.setdefault(edge.source, []).append(edge.target)
    postorder: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> None:
        seen.add(node)
        for target in out.get(node, []):
            if target not in seen:
                visit(target)
        postorder.append(node)

    visit(root)
    layer = dict.fromkeys(postorder, 0)
    for node in reversed(postorder):  # a topological order
        for target in out.get(node, []):
            layer[target] = max(layer[target], layer[node] + 1)
    return layer


def _chains(forward: list[_Edge], layer_of: dict[str, int]) -> tuple[dict[_Edge, list[str]], dict[str, int]]:
    """Each forward edge as the nodes it passes: source, a lane per crossed layer, target; and the lanes."""
    chains: dict[_Edge, list[str]] = {}
    lanes: dict[str, int] = {}
    for index, edge in enumerate(forward):
        if edge.source not in layer_of:
            continue
        crossed = range(layer_of[edge.source] + 1, layer_of[edge.target])
        names = [f"\0lane{index}.{layer}" for layer in crossed]  # \0: no step id can collide
        lanes.update(zip(names, crossed, strict=True))
        chains[edge] = [edge.source, *names, edge.target]
    return chains, lanes


def _ordered_layers(root: str, layer_of: dict[str, int], chains: dict[_Edge, list[str]]) -> list[list[str]]:
    """Nodes and lanes per layer, each layer sorted by its parents' positions, then by the parents' edge order."""
    parents: dict[str, list[tuple[str, int]]] = {}
    for edge, chain in chains.items():
        for hop, (upper, lower) in enumerate(zip(chain, chain[1:], strict=False)):
            parents.setdefault(lower, []).append((upper, edge.rank if hop == 0 else 0))
    members: list[list[str]] = [[] for _ in range(max(layer_of.values()) + 1)]
    for node, depth in layer_of.items():
        members[depth].append(node)
    layers = [[root]]
    for nodes in members[1:]:
        position = {node: i for i, node in enumerate(layers[-1])}

        def key(node: str, position: dict[str, int] = position) -> tuple[float, int]:
            links = [(position[p], rank) for p, rank in parents.get(node, []) if p in position]
            if not links:
                return (float(len(position)), 0)
            return (sum(p for p, _ in links) / len(links), min(rank for _, rank in links))

        layers.append(sorted(nodes, key=key))
    return layers


def _place(layers: list[list[str]], sizes: Mapping[str, tuple[float, float]]) -> dict[str, Placed]:
    """Stack the layers top-down, each as tall as its tallest box and centred; a lane spans its layer's height."""
    widths = [sum(sizes[n][0] for n in layer) + H_GAP * (len(layer) - 1) for layer in layers]
    content = max(widths)
    placed: dict[str, Placed] = {}
    top = MARGIN
    for layer, layer_width in zip(layers, widths, strict=True):
        tall = max(sizes[n][1] for n in layer)
        x = MARGIN + (content - layer_width) / 2
        for node in layer:
            width, height = sizes[node]
            height = height or tall
            placed[node] = Placed(node, x, top + (tall - height) / 2, width, height)
            x += width + H_GAP
        top += tall + V_GAP
    return placed


def _forward_route(edge: _Edge, chain: list[Placed]) -> Route:
    """Bottom centre of the source to top centre of the target: an S-curve per layer gap, straight through lanes."""
    points = [(chain[0].centre_x, chain[0].bottom)]
    for lane in chain[1:-1]:
        points += [(lane.centre_x, lane.y), (lane.centre_x, lane.bottom)]
    points.append((chain[-1].centre_x, chain[-1].y))
    path = [f"M{_xy(*points[0])}"]
    for i in range(0, len(points) - 1, 2):
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        middle = (y0 + y1) / 2
        if i:
            path.append(f"L{_xy(x0, y0)}")
        path.append(f"C{_xy(x0, middle)} {_xy(x1, middle)} {_xy(x1, y1)}")
    (x0, y0), (x1, y1) = points[0], points[1]
    # The curve's midpoint: the label sits on the first gap, nearest the box that chose this way.
    return Route(edge.source, edge.target, edge.label, " ".join(path), (x0 + x1) / 2, (y0 + y1) / 2, back=False)


def _back_route(edge: _Edge, source: Placed, target: Placed, run_x: float) -> Route:
    """Out of the source's right side, up a vertical run right of every box, into the target's right side."""
    start_y, end_y = source.centre_y + 6, target.centre_y - 6  # apart, so a step that loops to itself shows
    path = f"M{_xy(source.right, start_y)} H{coordinate(run_x)} V{coordinate(end_y)} H{coordinate(target.right)}"
    return Route(edge.source, edge.target, edge.label, path, run_x + 4, (start_y + end_y) / 2, back=True)


def coordinate(value: float) -> str:
    """A coordinate to one decimal: short markup, and stable text for tests."""
    return f"{value:.1f}".removesuffix(".0")


def _xy(x: float, y: float) -> str:
    return f"{coordinate(x)},{coordinate(y)}"
