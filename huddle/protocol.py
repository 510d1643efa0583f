"""The contract between the hub, ``huddle lsp`` and the editors, in one place: every method and
notification name, with its params and result as pydantic models. Nothing else spells a name.

Two channels:

* **hub <-> huddle lsp**: JSON requests over the hub's websocket (y-websocket message type 100,
  see ``collab.wire.HuddleMessage``). ``huddle lsp`` sends a ``RpcRequest`` naming a
  ``HubMethod``; the hub may stream ``RpcNotification``\\ s tagged with the request's id
  (``HubNotification``) before the final ``RpcResponse``; either side may send ``RpcCancel``.
  The hub validates params once, at its endpoint, against ``HUB_METHODS``.
* **huddle lsp <-> editor**: LSP, plus Huddle's custom notifications (``EditorNotification``)
  and ``workspace/executeCommand`` commands (``Command``). The VS Code extension's
  ``src/core/protocol.ts`` spells the same names; ``tests/test_protocol.py`` checks the two agree.

This module imports nothing else of Huddle: both sides and the editors' tests depend on it, it
depends on nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# -- the hub channel: envelopes ------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RpcRequest(_Message):
    kind: Literal["request"] = "request"
    id: int = Field(ge=0)
    method: str = Field(max_length=64)
    params: dict[str, Any] = {}


class RpcErrorBody(_Message):
    code: str
    message: str


class RpcResponse(_Message):
    kind: Literal["response"] = "response"
    id: int
    result: Any = None
    error: RpcErrorBody | None = None


class RpcNotification(_Message):
    kind: Literal["notification"] = "notification"
    id: int | None = None  # the request it belongs to, if any
    method: str
    params: dict[str, Any] = {}


class RpcCancel(_Message):
    kind: Literal["cancel"] = "cancel"
    id: int


RpcMessage = RpcRequest | RpcResponse | RpcNotification | RpcCancel
RPC_MESSAGE: TypeAdapter[RpcMessage] = TypeAdapter(
    Annotated[RpcMessage, Field(discriminator="kind")]
)


def rpc_json(message: RpcMessage) -> bytes:
    """A message's JSON, the payload of its wire frame (``collab.wire.HuddleMessage``)."""
    return message.model_dump_json(exclude_defaults=False).encode()


def parse_rpc(payload: bytes) -> RpcMessage:
    """A message from its JSON; ``ValueError`` (pydantic's ``ValidationError``) if malformed."""
    return RPC_MESSAGE.validate_json(payload)


def room_url(hub_url: str, room: str, token: str | None) -> str:
    """A room's address, and with a token its join link: ``ws://host:port/team/room?token=``."""
    url = f"{hub_url.rstrip('/')}/{quote(room, safe='/')}"
    return f"{url}?{urlencode({'token': token})}" if token else url


def web_url(hub_url: str, room: str, token: str | None) -> str:
    """A room's page in a browser (the hub serves it), and with a token its join link:
    ``http://host:port/team/room#token=``. A fragment, not a query: browsers never send it, so
    the token stays out of access logs and Referer headers."""
    base = hub_url.rstrip("/")
    for ws, http in (("wss://", "https://"), ("ws://", "http://")):
        if base.startswith(ws):
            base = http + base.removeprefix(ws)
    url = f"{base}/{quote(room, safe='/')}"
    return f"{url}#{urlencode({'token': token})}" if token else url


class RpcError(Exception):
    """A request failed; ``code`` is stable and machine-readable (``ErrorCode``), ``message``
    is for people. Raised by hub handlers and by ``HubClient`` on the other side."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def invalid_params(exc: ValidationError) -> RpcError:
    """The error for params that do not match their model: names the fields, not the values
    (they may be large, or secret)."""
    fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
    return RpcError("invalid_params", f"invalid {', '.join(fields) or 'params'}")


ErrorCode = Literal[
    "invalid_params",  # the params do not match the method's model
    "unknown_method",
    "forbidden",  # the caller's role or token does not allow it
    "busy",  # too many requests in flight, or a summary already running for the caller
    "cancelled",
    "internal",  # a bug on the hub; logged there
    "ai_unavailable",  # no model backend answers
    "ai_failed",  # the model failed this request
    "not_found",  # the file (or selection) asked about is not in the room
    "history_gap",  # the history asked about was compacted away
    "too_large",  # the input is over a limit (a summary's history, say)
    "offline",  # (client side) not connected to the hub right now
    "disconnected",  # (client side) the connection dropped while the request was in flight
    "malformed",  # (client side) the hub's answer does not match the method's result model
]

# -- the hub channel: methods ----------------------------------------------------------------


class HubMethod(StrEnum):
    INVITE = "invite"
    CREATE_FILE = "create_file"
    COMPLETE = "complete"
    COMPLETION_OUTCOME = "completion_outcome"
    SUMMARIZE = "summarize"


class HubNotification(StrEnum):
    COMPLETE_PARTIAL = "complete/partial"
    SUMMARY_PROGRESS = "summary/progress"
    SUMMARY_PARTIAL = "summary/partial"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Result(BaseModel):
    # Older huddle lsp versions must read newer hubs' answers: unknown fields are ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)


Role = Literal["edit", "read"]
MAX_INVITE_TTL_S = 30 * 86400.0


class InviteParams(_Params):
    """A join link for the caller's room (``huddle.invite`` in the editors)."""

    role: Role = "edit"
    user: str = Field("guest", min_length=1, max_length=64)
    ttl_seconds: float = Field(7 * 86400, gt=0, le=MAX_INVITE_TTL_S, allow_inf_nan=False)


class InviteResult(_Result):
    url: str  # the ws:// join link editors parse (``room_url``)
    hub: str
    room: str
    token: str
    role: Role
    user: str  # qualified by the minter: ``ann/bob`` is bob, invited by ann
    invited_by: str
    expires_at: str  # ISO 8601
    web_url: str | None = None  # the same invite as a browser link (``web_url``); None: older hub


class CreateFileParams(_Params):
    """Seed ``files[path]`` with ``content`` exactly once, however many editors ask at once."""

    path: str = Field(max_length=1024)
    content: str


class CreateFileResult(_Result):
    created: bool  # False: someone else created it first


CompletionScope = Literal["auto", "line", "block"]


class CompleteParams(_Params):
    """An inline completion at a cursor in a shared file."""

    path: str = Field(max_length=1024)
    cursor: dict[str, Any] | None = Field(
        description="Yjs relative position (StickyIndex JSON); null: the start of the file "
        "(an empty file has no position to stick to)"
    )
    offset: int | None = Field(
        None,
        ge=0,
        description="the cursor in code points of the shared text as the asker sees it: used "
        "when ``cursor`` names an edit the hub has not got (it is still on its way)",
    )
    state: str = Field("", max_length=64 * 1024, description="asker's state vector, base64")
    scope: CompletionScope = Field(
        "auto",
        description="the user's setting; ``auto`` lets the hub choose: the line after code, a "
        "block on an empty line, but a line for a user who keeps accepting only the first line "
        "of blocks (``AcceptanceStats.scope``)",
    )
    max_tokens: int | None = Field(None, ge=1, le=4096)


class CompleteResult(_Result):
    text: str
    id: str | None = None  # names the completion in its outcome (None: nothing was shown)
    finish_reason: str | None = None
    model: str | None = None
    scope: CompletionScope | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None


CompletionOutcome = Literal["accepted", "partly", "ignored"]


class CompletionOutcomeParams(_Params):
    """What became of a completion ``huddle lsp`` showed: all of its text inserted, a start of
    it (``accepted_chars`` code points), or none."""

    id: str = Field(min_length=1, max_length=64)
    outcome: CompletionOutcome
    accepted_chars: int = Field(0, ge=0)
    source: Literal["text", "editor"] = Field(
        "text", description="read from the editor's changes, or said by the editor (accept key)"
    )


class AcceptanceStats(_Result):
    """One user's completions in a room, as the hub counts them."""

    shown: int = 0
    accepted: int = 0
    partly: int = 0
    ignored: int = 0
    rate: float | None = None  # (accepted + partly) / decided; None: none decided yet
    scope: CompletionScope | None = None  # what the hub chooses for the user now (None: auto)


class CompletionOutcomeResult(_Result):
    recorded: bool  # False: unknown id (not the caller's, too old, or reported already)
    acceptance: AcceptanceStats


SummaryKind = Literal["file", "selection", "catch_up", "session"]
LAST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last second a datetime can show


class SummarizeParams(_Params):
    kind: SummaryKind
    path: str | None = Field(None, max_length=1024)
    start: dict[str, Any] | None = None  # Yjs relative positions of a selection
    end: dict[str, Any] | None = None
    # finite and within what datetime can show (year 9999): `inf` or 1e300 are bad params,
    # not an internal error when the result is written
    since: float | None = Field(
        None, ge=0, le=LAST_TIME, allow_inf_nan=False, description="seconds since the epoch"
    )
    until: float | None = Field(None, ge=0, le=LAST_TIME, allow_inf_nan=False)


class FileSummary(_Result):
    """One file in a catch-up or session summary."""

    path: str
    authors: list[str]
    added: int
    removed: int
    created: bool
    deleted: bool


class SummarizeResult(_Result):
    kind: SummaryKind
    since: float | None = None
    until: float | None = None
    files: list[FileSummary] = []
    summary: str
    truncated: str | None = None  # why the summary covers less than asked (history too long)
    markdown: str  # what an editor shows: a heading, the files and the summary


class PartialText(_Result):
    """``complete/partial`` and ``summary/partial``: the text so far (not a delta)."""

    text: str


class SummaryProgress(_Result):
    done: int
    total: int
    percentage: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class MethodSpec:
    params: type[_Params]
    result: type[_Result]
    notifications: tuple[HubNotification, ...] = ()


HUB_METHODS: dict[HubMethod, MethodSpec] = {
    HubMethod.INVITE: MethodSpec(InviteParams, InviteResult),
    HubMethod.CREATE_FILE: MethodSpec(CreateFileParams, CreateFileResult),
    HubMethod.COMPLETE: MethodSpec(
        CompleteParams, CompleteResult, (HubNotification.COMPLETE_PARTIAL,)
    ),
    HubMethod.COMPLETION_OUTCOME: MethodSpec(CompletionOutcomeParams, CompletionOutcomeResult),
    HubMethod.SUMMARIZE: MethodSpec(
        SummarizeParams,
        SummarizeResult,
        (HubNotification.SUMMARY_PROGRESS, HubNotification.SUMMARY_PARTIAL),
    ),
}

HUB_NOTIFICATIONS: dict[HubNotification, type[_Result]] = {
    HubNotification.COMPLETE_PARTIAL: PartialText,
    HubNotification.SUMMARY_PROGRESS: SummaryProgress,
    HubNotification.SUMMARY_PARTIAL: PartialText,
}


# -- the editor channel: huddle lsp <-> editor ------------------------------------------------


class EditorNotification(StrEnum):
    """LSP notifications Huddle adds. Server -> editor: STATUS, PEERS, INLINE_PARTIAL,
    SUMMARY_PARTIAL. Editor -> server: CURSOR (editors without a cursor event in LSP), CHANGES
    (Huddle's Neovim plugin)."""

    STATUS = "huddle/status"
    PEERS = "huddle/peers"
    INLINE_PARTIAL = "huddle/inlineCompletionPartial"
    SUMMARY_PARTIAL = "huddle/summaryPartial"
    CURSOR = "huddle/cursor"
    CHANGES = "huddle/changes"


class Command(StrEnum):
    """``workspace/executeCommand`` names ``huddle lsp`` registers."""

    STATUS = "huddle.status"
    INVITE = "huddle.invite"
    UNDO_MINE = "huddle.undoMine"
    FOLLOW = "huddle.follow"
    UNFOLLOW = "huddle.unfollow"
    SUMMARIZE_FILE = "huddle.summarizeFile"
    SUMMARIZE_SELECTION = "huddle.summarizeSelection"
    CATCH_UP = "huddle.catchUp"
    SUMMARIZE_SESSION = "huddle.summarizeSession"
    # The completion item's own command (VS Code runs it on accept; Neovim's accept key sends
    # it): arguments ``[id]``, the completion's id.
    COMPLETION_ACCEPTED = "huddle.completionAccepted"


SUMMARY_COMMANDS: dict[Command, SummaryKind] = {
    Command.SUMMARIZE_FILE: "file",
    Command.SUMMARIZE_SELECTION: "selection",
    Command.CATCH_UP: "catch_up",
    Command.SUMMARIZE_SESSION: "session",
}


class _Editor(BaseModel):
    """What huddle lsp sends an editor: camelCase on the wire where LSP's style has it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)


class LspPosition(_Editor):
    line: int
    character: int


class LspRange(_Editor):
    start: LspPosition
    end: LspPosition


ConnectionState = Literal["connected", "reconnecting", "offline", "read-only", "rejected"]


class EditorStatus(_Editor):
    """``huddle/status``, and the result of the ``huddle.status`` command."""

    state: ConnectionState
    reason: str | None = None
    room: str | None = None
    user: str | None = None
    color: str | None = None
    hub: str | None = None
    solo: bool | None = None
    peers: list[str] | None = None  # teammates' names
    repairs: int | None = None  # times the safety net repaired a divergence
    shared: list[str] | None = None  # room paths of this editor's shared buffers
    acceptance: AcceptanceStats | None = None  # the user's completions, as the hub last said


class Peer(_Editor):
    """One teammate's editor in ``huddle/peers``; positions are in this editor's coordinates."""

    client_id: int = Field(alias="clientId")
    name: str
    color: str
    file: str | None
    uri: str | None
    position: LspPosition | None = None
    # ``start`` is where the selection was started (the anchor), ``end`` where the cursor is.
    selection: LspRange | None = None


class PeersParams(_Editor):
    peers: list[Peer]


class CursorParams(_Editor):
    """Editor -> server: ``selection.start`` is the anchor, ``position`` the cursor."""

    uri: str
    position: LspPosition
    selection: LspRange | None = None


class DocumentId(_Editor):
    uri: str


class InlinePartialParams(_Editor):
    text_document: DocumentId = Field(alias="textDocument")
    position: LspPosition  # where the completion was asked for
    text: str  # the completion so far


class SummaryPartialParams(_Editor):
    token: str  # the work-done progress token of the summary
    kind: SummaryKind
    text: str


class SummaryCommandResult(SummarizeResult):
    """A summary command's result: the hub's, and the progress token it reported under."""

    token: str


class FollowResult(_Editor):
    following: str | None


class UndoResult(_Editor):
    undone: bool
