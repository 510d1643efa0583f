/** Teammates' cursors and selections: what to draw, from `huddle/peers`. */
import type { CursorParams, Peer, Position, Range } from './protocol';

/** What to draw for one teammate in one document. */
export interface Mark {
  clientId: number;
  name: string;
  color: string;
  cursor: Position;
  /** Ordered start <= end; absent when nothing is selected. */
  selection?: Range;
}

export interface Teammate {
  name: string;
  color: string;
  /** One entry per editor the teammate has connected (usually one). */
  editors: { clientId: number; file: string | null; uri: string | null; position?: Position }[];
}

const FALLBACK_COLORS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4'];
const HEX = /^#([0-9a-fA-F]{6})$/;

export function comparePositions(a: Position, b: Position): number {
  return a.line - b.line || a.character - b.character;
}

export function orderRange(a: Position, b: Position): Range {
  return comparePositions(a, b) <= 0 ? { start: a, end: b } : { start: b, end: a };
}

/** A peer's colour as sent, or a stable fallback when it is not `#rrggbb`. */
export function peerColor(peer: Pick<Peer, 'color' | 'clientId'>): string {
  return HEX.test(peer.color) ? peer.color.toLowerCase() : FALLBACK_COLORS[Math.abs(peer.clientId) % FALLBACK_COLORS.length];
}

export function withAlpha(color: string, alpha: number): string {
  const match = HEX.exec(color);
  if (!match) return color;
  const n = parseInt(match[1], 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/** The marks for one document; `sameDocument` compares a peer's uri with the document's. */
export function marksFor(peers: readonly Peer[], sameDocument: (uri: string) => boolean): Mark[] {
  const marks: Mark[] = [];
  for (const peer of peers) {
    if (peer.uri === null || peer.position === undefined || !sameDocument(peer.uri)) continue;
    const mark: Mark = {
      clientId: peer.clientId,
      name: peer.name || 'someone',
      color: peerColor(peer),
      cursor: peer.position,
    };
    if (peer.selection && comparePositions(peer.selection.start, peer.selection.end) !== 0) {
      mark.selection = orderRange(peer.selection.start, peer.selection.end);
    }
    marks.push(mark);
  }
  return marks;
}

/**
 * Where the followed teammate's cursor is in one document (`sameDocument` compares a peer's uri
 * with it): following someone shows their line, not only their file. Undefined when none of
 * their editors has a cursor there.
 */
export function followedPosition(
  peers: readonly Peer[],
  name: string,
  sameDocument: (uri: string) => boolean,
): Position | undefined {
  const peer = peers.find(
    (p) => (p.name || 'someone') === name && p.uri !== null && p.position !== undefined && sameDocument(p.uri),
  );
  return peer?.position;
}

/** Teammates by name, sorted, each with the editors they have connected. */
export function teammates(peers: readonly Peer[]): Teammate[] {
  const byName = new Map<string, Teammate>();
  for (const peer of peers) {
    const name = peer.name || 'someone';
    let mate = byName.get(name);
    if (mate === undefined) {
      mate = { name, color: peerColor(peer), editors: [] };
      byName.set(name, mate);
    }
    mate.editors.push({ clientId: peer.clientId, file: peer.file, uri: peer.uri, position: peer.position });
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** `huddle/cursor` from an editor selection (anchor where it started, active where the cursor is). */
export function cursorParams(uri: string, anchor: Position, active: Position): CursorParams {
  const params: CursorParams = { uri, position: { line: active.line, character: active.character } };
  if (comparePositions(anchor, active) !== 0) {
    params.selection = {
      start: { line: anchor.line, character: anchor.character },
      end: { line: active.line, character: active.character },
    };
  }
  return params;
}
