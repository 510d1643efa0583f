/**
 * Summaries open as read-only markdown documents (`huddle-summary:` URIs) that fill while the
 * model writes (`huddle/summaryPartial`) and settle on the command's result.
 */
import * as vscode from 'vscode';

import type { SummaryKind, SummaryPartialParams, SummaryResult } from '../core/protocol';
import { errorMessage } from '../core/status';
import { SummaryBoard } from '../core/summaries';
import { Throttle } from '../core/throttle';

export const SCHEME = 'huddle-summary';
const REFRESH_MS = 80;

export class SummaryDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly board = new SummaryBoard();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly refreshers = new Map<number, Throttle<vscode.Uri>>();
  private readonly registration = vscode.workspace.registerTextDocumentContentProvider(SCHEME, this);

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.board.render(idOf(uri));
  }

  /** Run one summary: open its document at once, fill it as the text streams, settle it. */
  async run(
    kind: SummaryKind,
    title: string,
    ask: (token: vscode.CancellationToken) => Promise<SummaryResult>,
  ): Promise<void> {
    const entry = this.board.start(kind, title);
    const uri = vscode.Uri.from({ scheme: SCHEME, path: `/${entry.id}/${slug(title)}.md` });
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, { preview: false, viewColumn: vscode.ViewColumn.Beside, preserveFocus: true });
    const cancel = new vscode.CancellationTokenSource();
    // Closing the document before it is done cancels the summary.
    const closed = vscode.workspace.onDidCloseTextDocument((d) => {
      if (d.uri.toString() === uri.toString()) cancel.cancel();
    });
    try {
      this.board.finish(entry.id, await ask(cancel.token));
    } catch (error) {
      const message = errorMessage(error);
      const cancelled = cancel.token.isCancellationRequested || /cancel/i.test(message);
      this.board.fail(entry.id, message, cancelled);
      if (!cancelled) void vscode.window.showErrorMessage(message);
    } finally {
      closed.dispose();
      cancel.dispose();
      this.refresh(entry.id, true);
    }
  }

  onPartial(params: SummaryPartialParams): void {
    const entry = this.board.partial(params);
    if (entry !== undefined) this.refresh(entry.id);
  }

  onProgress(token: string, message: string | undefined, percentage: number | undefined): void {
    const entry = this.board.progress(token, message, percentage);
    if (entry !== undefined) this.refresh(entry.id);
  }

  private refresh(id: number, final = false): void {
    const uri = vscode.Uri.from({ scheme: SCHEME, path: `/${id}/${slug(this.board.get(id)?.title ?? '')}.md` });
    let throttle = this.refreshers.get(id);
    if (throttle === undefined) {
      throttle = new Throttle(REFRESH_MS, (u) => this.changed.fire(u));
      this.refreshers.set(id, throttle);
    }
    if (final) {
      throttle.dispose();
      this.refreshers.delete(id);
      this.changed.fire(uri);
    } else {
      throttle.push(uri);
    }
  }

  dispose(): void {
    for (const t of this.refreshers.values()) t.dispose();
    this.registration.dispose();
    this.changed.dispose();
  }
}

function idOf(uri: vscode.Uri): number {
  return Number(uri.path.split('/')[1]);
}

function slug(title: string): string {
  return title.replace(/[^\w.-]+/g, ' ').trim() || 'summary';
}
