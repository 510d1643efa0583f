/** The extension's commands (ids in core/ids.ts). */
import * as vscode from 'vscode';

import { codeUri, type HuddleClient, protocolUri } from './client';
import { UI } from './core/ids';
import { InviteError, parseInvite } from './core/invite';
import { cursorParams, orderRange, type Teammate, teammates } from './core/presence';
import * as P from './core/protocol';
import { hubAddresses, tokenKey, tokenKeys } from './core/settings';
import { errorMessage, statusView } from './core/status';
import { SESSION_SPANS, sessionRange, TITLES } from './core/summaries';
import { type Presence, toPosition } from './ui/presence';
import type { SummaryDocuments } from './ui/summaries';


const INVITE_TTL_SECONDS = 7 * 24 * 3600;

export interface Deps {
  context: vscode.ExtensionContext;
  client: HuddleClient;
  presence: Presence;
  summaries: SummaryDocuments;
  output: vscode.LogOutputChannel;
  /** Settings are about to change on purpose: restart once, after `fn`. */
  reconfigure(fn: () => Promise<void>): Promise<void>;
}

export function registerCommands(deps: Deps): vscode.Disposable[] {
  const { client, presence, summaries } = deps;
  const guarded = (id: string, fn: (...args: never[]) => Promise<unknown>): vscode.Disposable =>
    vscode.commands.registerCommand(id, async (...args: never[]) => {
      try {
        await fn(...args);
      } catch (error) {
        const message = errorMessage(error);
        deps.output.error(`${id}: ${message}`);
        void vscode.window.showErrorMessage(message);
      }
    });

  return [
    guarded(UI.join, (link?: string) => join(deps, link)),
    guarded(UI.share, () => share(deps)),
    guarded(UI.leave, () => leave(deps)),
    guarded(UI.follow, (target?: string | { mate?: Teammate }) => follow(deps, target)),
    guarded(UI.unfollow, async () => {
      await client.command(P.Command.unfollow);
      presence.setFollowing(undefined);
    }),
    guarded(UI.summarizeFile, async (uri?: vscode.Uri) => {
      const doc = uri instanceof vscode.Uri ? await vscode.workspace.openTextDocument(uri) : activeFile().document;
      const name = vscode.workspace.asRelativePath(doc.uri);
      await summaries.run('file', `${TITLES.file}: ${name}`, (token) =>
        client.command<P.SummaryResult>(P.Command.summarizeFile, [{ uri: protocolUri(doc.uri) }], token),
      );
    }),
    guarded(UI.summarizeSelection, async () => {
      const editor = activeFile();
      if (editor.selection.isEmpty) throw new Error('select the code to summarise first');
      const { start, end } = editor.selection;
      const range = orderRange(start, end);
      const name = vscode.workspace.asRelativePath(editor.document.uri);
      await summaries.run('selection', `${TITLES.selection} in ${name}:${start.line + 1}`, (token) =>
        client.command<P.SummaryResult>(
          P.Command.summarizeSelection,
          [{ uri: protocolUri(editor.document.uri), range: plainRange(range) }],
          token,
        ),
      );
    }),
    guarded(UI.catchUp, () =>
      summaries.run('catch_up', TITLES.catch_up, (token) => client.command<P.SummaryResult>(P.Command.catchUp, [], token)),
    ),
    guarded(UI.summarizeSession, async () => {
      const pick = await vscode.window.showQuickPick(
        SESSION_SPANS.map((s) => ({ label: s.label, span: s.span })),
        { title: 'Huddle: summarise the session of…' },
      );
      if (pick === undefined) return;
      const range = sessionRange(pick.span, new Date());
      await summaries.run('session', `${TITLES.session}: ${pick.label.toLowerCase()}`, (token) =>
        client.command<P.SummaryResult>(P.Command.summarizeSession, [range], token),
      );
    }),
    guarded(UI.undoMine, async () => {
      const result = await client.command<{ undone: boolean }>(P.Command.undoMine);
      if (!result.undone) void vscode.window.showInformationMessage('Huddle: nothing of yours to undo.');
    }),
    guarded(UI.showStatus, () => showStatus(deps)),
    guarded(UI.reveal, async (uri?: string, position?: P.Position) => {
      if (typeof uri !== 'string') return;
      const at = toPosition(position ?? { line: 0, character: 0 });
      await vscode.window.showTextDocument(codeUri(uri), { selection: new vscode.Range(at, at) });
    }),
  ];
}

function activeFile(): vscode.TextEditor {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined || editor.document.uri.scheme !== 'file') throw new Error('open a file of the workspace first');
  return editor;
}

function plainRange(range: P.Range): P.Range {
  return {
    start: { line: range.start.line, character: range.start.character },
    end: { line: range.end.line, character: range.end.character },
  };
}

async function join(deps: Deps, link?: string): Promise<void> {
  let pasted = link;
  if (typeof pasted !== 'string') {
    const clip = (await vscode.env.clipboard.readText()).trim();
    pasted = await vscode.window.showInputBox({
      title: 'Huddle: Join Session',
      prompt: 'Paste the invite link (ws://host:port/room?token=...)',
      value: /^(join:\s*)?(wss?|https?):\/\/\S+token=/i.test(clip) ? clip : '',
      ignoreFocusOut: true,
      password: false,
      validateInput: (text) => {
        if (!text.trim()) return undefined;
        try {
          parseInvite(text);
          return undefined;
        } catch (error) {
          return error instanceof InviteError ? error.message : String(error);
        }
      },
    });
    if (!pasted?.trim()) return;
  }
  const invite = parseInvite(pasted);
  const config = vscode.workspace.getConfiguration('huddle');
  const target = vscode.workspace.workspaceFolders?.length
    ? vscode.ConfigurationTarget.Workspace
    : vscode.ConfigurationTarget.Global;
  await deps.reconfigure(async () => {
    await deps.context.secrets.store(tokenKey(invite.hub, invite.room), invite.token);
    await config.update('hub', invite.hub, target);
    await config.update('room', invite.room, target);
    if (!config.get<string>('user') && invite.claims.user) await config.update('user', invite.claims.user, target);
  });
  const as = invite.claims.user ? ` as ${invite.claims.user}` : '';
  const role = invite.claims.role === 'read' ? ' (read-only)' : '';
  void vscode.window.showInformationMessage(`Huddle: joining ${invite.room} on ${invite.hub}${as}${role}.`);
}

async function share(deps: Deps): Promise<void> {
  const status = deps.presence.status;
  if (status?.solo) {
    throw new Error('solo mode has no hub teammates can reach: start one (huddle serve), then Join Session');
  }
  if (status?.state !== 'connected') {
    throw new Error(`cannot invite while ${status?.state ?? 'starting'}${status?.state === 'read-only' ? ' (read-only members cannot invite)' : ''}`);
  }
  const role = await vscode.window.showQuickPick(
    [
      { label: 'Can edit', role: 'edit' as const },
      { label: 'Read only', role: 'read' as const, description: 'sees documents and cursors; changes are dropped' },
    ],
    { title: 'Huddle: invite a teammate who…' },
  );
  if (role === undefined) return;
  const user = await vscode.window.showInputBox({
    title: 'Huddle: the teammate’s name',
    prompt: 'The name the invite is for (shown in history and summaries)',
    value: 'guest',
    validateInput: (text) => (text.trim() && text.trim().length <= 64 ? undefined : '1 to 64 characters'),
  });
  if (user === undefined) return;
  const params: P.InviteParams = { role: role.role, ttl_seconds: INVITE_TTL_SECONDS, user: user.trim() };
  const invite = await deps.client.command<P.InviteResult>(P.Command.invite, [params]);
  await vscode.env.clipboard.writeText(invite.url);
  // The same invite as a link to the hub's browser client (hubs before it send none).
  const web = invite.web_url ?? null;
  const browser = web === null ? '' : ', or open it in a browser (Copy Browser Link)';
  const copyWeb = 'Copy Browser Link';
  const choice = await vscode.window.showInformationMessage(
    `Huddle: invite link for ${invite.user} (${invite.role}, until ${invite.expires_at}) copied to the clipboard. They run "Huddle: Join Session" and paste it${browser}.`,
    ...(web === null ? [] : [copyWeb]),
  );
  if (choice === copyWeb && web !== null) await vscode.env.clipboard.writeText(web);
}

async function leave(deps: Deps): Promise<void> {
  const config = vscode.workspace.getConfiguration('huddle');
  const hub = hubAddresses(config.get<unknown>('hub', ''));
  if (hub.length === 0) {
    void vscode.window.showInformationMessage('Huddle: not in a shared session (solo mode).');
    return;
  }
  const room = config.get<string>('room', '');
  await deps.reconfigure(async () => {
    for (const key of tokenKeys({ hub, room })) await deps.context.secrets.delete(key);
    const hubSetting = config.inspect<unknown>('hub');
    const roomSetting = config.inspect<string>('room');
    for (const [key, setting] of [['hub', hubSetting], ['room', roomSetting]] as const) {
      if (setting?.workspaceFolderValue !== undefined) {
        for (const folder of vscode.workspace.workspaceFolders ?? []) {
          await vscode.workspace.getConfiguration('huddle', folder).update(key, undefined, vscode.ConfigurationTarget.WorkspaceFolder);
        }
      }
      if (setting?.workspaceValue !== undefined) await config.update(key, undefined, vscode.ConfigurationTarget.Workspace);
      if (setting?.globalValue !== undefined) await config.update(key, undefined, vscode.ConfigurationTarget.Global);
    }
  });
  void vscode.window.showInformationMessage(`Huddle: left ${room || 'the session'}; working solo.`);
}

async function follow(deps: Deps, target?: string | { mate?: Teammate }): Promise<void> {
  let name = typeof target === 'string' ? target : target?.mate?.name;
  if (name === undefined) {
    const mates = teammates(deps.presence.peers);
    if (mates.length === 0) throw new Error('nobody else is here to follow');
    const pick = await vscode.window.showQuickPick(
      mates.map((m) => ({ label: m.name, description: m.editors.map((e) => e.file).filter(Boolean).join(', ') })),
      { title: 'Huddle: follow…' },
    );
    if (pick === undefined) return;
    name = pick.label;
  }
  await deps.client.command(P.Command.follow, [name]);
  deps.presence.setFollowing(name);
}

async function showStatus(deps: Deps): Promise<void> {
  const status = await deps.client.command<P.Status>(P.Command.status);
  deps.presence.setStatus(status);
  deps.output.info(`status: ${JSON.stringify(status)}`);
  const view = statusView({ status, peers: deps.presence.peers, following: deps.presence.following });
  const actions = status.solo ? ['Join Session…', 'Show Log'] : ['Copy Invite Link', 'Leave Session', 'Show Log'];
  const choice = await vscode.window.showInformationMessage(view.tooltip.split('\n')[0], { modal: true, detail: view.tooltip.split('\n').slice(1).join('\n') }, ...actions);
  if (choice === 'Join Session…') await vscode.commands.executeCommand(UI.join);
  if (choice === 'Copy Invite Link') await vscode.commands.executeCommand(UI.share);
  if (choice === 'Leave Session') await vscode.commands.executeCommand(UI.leave);
  if (choice === 'Show Log') deps.output.show();
}

/** `huddle/cursor` for the active editor's selection. */
export function cursorOf(client: HuddleClient, editor: vscode.TextEditor): P.CursorParams | undefined {
  if (editor.document.uri.scheme !== 'file') return undefined;
  return cursorParams(protocolUri(editor.document.uri), editor.selection.anchor, editor.selection.active);
}
