"""A segment synced to the three platforms in their batch sizes; a second sync sends nothing; leavers and
withdrawn consent are removed (issue #16's acceptance; `nudge bench --audiences 100000` for the figure)."""

from __future__ import annotations

import math

from nudge.domain.audiences import BATCH_LIMITS
from nudge.local.audience_bench import sync_rounds

MEMBERS = 12_000


def test_a_segment_syncs_in_batches_and_a_rerun_sends_nothing_new() -> None:
    fake, (first, again, changed) = sync_rounds(MEMBERS)

    assert fake.violations == []
    assert [(f.added, f.removed) for f in first] == [(MEMBERS, 0)] * 3
    meta, google, tiktok = (f.requests for f in first)
    assert meta == math.ceil(MEMBERS / BATCH_LIMITS["meta"]) == 2
    assert google == 3 + math.ceil(2 * MEMBERS / BATCH_LIMITS["google"])  # token, job, operations, run
    assert tiktok == math.ceil(MEMBERS / BATCH_LIMITS["tiktok"]) == 12
    assert max(fake.rows["meta"]) <= 10_000 and max(fake.rows["tiktok"]) <= 1_000
    assert [(f.added, f.removed, f.requests) for f in again] == [(0, 0, 0)] * 3
    leavers = MEMBERS // 100 + MEMBERS // 200  # 1% left the segment, 0.5% withdrew their ad consent
    assert [(f.added, f.removed) for f in changed] == [(0, leavers)] * 3
    assert all(len(members) == 2 * (MEMBERS - leavers) for members in fake.members.values())  # email + phone
