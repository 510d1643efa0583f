/**
 * Who is here and where: teammates' cursors and selections as decorations in their colours, the
 * status bar item, and the Huddle Teammates tree. All of it is drawn from the last
 * `huddle/status` and `huddle/peers`; nothing is computed here that the core modules do not.
 */
import * as vscode from 'vscode';

import { FOLLOWING_CONTEXT, TEAMMATES_VIEW, UI } from '../core/ids';
import { followedPosition, marksFor, type Teammate, teammates, withAlpha } from '../core/presence';
import type { Peer, Position, Status } from '../core/protocol';
import { statusView } from '../core/status';

interface ColorStyles {
  cursor: vscode.TextEditorDecorationType;
  selection: vscode.TextEditorDecorationType;
  label: vscode.TextEditorDecorationType;
}

export class Presence implements vscode.Disposable {
  peers: Peer[] = [];
  status: Status | undefined;
  following: string | undefined;
  private failed: string | undefined;
  /** The followed teammate's place last brought into view (document and position). */
  private revealed: string | undefined;
  private noFolder = false;
  private readonly styles = new Map<string, ColorStyles>();
  private readonly statusItem: vscode.StatusBarItem;
  readonly tree: TeammatesTree;
  private readonly disposables: { dispose(): unknown }[] = [];

  constructor(
    statusCommand: string,
    /** A server URI to VS Code's, for comparing with a document's. */
    private readonly asCodeUri: (uri: string) => vscode.Uri,
  ) {
    this.statusItem = vscode.window.createStatusBarItem('huddle.status', vscode.StatusBarAlignment.Left, 100);
    this.statusItem.name = 'Huddle';
    this.statusItem.command = statusCommand;
    this.tree = new TeammatesTree(this);
    this.disposables.push(
      this.statusItem,
      vscode.window.registerTreeDataProvider(TEAMMATES_VIEW, this.tree),
      vscode.window.onDidChangeVisibleTextEditors(() => this.decorateAll()),
      vscode.window.onDidChangeActiveTextEditor(() => this.revealFollowed()),
    );
    this.render();
  }

  setStatus(status: Status): void {
    this.status = status;
    this.failed = undefined;
    this.noFolder = false;
    this.render();
  }

  setPeers(peers: Peer[]): void {
    this.peers = peers;
    this.render();
    this.decorateAll();
    this.revealFollowed();
  }

  setFollowing(name: string | undefined): void {
    this.following = name;
    this.revealed = undefined;
    void vscode.commands.executeCommand('setContext', FOLLOWING_CONTEXT, name !== undefined);
    this.render();
    this.revealFollowed();
  }

  /**
   * Following: the server brings the teammate's file to the front (`window/showDocument`); this
   * keeps their cursor in view as it moves. Only a move scrolls, so the user may look around
   * between the teammate's moves.
   */
  private revealFollowed(): void {
    const editor = vscode.window.activeTextEditor;
    if (this.following === undefined || editor === undefined) return;
    const key = editor.document.uri.toString();
    const at = followedPosition(this.peers, this.following, (uri) => this.asCodeUri(uri).toString() === key);
    if (at === undefined) return;
    const place = `${key}#${at.line}:${at.character}`;
    if (place === this.revealed) return;
    this.revealed = place;
    const position = editor.document.validatePosition(toPosition(at));
    editor.revealRange(new vscode.Range(position, position), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  /** The language server stopped (`error`: it could not start; `noFolder`: not started, nothing to share). */
  stopped(error?: string, noFolder = false): void {
    this.status = undefined;
    this.failed = error;
    this.noFolder = noFolder;
    this.peers = [];
    this.setFollowing(undefined);
    this.decorateAll();
  }

  private render(): void {
    const view = statusView({
      status: this.status,
      peers: this.peers,
      following: this.following,
      failed: this.failed,
      noFolder: this.noFolder,
    });
    this.statusItem.text = view.text;
    this.statusItem.tooltip = view.tooltip;
    this.statusItem.backgroundColor = view.warning ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.statusItem.show();
    this.tree.refresh();
  }

  private decorateAll(): void {
    for (const editor of vscode.window.visibleTextEditors) {
      const key = editor.document.uri.toString();
      const ranges = new Map<vscode.TextEditorDecorationType, vscode.DecorationOptions[]>();
      for (const style of this.styles.values()) {
        ranges.set(style.cursor, []);
        ranges.set(style.selection, []);
        ranges.set(style.label, []);
      }
      const marks = marksFor(this.peers, (uri) => this.asCodeUri(uri).toString() === key);
      for (const mark of marks) {
        const style = this.style(mark.color);
        const at = editor.document.validatePosition(toPosition(mark.cursor));
        const hover = new vscode.MarkdownString(`**${escapeMarkdown(mark.name)}** (Huddle)`);
        push(ranges, style.cursor, { range: new vscode.Range(at, at), hoverMessage: hover });
        const lineEnd = editor.document.lineAt(at.line).range.end;
        push(ranges, style.label, {
          range: new vscode.Range(lineEnd, lineEnd),
          renderOptions: { after: { contentText: `\u2190 ${mark.name}` } },
        });
        if (mark.selection) {
          const range = editor.document.validateRange(
            new vscode.Range(toPosition(mark.selection.start), toPosition(mark.selection.end)),
          );
          push(ranges, style.selection, { range, hoverMessage: hover });
        }
      }
      for (const [type, options] of ranges) editor.setDecorations(type, options);
    }
  }

  private style(color: string): ColorStyles {
    let style = this.styles.get(color);
    if (style === undefined) {
      style = {
        cursor: vscode.window.createTextEditorDecorationType({
          rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
          overviewRulerColor: color,
          overviewRulerLane: vscode.OverviewRulerLane.Center,
          before: { contentText: '\u200b', border: `1px solid ${color}`, margin: '0 -2px 0 0', width: '0' },
        }),
        selection: vscode.window.createTextEditorDecorationType({
          backgroundColor: withAlpha(color, 0.25),
          rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
        }),
        label: vscode.window.createTextEditorDecorationType({
          after: { color, margin: '0 0 0 2em', fontStyle: 'italic' },
        }),
      };
      this.styles.set(color, style);
    }
    return style;
  }

  dispose(): void {
    for (const style of this.styles.values()) {
      style.cursor.dispose();
      style.selection.dispose();
      style.label.dispose();
    }
    this.styles.clear();
    for (const d of this.disposables) d.dispose();
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

export function toPosition(p: Position): vscode.Position {
  return new vscode.Position(Math.max(0, p.line), Math.max(0, p.character));
}

function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!<>|]/g, '\\$&');
}

type Node = { kind: 'teammate'; mate: Teammate } | { kind: 'editor'; mate: Teammate; index: number };

/** Teammates, and under each the file each of their editors is in. */
export class TeammatesTree implements vscode.TreeDataProvider<Node> {
  private readonly changed = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly presence: Presence) {}

  refresh(): void {
    this.changed.fire(undefined);
  }

  getChildren(node?: Node): Node[] {
    if (node === undefined) {
      return teammates(this.presence.peers).map((mate) => ({ kind: 'teammate', mate }));
    }
    if (node.kind === 'teammate') {
      return node.mate.editors.map((_, index) => ({ kind: 'editor', mate: node.mate, index }));
    }
    return [];
  }

  getTreeItem(node: Node): vscode.TreeItem {
    const mate = node.mate;
    if (node.kind === 'teammate') {
      const item = new vscode.TreeItem(mate.name, vscode.TreeItemCollapsibleState.Expanded);
      const following = this.presence.following === mate.name;
      item.description = following ? 'following' : undefined;
      item.iconPath = new vscode.ThemeIcon(following ? 'eye' : 'account');
      item.tooltip = `${mate.name} (${mate.color})`;
      item.contextValue = 'teammate';
      item.id = `teammate:${mate.name}`;
      return item;
    }
    const editor = mate.editors[node.index];
    const item = new vscode.TreeItem(editor.file ?? '(no shared file open)', vscode.TreeItemCollapsibleState.None);
    item.id = `editor:${editor.clientId}`;
    item.iconPath = editor.file ? vscode.ThemeIcon.File : new vscode.ThemeIcon('circle-slash');
    if (editor.uri) {
      item.resourceUri = vscode.Uri.parse(editor.uri);
      item.description = editor.position ? `line ${editor.position.line + 1}` : undefined;
      item.command = {
        command: UI.reveal,
        title: 'Go to Teammate',
        arguments: [editor.uri, editor.position],
      };
    }
    return item;
  }
}
