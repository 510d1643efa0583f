/** The extension's settings and what they become: `huddle lsp`'s initializationOptions. */

export type CompletionScope = 'auto' | 'line' | 'block';

export interface Settings {
  /** ws(s):// address of the hub; empty: solo mode. */
  hub: string;
  room: string;
  user: string;
  color: string;
  completionScope: CompletionScope;
  /** `huddle.server.command`: argv that starts the language server; empty: found automatically. */
  serverCommand: string[];
}

export interface InitializationOptions {
  hub?: string;
  room?: string;
  token?: string;
  user?: string;
  color?: string;
  completion_scope?: CompletionScope;
}

/** Only what is set: the server fills the rest from the environment, huddle.toml and defaults. */
export function initializationOptions(settings: Settings, token?: string): InitializationOptions {
  const options: InitializationOptions = {};
  const hub = settings.hub.trim();
  if (hub) {
    options.hub = hub;
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

/** Where a room's token is kept in SecretStorage: one per hub and room. */
export function tokenKey(hub: string, room: string): string {
  return `huddle.token ${hub.trim().replace(/\/+$/, '')} ${room.trim()}`;
}
