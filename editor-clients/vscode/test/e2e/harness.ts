/**
 * The real thing, minus VS Code: a `huddle serve` hub and `huddle lsp` processes, driven through
 * vscode-languageserver-protocol (the stack vscode-languageclient is built on) by an editor that
 * behaves like VS Code where it matters: it applies the server's versioned edits (refusing stale
 * ones) and echoes them back as `didChange`, creates work-done progress, shows documents.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

import {
  type ApplyWorkspaceEditParams,
  ApplyWorkspaceEditRequest,
  type ClientCapabilities,
  createProtocolConnection,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  ExitNotification,
  InitializedNotification,
  type InitializeResult,
  InitializeRequest,
  type ProtocolConnection,
  RegistrationRequest,
  ShowDocumentRequest,
  type ShowDocumentParams,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  type TextDocumentEdit,
  type TextEdit,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
  ConfigurationRequest,
} from 'vscode-languageserver-protocol/node';

import type { InitializationOptions } from '../../src/core/settings';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const PYTHON = path.join(REPO, '.venv', 'bin', 'python');

/** Variables `huddle lsp` would read before its defaults: not from the developer's shell. */
const HUDDLE_ENV = ['HUDDLE_HUB_URL', 'HUDDLE_ROOM', 'HUDDLE_TOKEN', 'HUDDLE_USER', 'HUDDLE_COMPLETION_SCOPE'];

export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const inherited = Object.entries(process.env).filter(([key]) => !HUDDLE_ENV.includes(key));
  return { ...Object.fromEntries(inherited), PYTHONUNBUFFERED: '1', ...extra };
}

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Resolves when `check` passes, re-checking on every `poke`; fails after `ms`. */
export class Waiters {
  private waiters = new Set<() => void>();

  poke(): void {
    for (const w of [...this.waiters]) w();
  }

  until<T>(what: string, check: () => T | undefined, ms = 20_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const attempt = (): void => {
        let value: T | undefined;
        try {
          value = check();
        } catch (error) {
          done();
          reject(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (value !== undefined) {
          done();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(attempt);
      };
      this.waiters.add(attempt);
      attempt();
    });
  }
}

export class Hub {
  url = '';
  private proc: ChildProcess | undefined;
  private log = '';

  constructor(
    readonly dataDir: string,
    private readonly env: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    const proc = spawn(PYTHON, ['-m', 'huddle.cli', 'serve', '--port', '0', '--data-dir', this.dataDir], {
      env: cleanEnv(this.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    proc.stderr.on('data', (chunk: Buffer) => (this.log = (this.log + chunk.toString()).slice(-20_000)));
    this.url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`the hub did not start:\n${this.log}`)), 30_000);
      proc.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /huddle hub on (ws:\/\/\S+)/.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the hub exited (${code}):\n${this.log}`));
      });
    });
  }

  /** `huddle invite ROOM --user USER`: the `join:` line it prints. */
  async invite(room: string, user: string, role: 'edit' | 'read' = 'edit'): Promise<string> {
    const { stdout } = await promisify(execFile)(
      PYTHON,
      ['-m', 'huddle.cli', 'invite', room, '--user', user, '--role', role, '--ttl', '1h', '--url', this.url, '--data-dir', this.dataDir],
      { env: cleanEnv() },
    );
    const line = stdout.split('\n').find((l) => l.startsWith('join:'));
    if (line === undefined) throw new Error(`huddle invite printed no join line: ${stdout}`);
    return line;
  }

  logTail(): string {
    return this.log.slice(-4000);
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || !running(proc)) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    await exited;
  }
}

interface Doc {
  uri: string;
  version: number;
  text: string;
}

/** What vscode-languageclient 11 announces, for the parts `huddle lsp` looks at. */
export const CAPABILITIES: ClientCapabilities = {
  general: { positionEncodings: ['utf-16'] },
  window: { workDoneProgress: true, showDocument: { support: true } },
  workspace: {
    applyEdit: true,
    workspaceEdit: { documentChanges: true },
    executeCommand: { dynamicRegistration: true },
    configuration: true,
  },
  textDocument: {
    synchronization: { dynamicRegistration: true, didSave: true },
    completion: { completionItem: { snippetSupport: true } },
    inlineCompletion: { dynamicRegistration: true },
  },
};

export interface ProgressParams<T> {
  token: string | number;
  value: T;
}

export class Editor {
  readonly connection: ProtocolConnection;
  readonly notifications = new Map<string, unknown[]>();
  readonly shown: ShowDocumentParams[] = [];
  readonly progressTokens: string[] = [];
  readonly docs = new Map<string, Doc>();
  readonly changed = new Waiters();
  initialize: InitializeResult | undefined;
  private readonly proc: ChildProcess;
  private log = '';

  constructor(
    readonly name: string,
    readonly root: string,
    command: { command: string; args: string[] },
  ) {
    mkdirSync(root, { recursive: true });
    this.proc = spawn(command.command, command.args, { env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr?.on('data', (chunk: Buffer) => (this.log = (this.log + chunk.toString()).slice(-20_000)));
    if (!this.proc.stdout || !this.proc.stdin) throw new Error('no stdio');
    this.connection = createProtocolConnection(
      new StreamMessageReader(this.proc.stdout),
      new StreamMessageWriter(this.proc.stdin),
    );
    const record = (method: string, params: unknown): void => {
      const list = this.notifications.get(method) ?? [];
      list.push(params);
      this.notifications.set(method, list);
      this.changed.poke();
    };
    this.connection.onUnhandledNotification((message) => record(message.method, message.params));
    this.connection.onRequest(ApplyWorkspaceEditRequest.type, (params) => this.applyEdit(params));
    this.connection.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
      // As vscode-languageclient does: follow the token's $/progress from its creation on.
      this.connection.onProgress(WorkDoneProgress.type, token, (value) => record('$/progress', { token, value }));
      this.progressTokens.push(String(token));
      this.changed.poke();
    });
    this.connection.onRequest(ShowDocumentRequest.type, (params) => {
      this.shown.push(params);
      this.changed.poke();
      return { success: true };
    });
    this.connection.onRequest(RegistrationRequest.type, () => undefined);
    this.connection.onRequest(ConfigurationRequest.type, (params) => params.items.map(() => null));
    this.connection.listen();
  }

  async start(options: InitializationOptions): Promise<InitializeResult> {
    this.initialize = await this.connection.sendRequest(InitializeRequest.type, {
      processId: process.pid,
      // eslint-disable-next-line @typescript-eslint/no-deprecated -- VS Code sends it; huddle lsp reads it first.
      rootUri: this.uri(''),
      workspaceFolders: [{ uri: this.uri(''), name: path.basename(this.root) }],
      capabilities: CAPABILITIES,
      initializationOptions: options,
      clientInfo: { name: 'Visual Studio Code', version: '1.91.0' },
    });
    await this.connection.sendNotification(InitializedNotification.type, {});
    return this.initialize;
  }

  uri(relative: string): string {
    return pathToFileURL(path.join(this.root, relative)).toString().replace(/\/$/, '');
  }

  all<T>(method: string): T[] {
    return (this.notifications.get(method) ?? []) as T[];
  }

  /** The first notification of `method` (recorded already or to come) that `match` accepts. */
  next<T>(method: string, match: (params: T) => boolean, ms?: number): Promise<T> {
    return this.changed.until(method, () => this.all<T>(method).find(match), ms);
  }

  command<T>(command: string, args: unknown[] = []): Promise<T> {
    return this.connection.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }) as Promise<T>;
  }

  async open(relative: string, text: string): Promise<string> {
    const uri = this.uri(relative);
    this.docs.set(uri, { uri, version: 1, text });
    await this.connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri, languageId: 'python', version: 1, text },
    });
    return uri;
  }

  /** Types `text` at a UTF-16 offset, as VS Code reports a keystroke. */
  async type(uri: string, offset: number, text: string): Promise<void> {
    const doc = this.doc(uri);
    const start = positionAt(doc.text, offset);
    doc.text = doc.text.slice(0, offset) + text + doc.text.slice(offset);
    doc.version += 1;
    await this.connection.sendNotification(DidChangeTextDocumentNotification.type, {
      textDocument: { uri, version: doc.version },
      contentChanges: [{ range: { start, end: start }, text }],
    });
    this.changed.poke();
  }

  doc(uri: string): Doc {
    const doc = this.docs.get(uri);
    if (doc === undefined) throw new Error(`${uri} is not open`);
    return doc;
  }

  /** VS Code refuses an edit for a version it no longer has, applies the others, echoes them. */
  private applyEdit(params: ApplyWorkspaceEditParams): { applied: boolean } {
    const changes = (params.edit.documentChanges ?? []) as TextDocumentEdit[];
    for (const change of changes) {
      const doc = this.docs.get(change.textDocument.uri);
      if (doc === undefined || (change.textDocument.version !== null && change.textDocument.version !== doc.version)) {
        return { applied: false };
      }
    }
    for (const change of changes) {
      const doc = this.doc(change.textDocument.uri);
      const edits = [...(change.edits as TextEdit[])].sort(
        (a, b) => offsetAt(doc.text, b.range.start) - offsetAt(doc.text, a.range.start),
      );
      for (const edit of edits) {
        doc.text =
          doc.text.slice(0, offsetAt(doc.text, edit.range.start)) + edit.newText + doc.text.slice(offsetAt(doc.text, edit.range.end));
      }
      doc.version += 1;
      void this.connection.sendNotification(DidChangeTextDocumentNotification.type, {
        textDocument: { uri: doc.uri, version: doc.version },
        contentChanges: edits.map((e) => ({ range: e.range, text: e.newText })),
      });
    }
    this.changed.poke();
    return { applied: true };
  }

  stderr(): string {
    return this.log.slice(-4000);
  }

  async stop(): Promise<void> {
    if (!running(this.proc)) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    try {
      await Promise.race([
        this.connection.sendRequest(ShutdownRequest.type),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no answer to shutdown')), 5000)),
      ]);
      await this.connection.sendNotification(ExitNotification.type);
    } catch {
      this.proc.kill('SIGKILL');
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    if (running(this.proc)) this.proc.kill('SIGKILL');
    this.connection.dispose();
  }
}

function running(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}

export function offsetAt(text: string, pos: { line: number; character: number }): number {
  let offset = 0;
  for (let line = 0; line < pos.line; line++) {
    const next = text.indexOf('\n', offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return Math.min(offset + pos.character, text.length);
}

export function positionAt(text: string, offset: number): { line: number; character: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length - 1;
  return { line, character: offset - (before.lastIndexOf('\n') + 1) };
}
