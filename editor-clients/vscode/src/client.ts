/**
 * The language client for `huddle lsp`: which command starts it, what it is told at initialize,
 * and the custom notifications it sends. A new client is made on every (re)start, because the
 * settings and the token travel in `initializationOptions`.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import * as readline from 'node:readline';
import * as vscode from 'vscode';
import {
  type CancellationToken,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  type Middleware,
  State,
} from 'vscode-languageclient/node';

import * as P from './core/protocol';
import { hubAddresses, initializationOptions, type Settings, tokenKeys } from './core/settings';
import { type Lookup, missingServerMessage, resolveServerCommand, type ServerCommand } from './core/serverCommand';
import { ServerLog } from './core/serverLog';
import { NotificationProgressFeature, type ProgressListener } from './ui/progress';

export interface ClientEvents {
  onStatus(status: P.Status): void;
  onPeers(params: P.PeersParams): void;
  onInlinePartial(params: P.InlinePartialParams): void;
  onSummaryPartial(params: P.SummaryPartialParams): void;
  /** The client stopped, could not start (`error` set), or was not started for want of a folder. */
  onStopped(error?: string, noFolder?: boolean): void;
  /** `$/progress` of server-initiated work (summaries). */
  onProgress: ProgressListener;
}

export function readSettings(): Settings {
  const config = vscode.workspace.getConfiguration('huddle');
  const scope = config.get<string>('completionScope', 'auto');
  const hub = config.get<unknown>('hub', '');
  // An untrusted workspace must not pick the command that runs: only the user's own setting counts.
  const command = vscode.workspace.isTrusted
    ? config.get<string[]>('server.command', [])
    : (config.inspect<string[]>('server.command')?.globalValue ?? []);
  return {
    hub: Array.isArray(hub) ? hubAddresses(hub) : typeof hub === 'string' ? hub : '',
    room: config.get<string>('room', ''),
    user: config.get<string>('user', ''),
    color: config.get<string>('color', ''),
    completionScope: scope === 'line' || scope === 'block' ? scope : 'auto',
    serverCommand: Array.isArray(command) ? command.filter((c) => typeof c === 'string') : [],
  };
}

function isExecutable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The folder the server runs in (vscode-languageclient's default too): the first workspace folder. */
function serverCwd(): string | undefined {
  return (vscode.workspace.workspaceFolders ?? []).find((f) => f.uri.scheme === 'file')?.uri.fsPath;
}

/**
 * Whether `python` can import Huddle (the last resort, `python -m huddle.cli lsp`), asked in the
 * folder the server would run in: `-c` puts the current directory on sys.path, so a probe run
 * from the extension host's own directory can find a `huddle/` the server will not.
 */
function importsHuddle(python: string): boolean {
  const probe = spawnSync(python, ['-c', 'import importlib.util, sys; sys.exit(importlib.util.find_spec("huddle") is None)'], {
    cwd: serverCwd(),
    timeout: 10_000,
    stdio: 'ignore',
  });
  return probe.status === 0;
}

function serverLookup(): Lookup {
  return {
    folders: (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath),
    trusted: vscode.workspace.isTrusted,
    platform: process.platform,
    isExecutable,
    pathEnv: process.env.PATH ?? '',
    importsHuddle,
  };
}

export function serverCommand(settings: Settings): ServerCommand | undefined {
  return resolveServerCommand(settings.serverCommand, serverLookup());
}

/** stdout carries the protocol; stderr is the server's log, each line at its own level. */
function pipeServerLog(input: NodeJS.ReadableStream, channel: vscode.LogOutputChannel): void {
  const log = new ServerLog((level, text) => {
    channel[level](text);
  });
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 }).on('line', (line) => {
    log.line(line);
  });
}

/** A document URI as the server knows it (vscode-languageclient's default conversion). */
export function protocolUri(uri: vscode.Uri): string {
  return uri.toString();
}

/** A URI from the server as VS Code compares them (vscode-languageclient's default conversion). */
export function codeUri(uri: string): vscode.Uri {
  return vscode.Uri.parse(uri);
}

type Disposable = { dispose(): unknown };

export function hasFolder(): boolean {
  return (vscode.workspace.workspaceFolders ?? []).some((f) => f.uri.scheme === 'file');
}

export class HuddleClient implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private perClient: Disposable[] = [];
  private starting: Promise<void> | undefined;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly output: vscode.LogOutputChannel,
    private readonly events: ClientEvents,
    private readonly middleware: Middleware,
  ) {}

  get running(): LanguageClient | undefined {
    return this.client?.state === State.Running ? this.client : undefined;
  }

  /** Stop whatever runs, then start with the current settings and token. */
  restart(): Promise<void> {
    const previous = (this.starting ?? Promise.resolve()).catch(() => undefined);
    const next = previous.then(() => this.stop()).then(() => this.start());
    this.starting = next;
    return next;
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    for (const d of this.perClient) d.dispose();
    this.perClient = [];
    if (client !== undefined) {
      try {
        await client.dispose(5000);
      } catch (error) {
        this.output.warn(`stopping the language server: ${String(error)}`);
      }
    }
    this.events.onStopped();
  }

  private async start(): Promise<void> {
    if (!hasFolder()) {
      this.output.info('no folder is open: nothing to share, the language server is not started');
      this.events.onStopped(undefined, true);
      return;
    }
    const settings = readSettings();
    let token: string | undefined;
    for (const key of tokenKeys(settings)) {
      token = await this.context.secrets.get(key);
      if (token) break;
    }
    const options = initializationOptions(settings, token);
    const command = serverCommand(settings);
    if (command === undefined) {
      const message = missingServerMessage(serverLookup());
      this.output.error(message);
      this.events.onStopped(message);
      void vscode.window.showErrorMessage(message, 'Open Settings', 'Show Log').then((choice) => {
        if (choice === 'Open Settings') void vscode.commands.executeCommand('workbench.action.openSettings', 'huddle.server.command');
        if (choice === 'Show Log') this.output.show();
      });
      return;
    }
    this.output.info(
      `starting ${[command.command, ...command.args].join(' ')} (${command.source}); ` +
        (options.hub ? `hub ${hubAddresses(options.hub).join(', ')}, room ${options.room ?? '(workspace name)'}` : 'solo mode'),
    );
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }],
      initializationOptions: options,
      outputChannel: this.output,
      middleware: this.middleware,
      stdioOptions: {
        stdout: (input, channel) => {
          pipeServerLog(input, channel);
        },
        stderr: (input, channel) => {
          pipeServerLog(input, channel);
        },
      },
    };
    const client = new LanguageClient(
      'huddle',
      'Huddle',
      { command: command.command, args: command.args, options: { env: process.env, cwd: serverCwd() } },
      clientOptions,
    );
    const events = this.events;
    client.registerFeature(new NotificationProgressFeature(client, events.onProgress));
    this.perClient.push(
      client.onNotification(P.STATUS, (status: P.Status) => {
        events.onStatus(status);
      }),
      client.onNotification(P.PEERS, (params: P.PeersParams) => {
        events.onPeers(params);
      }),
      client.onNotification(P.INLINE_PARTIAL, (params: P.InlinePartialParams) => {
        events.onInlinePartial(params);
      }),
      client.onNotification(P.SUMMARY_PARTIAL, (params: P.SummaryPartialParams) => {
        events.onSummaryPartial(params);
      }),
      client.onDidChangeState((change) => {
        if (change.newState === State.Stopped && this.client === client) events.onStopped();
      }),
    );
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.output.error(`the language server did not start: ${message}`);
      events.onStopped(`${message} (command: ${command.command}, from ${command.source})`);
      void vscode.window
        .showErrorMessage(
          `Huddle could not start its language server (${command.command}). Install Huddle in the workspace's .venv or on PATH, or set huddle.server.command.`,
          'Open Settings',
          'Show Log',
        )
        .then((choice) => {
          if (choice === 'Open Settings') void vscode.commands.executeCommand('workbench.action.openSettings', 'huddle.server.command');
          if (choice === 'Show Log') this.output.show();
        });
    }
  }

  /** `workspace/executeCommand` on the running server. */
  async command<T>(name: P.CommandName, args: unknown[] = [], token?: CancellationToken): Promise<T> {
    await this.starting?.catch(() => undefined);
    const client = this.running;
    if (client === undefined) throw new Error('the Huddle language server is not running');
    return (await client.sendRequest(ExecuteCommandRequest.type, { command: name, arguments: args }, token)) as T;
  }

  notifyCursor(params: P.CursorParams): void {
    void this.running?.sendNotification(P.CURSOR, params);
  }

  dispose(): void {
    void this.stop();
  }
}
