"""The flow catalog compiled at bundle time: read at a cold start without PyYAML and without validation.

`nudge validate`, the local stack and the CLI read flows/, flows/_guardrails.yaml and segments/ with
`flow_files.load_all`: every file parsed and validated. The Lambda bundler runs that same `load_all` once
and writes what it returned, pickled, to `flows/_catalog.pickle` in the bundle (ADR 0020, Decision 9). A
function then unpickles the validated records: no YAML parse, no validation, no pydantic (ADR 0020, Decision 11).

After the header come three pickles: first a summary in plain Python values (`Summary`: what a function that
needs no flow reads, the preference page's marketing topics), then the compiled checks of the request
records (`CHECKED`: each one's pydantic core schema, itself pickled, by `validation.key`; ADR 0020,
Decision 13), then the catalog. A function that reads only the summary stops after the first, so it imports
none of the catalog's record classes; the checks are bytes until a record is first checked.

The file starts with one line, `nudge-catalog <digest>`: a SHA-256 of every YAML file it was made from
and of the code that defines and checks what it holds (`nudge/domain/*.py`, `nudge/flow_files.py`, the
modules of `CHECKED`), and of the pydantic version. A function recomputes that digest from the files it
ships before it unpickles anything; a file that does not match (a flow edited after bundling, other code)
is never used: the function logs why and parses and validates the YAML as the CLI does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from collections.abc import Callable

    from nudge.domain.flows import FlowCatalog
    from nudge.domain.guardrails import Guardrails
    from nudge.domain.segments import SegmentCatalog

    CatalogParts = tuple[FlowCatalog, Guardrails, SegmentCatalog]

ARTEFACT = "_catalog.pickle"
_MAGIC = b"nudge-catalog "
_FORMAT = b"4"  # raise when what is pickled changes shape (3: records, not pydantic models; 4: the checks)
# The records a function checks requests (and a campaign's documents) against, compiled at bundle time.
CHECKED = (
    "nudge.services.inputs:ContactIn",
    "nudge.services.inputs:EventIn",
    "nudge.services.inputs:EnrollmentIn",
    "nudge.services.subscribe:SubscribeIn",
    "nudge.integrations.segment_api:TrackCall",
    "nudge.integrations.segment_api:IdentifyCall",
    "nudge.integrations.segment_api:AliasCall",
    "nudge.integrations.segment_api:BatchCall",
    "nudge.domain.campaigns:Campaign",
    "nudge.domain.flows:Flow",
)
_PACKAGE = Path(__file__).resolve().parent
_log = logging.getLogger(__name__)


class Summary(TypedDict):
    """What the artefact says in plain values, read without the catalog's classes."""

    marketing_topics: tuple[tuple[str, str], ...]  # FlowCatalog.marketing_topics(): (flow id, name) by name


def source_digest(flows_dir: Path, segments_dir: Path | None, package: Path = _PACKAGE) -> str:
    """SHA-256 of what the catalog is made from: the YAML files, the code that reads them, pydantic's version."""
    digest = hashlib.sha256(_FORMAT + b"\0" + _pydantic_version_source())
    sources = [("flows", flows_dir, "*.yaml"), ("segments", segments_dir, "*.yaml")]
    sources += [("domain", package / "domain", "*.py"), ("nudge", package, "flow_files.py")]
    for module in sorted({name.partition(":")[0] for name in CHECKED}):
        relative = Path(*module.split(".")[1:]).with_suffix(".py")
        if relative.parent != Path("domain"):  # domain/*.py is hashed above
            sources.append(("checked", package / relative.parent, relative.name))
    for label, directory, pattern in sources:
        if directory is None or not directory.is_dir():
            continue
        for path in sorted(directory.glob(pattern)):
            data = path.read_bytes()
            digest.update(f"\0{label}/{path.name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


def _pydantic_version_source() -> bytes:
    """pydantic's version.py, which states its version: read, not imported (importing it loads pydantic_core,
    which a function that reads only the summary does not need)."""
    spec = importlib.util.find_spec("pydantic")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise RuntimeError("pydantic is not installed: the catalog cannot be compiled or checked")
    return (Path(locations[0]) / "version.py").read_bytes()


def write(flows_dir: Path, segments_dir: Path | None, package: Path = _PACKAGE) -> Path:
    """Parse and validate the catalog (raises FlowFileError as `nudge validate` does) and write the artefact
    into flows_dir. The bundler calls this on the bundle's own copies of the files and of the package."""
    from nudge.flow_files import load_all

    catalog = load_all(flows_dir, segments_dir)
    parts = (catalog.flows, catalog.guardrails, catalog.segments)
    summary = Summary(marketing_topics=catalog.flows.marketing_topics())
    target = flows_dir / ARTEFACT
    header = _MAGIC + source_digest(flows_dir, segments_dir, package).encode() + b"\n"
    pickles = [pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL) for part in (summary, _checks(), parts)]
    target.write_bytes(header + b"".join(pickles))  # read back one pickle at a time (`_open`)
    return target


def _checks() -> dict[str, bytes]:
    """Each of CHECKED's core schema, pickled (pydantic builds them here, at bundle time)."""
    import importlib

    from nudge.domain import validation

    found = {}
    for name in CHECKED:
        module, _, qualname = name.partition(":")
        kind = getattr(importlib.import_module(module), qualname)
        found[validation.key(kind)] = validation.compiled(kind)
    return found


def read(
    flows_dir: Path, segments_dir: Path | None, *, checks: Callable[[dict[str, bytes]], object] | None = None
) -> CatalogParts | None:
    """The compiled catalog if flows_dir has one made from exactly these files and this code, else None.

    `checks` is given the compiled checks read on the way (a function's wiring offers them), so a function
    that reads the catalog does not read and hash the artefact a second time for them (`read_checks`)."""
    stream = _open(flows_dir, segments_dir)
    if stream is None:
        return None
    pickle.load(stream)  # noqa: S301  the summary (each pickle has its own memo: one load per pickle)
    found: dict[str, bytes] = pickle.load(stream)  # noqa: S301  the checks: bytes, nothing imported
    if checks is not None:
        checks(found)
    parts: CatalogParts = pickle.load(stream)  # noqa: S301  (our own bundle's file, checked against its sources)
    return parts


def read_checks(flows_dir: Path, segments_dir: Path | None) -> dict[str, bytes] | None:
    """The artefact's compiled checks (offered by `records.offer_checks`), checked as `read` checks the catalog."""
    stream = _open(flows_dir, segments_dir)
    if stream is None:
        return None
    pickle.load(stream)  # noqa: S301  the summary
    checks: dict[str, bytes] = pickle.load(stream)  # noqa: S301  (as in `read`)
    return checks


def read_summary(flows_dir: Path, segments_dir: Path | None) -> Summary | None:
    """The artefact's summary, checked as `read` checks the catalog, without unpickling the catalog."""
    stream = _open(flows_dir, segments_dir)
    if stream is None:
        return None
    summary: Summary = pickle.load(stream)  # noqa: S301  (as in `read`)
    return summary


def _open(flows_dir: Path, segments_dir: Path | None) -> io.BytesIO | None:
    """The artefact's pickles, after its header, if the header's digest is that of these files and this code."""
    path = flows_dir / ARTEFACT
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    header, _, body = data.partition(b"\n")
    found = header.removeprefix(_MAGIC).decode("ascii", "replace")
    expected = source_digest(flows_dir, segments_dir)
    if not header.startswith(_MAGIC) or found != expected:
        _log.warning(
            "compiled catalog %s is stale (made from %s, the files give %s): parsing the YAML instead",
            path,
            found[:12],
            expected[:12],
        )
        return None
    return io.BytesIO(body)
