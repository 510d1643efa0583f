/** The status bar item: connection state and who is here, from `huddle/status` and `huddle/peers`. */
import { teammates } from './presence';
import type { Peer, Status } from './protocol';

export interface StatusView {
  /** With VS Code's `$(icon)` syntax. */
  text: string;
  tooltip: string;
  /** Shown with the warning background. */
  warning: boolean;
}

export interface StatusContext {
  status?: Status;
  peers: readonly Peer[];
  following?: string;
  /** The language server could not start: why. */
  failed?: string;
  /** Nothing to share: no folder is open. */
  noFolder?: boolean;
}

const ICONS: Record<Status['state'], string> = {
  connected: '$(broadcast)',
  reconnecting: '$(sync~spin)',
  offline: '$(debug-disconnect)',
  'read-only': '$(eye)',
  rejected: '$(error)',
};

export function statusView(ctx: StatusContext): StatusView {
  if (ctx.noFolder) {
    return { text: '$(circle-slash) Huddle', tooltip: 'Huddle shares the files of a folder: open one to start.', warning: false };
  }
  if (ctx.failed !== undefined) {
    return { text: '$(error) Huddle', tooltip: `Huddle could not start: ${ctx.failed}`, warning: true };
  }
  const status = ctx.status;
  if (status === undefined) {
    return { text: '$(loading~spin) Huddle', tooltip: 'Huddle is starting', warning: false };
  }
  const names = teammates(ctx.peers).map((t) => t.name);
  const here = names.length > 0 ? ` $(person) ${names.length}` : '';
  const follow = ctx.following ? ` $(eye) ${ctx.following}` : '';
  const where = status.solo ? 'solo' : (status.room ?? 'Huddle');
  const state = status.state === 'connected' ? '' : ` (${status.state})`;
  const text = `${status.solo && status.state === 'connected' ? '$(person)' : ICONS[status.state]} ${where}${state}${here}${follow}`;

  const lines: string[] = [];
  if (status.solo) {
    lines.push(`Huddle solo: not shared (room ${status.room ?? '?'} on a private hub). Run "Huddle: Join Session" to work with your team.`);
  } else {
    lines.push(`Huddle: ${status.state} to ${status.room ?? '?'} on ${status.hub ?? '?'} as ${status.user ?? '?'}`);
  }
  if (status.reason) lines.push(`Reason: ${status.reason}`);
  if (status.state === 'rejected') lines.push('Ask for a new invite link, then run "Huddle: Join Session".');
  if (status.state === 'read-only') lines.push('Read-only invite: your edits are not shared.');
  for (const mate of teammates(ctx.peers)) {
    const files = mate.editors.map((e) => e.file).filter((f): f is string => !!f);
    lines.push(`${mate.name}${files.length ? `: ${files.join(', ')}` : ''}`);
  }
  if (ctx.following) lines.push(`Following ${ctx.following}`);
  if (status.shared) lines.push(`Shared files open here: ${status.shared.length}`);
  if (status.repairs) lines.push(`Repairs: ${status.repairs}`);
  const ai = status.acceptance;
  if (ai !== undefined && ai.shown > 0) {
    const rate = ai.rate === null || ai.rate === undefined ? '' : `, ${Math.round(ai.rate * 100)}% taken`;
    const scope = ai.scope === 'line' ? '; one line at a time (you mostly take first lines)' : '';
    lines.push(`AI completions: ${ai.shown} shown${rate} (${ai.accepted} accepted, ${ai.partly} partly, ${ai.ignored} ignored)${scope}`);
  }
  return {
    text,
    tooltip: lines.join('\n'),
    warning: status.state === 'rejected' || status.state === 'offline' || status.state === 'reconnecting',
  };
}

/** An error as the user reads it: the server's messages already start with "Huddle". */
export function errorMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return /^Huddle\b/.test(text) ? text : `Huddle: ${text}`;
}
