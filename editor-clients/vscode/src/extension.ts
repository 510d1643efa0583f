/**
 * Huddle for VS Code: starts `huddle lsp`, passes it the settings, and renders what it sends.
 * Everything collaborative (document sync, follow, AI) is the language server's; this side only
 * draws presence, streams ghost text and summaries, and offers the commands.
 */
import * as vscode from 'vscode';

import { codeUri, HuddleClient, readSettings } from './client';
import { cursorOf, registerCommands } from './commands';
import { UI } from './core/ids';
import type { CursorParams } from './core/protocol';
import { tokenKeys } from './core/settings';
import { Throttle } from './core/throttle';
import { StreamingGhost } from './ui/ghost';
import { Presence } from './ui/presence';
import { SummaryDocuments } from './ui/summaries';

const CURSOR_INTERVAL_MS = 50;
const RESTART_DELAY_MS = 300;

let running: HuddleClient | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('Huddle', { log: true });
  const presence = new Presence(UI.showStatus, codeUri);
  const ghost = new StreamingGhost(codeUri);
  const summaries = new SummaryDocuments();
  let lastState: string | undefined;

  const huddle = new HuddleClient(
    context,
    output,
    {
      onStatus: (status) => {
        presence.setStatus(status);
        if (status.state === 'rejected' && lastState !== 'rejected') {
          void vscode.window
            .showWarningMessage(`Huddle: the hub refused this editor: ${status.reason || 'no reason given'}.`, 'Join Session…')
            .then((choice) => choice && vscode.commands.executeCommand(UI.join));
        }
        lastState = status.state;
      },
      onPeers: (params) => presence.setPeers(Array.isArray(params.peers) ? params.peers : []),
      onInlinePartial: (params) => ghost.onPartial(params),
      onSummaryPartial: (params) => summaries.onPartial(params),
      onProgress: (token, message, percentage) => summaries.onProgress(token, message, percentage),
      onStopped: (error, noFolder) => {
        lastState = undefined;
        presence.stopped(error, noFolder);
        ghost.clear();
      },
    },
    ghost.middleware,
  );
  running = huddle;

  const cursor = new Throttle<CursorParams>(CURSOR_INTERVAL_MS, (params) => huddle.notifyCursor(params));
  const sendCursor = (editor: vscode.TextEditor | undefined): void => {
    const params = editor && cursorOf(huddle, editor);
    if (params) cursor.push(params);
  };

  // Settings changes restart the client (they travel in initializationOptions), once per burst.
  let restartTimer: ReturnType<typeof setTimeout> | undefined;
  let reconfiguring = false;
  const restartSoon = (): void => {
    if (restartTimer !== undefined) clearTimeout(restartTimer);
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      void huddle.restart();
    }, RESTART_DELAY_MS);
  };
  const reconfigure = async (fn: () => Promise<void>): Promise<void> => {
    reconfiguring = true;
    try {
      await fn();
    } finally {
      reconfiguring = false;
    }
    if (restartTimer !== undefined) clearTimeout(restartTimer);
    restartTimer = undefined;
    await huddle.restart();
  };

  context.subscriptions.push(
    output,
    presence,
    ghost,
    summaries,
    huddle,
    { dispose: () => cursor.dispose() },
    ...registerCommands({ context, client: huddle, presence, summaries, output, reconfigure }),
    vscode.window.onDidChangeTextEditorSelection((e) => {
      if (e.textEditor === vscode.window.activeTextEditor) sendCursor(e.textEditor);
    }),
    vscode.window.onDidChangeActiveTextEditor(sendCursor),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!reconfiguring && e.affectsConfiguration('huddle') && !e.affectsConfiguration('huddle.trace')) restartSoon();
    }),
    vscode.workspace.onDidGrantWorkspaceTrust(restartSoon),
    // The server shares the first folder: (re)start when that changes.
    vscode.workspace.onDidChangeWorkspaceFolders(restartSoon),
    context.secrets.onDidChange((e) => {
      const settings = readSettings();
      if (!reconfiguring && tokenKeys(settings).includes(e.key)) restartSoon();
    }),
  );
  void huddle.restart();
}

/** VS Code waits for this: the language server gets its shutdown and exit. */
export function deactivate(): Promise<void> | undefined {
  const stopping = running?.stop();
  running = undefined;
  return stopping;
}
