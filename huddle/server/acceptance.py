"""What became of the completions the hub handed out, and the one setting it adapts from that.

Each completion with text gets an id (``CompleteResult.id``); ``huddle lsp`` reports its outcome
(``completion_outcome``): accepted, partly accepted or ignored. The hub counts them per room
and user (``/metrics``, ``huddle.status``) and appends the outcome to the audit log.

The adaptation: a user who keeps accepting only the first line of multi-line completions gets
line scope. Of the user's last ``WINDOW`` decided block completions (more than one line shown),
``ON`` or more taken for their first line alone (the part accepted has no code past the first
line break) switch that user to line scope; ``OFF`` or fewer switch back (hysteresis: one whole
block accepted does not undo it). Line scope shows no blocks, so no evidence would come to
switch back: while it is on, every ``PROBE_EVERY``-th completion that would have been a block
is shown as a block. A user's ``completion_scope`` of ``line`` or ``block`` wins (only ``auto``,
the default, is adapted).

State is in memory, per hub node, bounded: ``MAX_USERS`` users (least recently seen dropped),
``MAX_PENDING`` ids awaiting an outcome per user (oldest dropped: never reported)."""

from __future__ import annotations

import collections
import secrets
from dataclasses import dataclass, field

from huddle.protocol import AcceptanceStats, CompletionOutcome, CompletionScope
from huddle.server.metrics import HubMetrics

WINDOW = 6
ON = 4
OFF = 2
PROBE_EVERY = 8
MAX_USERS = 10_000
MAX_PENDING = 64
OTHER = "_other"  # the label of (room, user) pairs past the metrics' budget


_COUNTS = ("shown", "accepted", "partly", "ignored")


@dataclass(frozen=True, slots=True)
class Shown:
    """A completion handed out: its text, and the scope it was cut with."""

    room: str
    user: str
    text: str
    scope: CompletionScope


@dataclass
class UserAcceptance:
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))
    pending: collections.OrderedDict[str, Shown] = field(default_factory=collections.OrderedDict)
    # True for each of the last WINDOW decided blocks taken for their first line alone
    blocks: collections.deque[bool] = field(
        default_factory=lambda: collections.deque(maxlen=WINDOW)
    )
    line_scope: bool = False
    would_be_blocks: int = 0  # completions at a block position since line scope came on


def new_id() -> str:
    """A completion's id: not guessable, so a user cannot report on another's completions."""
    return secrets.token_urlsafe(12)


def first_line_only(text: str, accepted_chars: int) -> bool:
    """Whether the accepted start of ``text`` has no code past its first line break."""
    _, newline, rest = text[:accepted_chars].partition("\n")
    return not newline or not rest.strip()


def multi_line(text: str) -> bool:
    return bool(text.strip()) and "\n" in text.strip("\n")


class Acceptance:
    """Counts per (room, user); decides each user's scope."""

    def __init__(self, metrics: HubMetrics, label_budget: int) -> None:
        self._metrics = metrics
        self._label_budget = label_budget
        self._labelled: set[tuple[str, str]] = set()
        self._users: collections.OrderedDict[tuple[str, str], UserAcceptance] = (
            collections.OrderedDict()
        )
        self._owner: dict[str, tuple[str, str]] = {}  # pending id -> (room, user)

    def _user(self, room: str, user: str) -> UserAcceptance:
        key = (room, user)
        state = self._users.get(key)
        if state is None:
            state = self._users[key] = UserAcceptance()
            if len(self._users) > MAX_USERS:
                _, dropped = self._users.popitem(last=False)
                for old in dropped.pending:
                    self._owner.pop(old, None)
        self._users.move_to_end(key)
        return state

    def choose(self, room: str, user: str, auto: CompletionScope) -> CompletionScope:
        """The scope of a completion the user left to the hub, where ``auto`` is what the
        cursor's line calls for: ``line`` instead of a block for a user adapted to it, but for
        every ``PROBE_EVERY``-th (see the module)."""
        state = self._users.get((room, user))
        if auto != "block" or state is None or not state.line_scope:
            return auto
        state.would_be_blocks += 1
        return "block" if state.would_be_blocks % PROBE_EVERY == 0 else "line"

    def shown(
        self, room: str, user: str, completion_id: str, text: str, scope: CompletionScope
    ) -> None:
        """Count a completion handed out under ``completion_id`` (:func:`new_id`)."""
        state = self._user(room, user)
        state.pending[completion_id] = Shown(room, user, text, scope)
        self._owner[completion_id] = (room, user)
        if len(state.pending) > MAX_PENDING:
            old, _ = state.pending.popitem(last=False)
            self._owner.pop(old, None)
        self._count(state, room, user, "shown")

    def outcome(
        self, room: str, user: str, completion_id: str, outcome: CompletionOutcome, chars: int
    ) -> CompletionOutcome | None:
        """Record an outcome; the outcome counted (a part that is all of it is accepted), or
        None if the id is not one of this user's awaiting an outcome (reported already, too
        old, someone else's)."""
        if self._owner.get(completion_id) != (room, user):
            return None
        del self._owner[completion_id]
        state = self._user(room, user)
        shown = state.pending.pop(completion_id)
        if outcome == "partly" and chars >= len(shown.text):
            outcome = "accepted"
        self._count(state, room, user, outcome)
        if shown.scope == "block" and multi_line(shown.text):
            taken_first_line = outcome == "partly" and first_line_only(shown.text, chars)
            state.blocks.append(taken_first_line)
            taken = sum(state.blocks)
            if not state.line_scope and len(state.blocks) >= ON and taken >= ON:
                state.line_scope, state.would_be_blocks = True, 0
            elif state.line_scope and taken <= OFF:
                state.line_scope = False
        return outcome

    def stats(self, room: str, user: str) -> AcceptanceStats:
        state = self._user(room, user)
        counts = state.stats
        decided = counts["accepted"] + counts["partly"] + counts["ignored"]
        rate = (counts["accepted"] + counts["partly"]) / decided if decided else None
        return AcceptanceStats(
            shown=counts["shown"],
            accepted=counts["accepted"],
            partly=counts["partly"],
            ignored=counts["ignored"],
            rate=rate,
            scope="line" if state.line_scope else None,
        )

    def _count(self, state: UserAcceptance, room: str, user: str, what: str) -> None:
        state.stats[what] += 1
        key = (room, user)
        if key not in self._labelled and len(self._labelled) < self._label_budget:
            self._labelled.add(key)
        labels = key if key in self._labelled else (OTHER, OTHER)
        self._metrics.ai_completions.labels(*labels, what).inc()
