/** The extension's settings and what they become: `huddle lsp`'s initializationOptions. */

export type CompletionScope = 'auto' | 'line' | 'block';

export interface Settings {
  /** ws(s):// address of the hub, or several (a cluster's nodes, tried in turn); empty: solo mode. */
  hub: string | string[];
  room: string;
  user: string;
  color: string;
  completionScope: CompletionScope;
  /** `huddle.server.command`: argv that starts the language server; empty: found automatically. */
  serverCommand: string[];
}

export interface InitializationOptions {
  hub?: string | string[];
  room?: string;
  token?: string;
  user?: string;
  color?: string;
  completion_scope?: CompletionScope;
}

/** Only what is set: the server fills the rest from the environment, huddle.toml and defaults. */
export function initializationOptions(settings: Settings, token?: string): InitializationOptions {
  const options: InitializationOptions = {};
  const addresses = hubAddresses(settings.hub);
  if (addresses.length > 0) {
    options.hub = typeof settings.hub === 'string' ? addresses[0] : addresses;
    if (token) options.token = token;
  }
  const room = settings.room.trim();
  if (room) options.room = room;
  const user = settings.user.trim();
  if (user) options.user = user;
  const color = settings.color.trim();
  if (color) options.color = color;
  options.completion_scope = settings.completionScope;
  return options;
}

/** The hub setting as addresses, trimmed, blanks dropped: none in solo mode. */
export function hubAddresses(hub: unknown): string[] {
  const listed = Array.isArray(hub) ? (hub as unknown[]) : [hub];
  return listed.flatMap((address) => (typeof address === 'string' && address.trim() ? [address.trim()] : []));
}

/**
 * Where the room's token may be kept: under any of the hub's addresses (Join Session stores it
 * under the invite's, one node of a cluster, whose nodes all take the same token), in order.
 */
export function tokenKeys(settings: Pick<Settings, 'hub' | 'room'>): string[] {
  return hubAddresses(settings.hub).map((hub) => tokenKey(hub, settings.room));
}

/** Where a room's token is kept in SecretStorage: one per hub and room. */
export function tokenKey(hub: string, room: string): string {
  return `huddle.token ${hub.trim().replace(/\/+$/, '')} ${room.trim()}`;
}
