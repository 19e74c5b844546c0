"""Status values of the stateful tables and the moves between them, in one place.

Each table's `status` column holds one of these StrEnums (the stored text is the value). A move
not listed in its table's TRANSITIONS is a bug or a race, and `check_transition` refuses it.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.errors import InvalidTransition


class BriefStatus(StrEnum):
    SUBMITTED = "submitted"
    CLAIMED = "claimed"
    PLANNED = "planned"
    # planned, but its estimated GPU cost is over APPROVAL_GPU_SECONDS: nothing renders until an
    # operator approves it (`mova-ads brief approve`)
    AWAITING_APPROVAL = "awaiting_approval"
    PRODUCING = "producing"
    DONE = "done"
    FAILED = "failed"
    INVALID = "invalid"


class RenderStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class DeliverableStatus(StrEnum):
    PENDING = "pending"
    FINISHED = "finished"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    PUBLISHED = "published"
    FAILED = "failed"


class ReviewVerdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


Status = BriefStatus | RenderStatus | DeliverableStatus

B, R, D = BriefStatus, RenderStatus, DeliverableStatus
BRIEF_TRANSITIONS: dict[BriefStatus, frozenset[BriefStatus]] = {
    B.SUBMITTED: frozenset({B.CLAIMED}),
    B.CLAIMED: frozenset({B.PLANNED, B.AWAITING_APPROVAL, B.INVALID, B.SUBMITTED}),
    B.AWAITING_APPROVAL: frozenset({B.PLANNED}),
    B.PLANNED: frozenset({B.PRODUCING}),
    B.PRODUCING: frozenset({B.DONE, B.FAILED, B.PLANNED}),
    B.FAILED: frozenset({B.PRODUCING, B.PLANNED}),
    B.DONE: frozenset({B.PRODUCING, B.PLANNED}),  # planned again: a reviewer asked for a re-render
    B.INVALID: frozenset(),
}
RENDER_TRANSITIONS: dict[RenderStatus, frozenset[RenderStatus]] = {
    R.PENDING: frozenset({R.RUNNING}),
    R.RUNNING: frozenset({R.DONE, R.FAILED, R.PENDING}),  # pending again: a run died mid-render
    R.FAILED: frozenset({R.PENDING}),
    R.DONE: frozenset(),
}
DELIVERABLE_TRANSITIONS: dict[DeliverableStatus, frozenset[DeliverableStatus]] = {
    D.PENDING: frozenset({D.FINISHED, D.FAILED}),
    D.FINISHED: frozenset({D.PUBLISHED, D.IN_REVIEW, D.FAILED, D.PENDING}),
    D.IN_REVIEW: frozenset({D.APPROVED, D.REJECTED}),
    D.APPROVED: frozenset({D.PUBLISHED}),
    D.REJECTED: frozenset({D.PENDING}),
    D.FAILED: frozenset({D.PENDING}),
    D.PUBLISHED: frozenset(),
}
TRANSITIONS: dict[type[StrEnum], dict[StrEnum, frozenset[StrEnum]]] = {
    BriefStatus: BRIEF_TRANSITIONS,  # type: ignore[dict-item]
    RenderStatus: RENDER_TRANSITIONS,  # type: ignore[dict-item]
    DeliverableStatus: DELIVERABLE_TRANSITIONS,  # type: ignore[dict-item]
}
del B, R, D

# Groups the pipeline asks about, named once so no caller spells them out.
BRIEF_ACTIVE = frozenset({BriefStatus.SUBMITTED, BriefStatus.CLAIMED, BriefStatus.PLANNED,
                          BriefStatus.AWAITING_APPROVAL, BriefStatus.PRODUCING})
BRIEF_TO_PRODUCE = frozenset({BriefStatus.PLANNED, BriefStatus.PRODUCING})
BRIEF_WAITING = frozenset({BriefStatus.SUBMITTED, BriefStatus.PLANNED, BriefStatus.PRODUCING})
BRIEF_CLOSED = frozenset({BriefStatus.DONE, BriefStatus.FAILED})
RENDER_SETTLED = frozenset({RenderStatus.DONE, RenderStatus.FAILED})
# A variant whose files sit in the review area (review/…), not in the campaign layout.
DELIVERABLE_IN_REVIEW_AREA = frozenset({DeliverableStatus.IN_REVIEW, DeliverableStatus.APPROVED,
                                        DeliverableStatus.REJECTED})
# A variant that needs no more work in this run (published, or handed to a reviewer).
DELIVERABLE_SETTLED = frozenset({DeliverableStatus.PUBLISHED,
                                 *DELIVERABLE_IN_REVIEW_AREA})
# Counted as done by the CLI's progress bar.
DELIVERABLE_ENDED = frozenset({DeliverableStatus.PUBLISHED, DeliverableStatus.IN_REVIEW,
                               DeliverableStatus.FAILED})


def check_transition(table: str, row_id: object, current: Status, new: Status) -> None:
    """Raise InvalidTransition unless `current` -> `new` is an allowed move (staying is)."""
    if current == new:
        return
    kind = type(new)
    allowed = TRANSITIONS[kind].get(kind(current), frozenset())
    if new not in allowed:
        names = sorted(str(s) for s in allowed) or "none"
        raise InvalidTransition(f"{table} {row_id}: cannot go from '{current}' to '{new}' "
                                f"(allowed: {names})")
