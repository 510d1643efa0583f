/**
 * AI completions: vscode-languageclient turns the server's `textDocument/inlineCompletion` into
 * VS Code's inline suggestions; this adds ghost text while the answer streams in
 * (`huddle/inlineCompletionPartial`), drawn as a decoration at the caret and removed as soon as
 * the request returns and VS Code shows the finished completion.
 */
import * as vscode from 'vscode';
import type { Middleware } from 'vscode-languageclient/node';

import { ghostLabel, remainingGhost } from '../core/ghost';
import type { InlinePartialParams } from '../core/protocol';

/** A partial nobody asked about for this long is stale (the request was dropped). */
const STALE_MS = 15_000;

export class StreamingGhost implements vscode.Disposable {
  private readonly type = vscode.window.createTextEditorDecorationType({
    after: { color: new vscode.ThemeColor('editorGhostText.foreground'), fontStyle: 'italic' },
  });
  /** The latest partial per document (VS Code's URI string), and when it came. */
  private readonly partials = new Map<string, { params: InlinePartialParams; at: number }>();
  private shownIn: vscode.TextEditor | undefined;
  private readonly disposables: { dispose(): unknown }[];

  constructor(private readonly asCodeUri: (uri: string) => vscode.Uri) {
    this.disposables = [
      this.type,
      vscode.window.onDidChangeTextEditorSelection((e) => {
        if (e.textEditor === vscode.window.activeTextEditor) this.render();
      }),
      vscode.window.onDidChangeActiveTextEditor(() => this.render()),
      vscode.workspace.onDidCloseTextDocument((doc) => this.partials.delete(doc.uri.toString())),
    ];
  }

  readonly middleware: Middleware = {
    provideInlineCompletionItems: async (document, position, context, token, next) => {
      try {
        return await next(document, position, context, token);
      } finally {
        // VS Code now shows the finished completion (or nothing): drop the streaming one.
        if (!token.isCancellationRequested) this.clear(document.uri.toString());
      }
    },
  };

  onPartial(params: InlinePartialParams): void {
    const key = this.asCodeUri(params.textDocument.uri).toString();
    this.partials.set(key, { params, at: Date.now() });
    this.render();
  }

  clear(key?: string): void {
    if (key === undefined) this.partials.clear();
    else this.partials.delete(key);
    this.render();
  }

  private render(): void {
    const editor = vscode.window.activeTextEditor;
    if (this.shownIn !== undefined && this.shownIn !== editor) {
      this.shownIn.setDecorations(this.type, []);
      this.shownIn = undefined;
    }
    if (editor === undefined) return;
    const key = editor.document.uri.toString();
    const entry = this.partials.get(key);
    let options: vscode.DecorationOptions[] = [];
    if (entry !== undefined && Date.now() - entry.at > STALE_MS) {
      this.partials.delete(key);
    } else if (entry !== undefined && editor.selection.isEmpty) {
      const caret = editor.selection.active;
      const rest = remainingGhost(entry.params, {
        position: { line: caret.line, character: caret.character },
        lineText: editor.document.lineAt(caret.line).text,
      });
      if (rest !== undefined) {
        options = [{ range: new vscode.Range(caret, caret), renderOptions: { after: { contentText: ghostLabel(rest) } } }];
      }
    }
    editor.setDecorations(this.type, options);
    this.shownIn = options.length > 0 ? editor : undefined;
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
