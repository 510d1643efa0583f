/**
 * The part of `huddle lsp`'s protocol that LSP does not define: custom notifications and the
 * commands the extension calls (see the top-level README, "Connecting an editor").
 * Plain types, no `vscode` import: the unit and end-to-end tests use them as they are.
 */

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export const STATUS = 'huddle/status';
export const PEERS = 'huddle/peers';
export const CURSOR = 'huddle/cursor';
export const INLINE_PARTIAL = 'huddle/inlineCompletionPartial';
export const SUMMARY_PARTIAL = 'huddle/summaryPartial';

export type ConnectionState = 'connected' | 'reconnecting' | 'offline' | 'read-only' | 'rejected';

/** `huddle/status`, and the result of the `huddle.status` command. */
export interface Status {
  state: ConnectionState;
  reason?: string;
  room?: string;
  user?: string;
  color?: string;
  hub?: string | null;
  solo?: boolean;
  peers?: string[];
  repairs?: number;
  shared?: string[];
  /** The user's completions and what became of them, as the hub last counted them. */
  acceptance?: AcceptanceStats;
}

export type CompletionScope = 'auto' | 'line' | 'block';

/** One user's completions in a room: shown, and accepted whole, partly (a start of it) or ignored. */
export interface AcceptanceStats {
  shown: number;
  accepted: number;
  partly: number;
  ignored: number;
  /** (accepted + partly) / decided; null before any was decided. */
  rate?: number | null;
  /** The scope the hub now chooses for the user (`line` once adapted); null: auto. */
  scope?: CompletionScope | null;
}

/** One teammate's editor in `huddle/peers`; positions are already in this editor's coordinates. */
export interface Peer {
  clientId: number;
  name: string;
  color: string;
  file: string | null;
  uri: string | null;
  position?: Position;
  /** `start` is where the selection was started (the anchor), `end` where the cursor is. */
  selection?: Range;
}

export interface PeersParams {
  peers: Peer[];
}

/** Editor -> server: `selection.start` is the anchor, `position` the cursor. */
export interface CursorParams {
  uri: string;
  position: Position;
  selection?: Range;
}

export interface InlinePartialParams {
  textDocument: { uri: string };
  /** Where the completion was asked for. */
  position: Position;
  /** The completion so far. */
  text: string;
}

export type SummaryKind = 'file' | 'selection' | 'catch_up' | 'session';

export interface SummaryPartialParams {
  /** The work-done progress token of the summary. */
  token: string;
  kind: SummaryKind;
  text: string;
}

export interface SummaryFile {
  path: string;
  authors: string[];
  added: number;
  removed: number;
  created: boolean;
  deleted: boolean;
}

export interface SummaryResult {
  kind: SummaryKind;
  markdown: string;
  summary: string;
  files: SummaryFile[];
  token: string;
  since?: number | null;
  until?: number | null;
  /** Why the summary covers less than was asked (the history was too long to read back). */
  truncated?: string | null;
}

export interface InviteParams {
  role: 'edit' | 'read';
  ttl_seconds: number;
  user: string;
}

export interface InviteResult {
  url: string;
  hub: string;
  room: string;
  token: string;
  role: 'edit' | 'read';
  /** The guest's name: the asked-for name qualified by the inviter's (`ann/carol`). */
  user: string;
  invited_by: string;
  expires_at: string;
  /** The same invite as a browser link (`http://host:port/<room>#token=…`); absent from older hubs. */
  web_url?: string | null;
}

/** `workspace/executeCommand` names the server registers. */
export const Command = {
  status: 'huddle.status',
  invite: 'huddle.invite',
  undoMine: 'huddle.undoMine',
  follow: 'huddle.follow',
  unfollow: 'huddle.unfollow',
  summarizeFile: 'huddle.summarizeFile',
  summarizeSelection: 'huddle.summarizeSelection',
  catchUp: 'huddle.catchUp',
  summarizeSession: 'huddle.summarizeSession',
  /** The inline completion item's own command: VS Code runs it when the user accepts the item. */
  completionAccepted: 'huddle.completionAccepted',
} as const;

export type CommandName = (typeof Command)[keyof typeof Command];

export const SUMMARY_COMMANDS: Record<SummaryKind, CommandName> = {
  file: Command.summarizeFile,
  selection: Command.summarizeSelection,
  catch_up: Command.catchUp,
  session: Command.summarizeSession,
};
