/**
 * Invite links, as `huddle invite` prints them and `huddle.invite` returns them:
 * `ws://127.0.0.1:8765/acme/webapp?token=eyJ...` (the room is the URL path; wss with TLS).
 */

export class InviteError extends Error {}

export interface TokenClaims {
  room?: string;
  user?: string;
  role?: 'edit' | 'read';
  /** Seconds since the epoch. */
  expires?: number;
}

export interface Invite {
  /** The hub's address without the room: what `initializationOptions.hub` takes. */
  hub: string;
  room: string;
  token: string;
  /** Read from the token without checking its signature (only the hub can): a hint for the UI. */
  claims: TokenClaims;
}

const ROOM_NAME = /^[A-Za-z0-9][A-Za-z0-9._~@+-]*(\/[A-Za-z0-9._~@+-]+)*$/;
const MAX_ROOM_NAME = 200;

export function validRoom(room: string): boolean {
  return room.length <= MAX_ROOM_NAME && ROOM_NAME.test(room) && !room.split('/').includes('..');
}

/** Parse what a user pasted: the link, or the `join:` line `huddle invite` prints. */
export function parseInvite(pasted: string, nowMs: number = Date.now()): Invite {
  const text = pasted
    .trim()
    .replace(/^join:\s*/i, '')
    .replace(/^[<"']|[>"']$/g, '');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InviteError('not a link: paste the ws:// or wss:// invite link');
  }
  const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[url.protocol];
  if (scheme === undefined) {
    throw new InviteError(`an invite link starts with ws:// or wss://, not ${url.protocol}//`);
  }
  const token = url.searchParams.get('token');
  if (!token) {
    throw new InviteError('the link has no ?token=: ask for a new invite');
  }
  let path: string;
  try {
    path = url.pathname.split('/').filter(Boolean).map(decodeURIComponent).join('/');
  } catch {
    throw new InviteError('the room in the link is malformed');
  }
  const claims = tokenClaims(token);
  // A hub behind a proxy may live under a path: the token names the room, the rest is the hub's.
  let room = path;
  let base = '';
  if (claims.room && (path === claims.room || path.endsWith(`/${claims.room}`))) {
    room = claims.room;
    base = path.slice(0, path.length - room.length).replace(/\/$/, '');
  }
  if (!room) {
    throw new InviteError('the link names no room');
  }
  if (!validRoom(room)) {
    throw new InviteError(`invalid room name ${JSON.stringify(room)}`);
  }
  if (claims.expires !== undefined && claims.expires * 1000 <= nowMs) {
    const when = new Date(claims.expires * 1000).toISOString();
    throw new InviteError(`this invite expired at ${when}: ask for a new one`);
  }
  const hub = `${scheme}//${url.host}${base ? `/${base.split('/').map(encodeURIComponent).join('/')}` : ''}`;
  return { hub, room, token, claims };
}

/** The claims of a JWT-shaped token, unverified; `{}` for anything else. */
export function tokenClaims(token: string): TokenClaims {
  const parts = token.split('.');
  if (parts.length !== 3) {
    return {};
  }
  let payload: unknown;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    payload = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
  if (typeof payload !== 'object' || payload === null) {
    return {};
  }
  const raw = payload as Record<string, unknown>;
  const claims: TokenClaims = {};
  if (typeof raw.room === 'string') claims.room = raw.room;
  if (typeof raw.sub === 'string') claims.user = raw.sub;
  if (raw.role === 'edit' || raw.role === 'read') claims.role = raw.role;
  if (typeof raw.exp === 'number') claims.expires = raw.exp;
  return claims;
}
