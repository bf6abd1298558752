"""The flow catalog compiled at bundle time: read at a cold start without PyYAML and without validation.

`nudge validate`, the local stack and the CLI read flows/, flows/_guardrails.yaml and segments/ with
`flow_files.load_all`: every file parsed and validated. The Lambda bundler runs that same `load_all` once
and writes what it returned, pickled, to `flows/_catalog.pickle` in the bundle (ADR 0020, Decision 9). A
function then unpickles the validated objects: no YAML parse, no pydantic validator built or run.

The file starts with one line, `nudge-catalog <digest>`: a SHA-256 of every YAML file it was made from
and of the code that defines and checks what it holds (`nudge/domain/*.py`, `nudge/flow_files.py`), and of
the pydantic version. A function recomputes that digest from the files it ships before it unpickles
anything; a file that does not match (a flow edited after bundling, other code) is never used: the
function logs why and parses and validates the YAML as the CLI does.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nudge.domain.flows import FlowCatalog
    from nudge.domain.guardrails import Guardrails
    from nudge.domain.segments import SegmentCatalog

    CatalogParts = tuple[FlowCatalog, Guardrails, SegmentCatalog]

ARTEFACT = "_catalog.pickle"
_MAGIC = b"nudge-catalog "
_FORMAT = b"1"  # raise when what is pickled changes shape
_PACKAGE = Path(__file__).resolve().parent
_log = logging.getLogger(__name__)


def source_digest(flows_dir: Path, segments_dir: Path | None, package: Path = _PACKAGE) -> str:
    """SHA-256 of what the catalog is made from: the YAML files, the code that reads them, pydantic's version."""
    from pydantic.version import VERSION  # a constant; pydantic itself is imported anyway by the models

    digest = hashlib.sha256(_FORMAT + b"\0" + VERSION.encode())
    sources = [("flows", flows_dir, "*.yaml"), ("segments", segments_dir, "*.yaml")]
    sources += [("domain", package / "domain", "*.py"), ("nudge", package, "flow_files.py")]
    for label, directory, pattern in sources:
        if directory is None or not directory.is_dir():
            continue
        for path in sorted(directory.glob(pattern)):
            data = path.read_bytes()
            digest.update(f"\0{label}/{path.name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


def write(flows_dir: Path, segments_dir: Path | None, package: Path = _PACKAGE) -> Path:
    """Parse and validate the catalog (raises FlowFileError as `nudge validate` does) and write the artefact
    into flows_dir. The bundler calls this on the bundle's own copies of the files and of the package."""
    from nudge.flow_files import load_all

    catalog = load_all(flows_dir, segments_dir)
    parts = (catalog.flows, catalog.guardrails, catalog.segments)
    target = flows_dir / ARTEFACT
    header = _MAGIC + source_digest(flows_dir, segments_dir, package).encode() + b"\n"
    target.write_bytes(header + pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL))
    return target


def read(flows_dir: Path, segments_dir: Path | None) -> CatalogParts | None:
    """The compiled catalog if flows_dir has one made from exactly these files and this code, else None."""
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
    parts: CatalogParts = pickle.loads(body)  # noqa: S301  (our own bundle's file, checked against its sources)
    return parts
