/**
 * End to end against the real `huddle lsp` and `huddle serve` (with the embedded model): every
 * custom notification the extension consumes and every command it calls, fed through the same
 * core modules the extension renders with. Nothing of Huddle is faked; VS Code is stood in for
 * by harness.ts's editor (VS Code itself cannot be installed here).
 */
import assert from 'node:assert/strict';
import { accessSync, constants, statSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { InlineCompletionList } from 'vscode-languageserver-protocol';
import { InlineCompletionRequest, WorkDoneProgressCancelNotification } from 'vscode-languageserver-protocol/node';

import { ghostLabel, remainingGhost } from '../../src/core/ghost';
import { UI } from '../../src/core/ids';
import { type Invite, parseInvite } from '../../src/core/invite';
import { marksFor, teammates } from '../../src/core/presence';
import * as P from '../../src/core/protocol';
import { resolveServerCommand } from '../../src/core/serverCommand';
import { initializationOptions, type Settings } from '../../src/core/settings';
import { statusView } from '../../src/core/status';
import { SummaryBoard } from '../../src/core/summaries';
import { Editor, Hub, offsetAt, type ProgressParams, REPO, tempDir } from './harness';

const ROOM = 'team/vscode';
const APP = 'def greet(name):\n    return "héllo 🦊 " + name\n';

/** How the extension finds the server for a workspace: this repository's own .venv. */
const found = resolveServerCommand([], {
  folders: [REPO],
  trusted: true,
  platform: process.platform,
  isExecutable: (file) => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  },
  pathEnv: process.env.PATH ?? '',
  importsHuddle: () => false,
});
if (found === undefined) throw new Error(`no huddle in ${REPO}/.venv/bin or on PATH: run ./dev setup`);
const server = found;

function settingsFor(invite: Invite, user: string, color: string): Settings {
  return { hub: invite.hub, room: invite.room, user, color, completionScope: 'line', serverCommand: [] };
}

describe('huddle lsp, as the extension drives it', () => {
  const tmp = tempDir('huddle-vscode-e2e-');
  const hub = new Hub(path.join(tmp.dir, 'hub'), {
    HUDDLE_HUB__LLM__SUMMARY_MAX_TOKENS: '24',
    HUDDLE_HUB__LLM__MAX_TOKENS: '16',
  });
  let ann: Editor;
  let bob: Editor;
  let annInvite: Invite;
  const editors: Editor[] = [];
  const started = Date.now() / 1000;

  before(async () => {
    assert.equal(server.source, 'workspace .venv', `run ./dev setup first (${server.command})`);
    await hub.start();
    const [annLink, bobLink] = await Promise.all([hub.invite(ROOM, 'ann'), hub.invite(ROOM, 'bob')]);
    annInvite = parseInvite(annLink);
    const bobInvite = parseInvite(bobLink);
    ann = new Editor('ann', path.join(tmp.dir, 'ann'), server);
    bob = new Editor('bob', path.join(tmp.dir, 'bob'), server);
    editors.push(ann, bob);
    await Promise.all([
      ann.start(initializationOptions(settingsFor(annInvite, 'ann', '#e6194b'), annInvite.token)),
      bob.start(initializationOptions(settingsFor(bobInvite, 'bob', '#3cb44b'), bobInvite.token)),
    ]);
  });

  after(async () => {
    await Promise.all(editors.map((e) => e.stop()));
    await hub.stop();
    tmp.remove();
  });

  test('the join link `huddle invite` prints is what Join Session parses', () => {
    assert.equal(annInvite.hub, hub.url);
    assert.equal(annInvite.room, ROOM);
    assert.equal(annInvite.claims.user, 'ann');
    assert.equal(annInvite.claims.role, 'edit');
  });

  test('initialize: inline completion, and every command the extension calls', () => {
    const caps = ann.initialize?.capabilities;
    assert.ok(caps?.inlineCompletionProvider, 'no inlineCompletionProvider');
    const offered = new Set(caps.executeCommandProvider?.commands ?? []);
    for (const name of Object.values(P.Command)) assert.ok(offered.has(name), `server lacks ${name}`);
    // vscode-languageclient registers these as VS Code commands: ours must be other ids.
    for (const id of Object.values(UI)) assert.ok(!offered.has(id), `${id} collides with a server command`);
  });

  test('huddle/status: connected to the room, as the status bar shows it', async () => {
    const status = await ann.next<P.Status>(P.STATUS, (s) => s.state === 'connected');
    assert.equal(status.room, ROOM);
    assert.equal(status.user, 'ann');
    assert.equal(status.color, '#e6194b');
    assert.equal(status.hub, hub.url);
    assert.equal(status.solo, false);
    await bob.next<P.Status>(P.STATUS, (s) => s.state === 'connected');
    assert.equal(statusView({ status, peers: [] }).text, '$(broadcast) team/vscode');
  });

  let annApp = '';
  let bobApp = '';

  test('huddle/peers: a teammate’s cursor and selection, in this editor’s UTF-16 coordinates', async () => {
    annApp = await ann.open('app.py', APP);
    bobApp = await bob.open('app.py', APP);
    await Promise.all([shared(ann, 'app.py'), shared(bob, 'app.py')]);
    // Bob selects backwards from after `🦊 "` (UTF-16 column 22: the fox counts two) to the `h`.
    const params: P.CursorParams = {
      uri: bobApp,
      position: { line: 1, character: 12 },
      selection: { start: { line: 1, character: 22 }, end: { line: 1, character: 12 } },
    };
    await bob.connection.sendNotification(P.CURSOR, params);
    const peers = await ann.next<P.PeersParams>(P.PEERS, (p) =>
      p.peers.some((peer) => peer.name === 'bob' && peer.position?.character === 12 && peer.selection !== undefined),
    );
    const peer = peers.peers.find((p) => p.name === 'bob');
    assert.deepEqual(peer, {
      clientId: peer?.clientId,
      name: 'bob',
      color: '#3cb44b',
      file: 'app.py',
      uri: annApp,
      position: { line: 1, character: 12 },
      selection: { start: { line: 1, character: 22 }, end: { line: 1, character: 12 } },
    });
    // What the extension draws in ann's editor, and lists in the tree and the status bar.
    assert.deepEqual(
      marksFor(peers.peers, (uri) => uri === annApp).map(({ name, color, cursor, selection }) => ({ name, color, cursor, selection })),
      [
        {
          name: 'bob',
          color: '#3cb44b',
          cursor: { line: 1, character: 12 },
          selection: { start: { line: 1, character: 12 }, end: { line: 1, character: 22 } },
        },
      ],
    );
    assert.deepEqual(
      teammates(peers.peers).map((t) => [t.name, t.editors.map((e) => e.file)]),
      [['bob', ['app.py']]],
    );
    const status = await ann.command<P.Status>(P.Command.status);
    assert.match(statusView({ status, peers: peers.peers }).text, /\$\(person\) 1$/);
  });

  test('follow: ann is shown the file bob moves to; unfollow', async () => {
    assert.deepEqual(await ann.command(P.Command.follow, ['bob']), { following: 'bob' });
    const util = await bob.open('util.py', 'X = 1\n');
    await shared(bob, 'util.py');
    await bob.connection.sendNotification(P.CURSOR, { uri: util, position: { line: 0, character: 1 } });
    const shown = await ann.changed.until('window/showDocument', () => ann.shown.find((s) => s.uri === ann.uri('util.py')));
    assert.equal(shown.takeFocus, true);
    assert.deepEqual(await ann.command(P.Command.unfollow), { following: null });
  });

  test('undo my last change: ann’s own edit goes, bob’s stays', async () => {
    await ann.type(annApp, 0, '# ann\n');
    const bobAt = APP.length; // the end of the file
    await bob.changed.until('ann’s edit at bob’s', () => (bob.doc(bobApp).text.startsWith('# ann\n') ? true : undefined));
    await bob.type(bobApp, bobAt + '# ann\n'.length, '# bob\n');
    await ann.changed.until('bob’s edit at ann’s', () => (ann.doc(annApp).text.endsWith('# bob\n') ? true : undefined));
    assert.deepEqual(await ann.command(P.Command.undoMine), { undone: true });
    const expected = `${APP}# bob\n`;
    await ann.changed.until('the undo', () => (ann.doc(annApp).text === expected ? true : undefined));
    await bob.changed.until('the undo at bob’s', () => (bob.doc(bobApp).text === expected ? true : undefined));
  });

  test('share: huddle.invite gives a link that joins, read-only as asked; a bad token is rejected', async () => {
    const params: P.InviteParams = { role: 'read', ttl_seconds: 3600, user: 'carol' };
    const result = await ann.command<P.InviteResult>(P.Command.invite, [params]);
    const invite = parseInvite(result.url);
    assert.deepEqual(
      { hub: invite.hub, room: invite.room, token: invite.token, user: invite.claims.user, role: invite.claims.role },
      { hub: hub.url, room: ROOM, token: result.token, user: 'ann/carol', role: 'read' },
    ); // an editor's invite names the guest after the inviter: nobody mints another's name
    assert.deepEqual([result.user, result.invited_by], ['ann/carol', 'ann']);
    // What Share offers to copy too: the hub's page for the room, the same token in its fragment.
    assert.equal(result.web_url, `${hub.url.replace(/^ws/, 'http')}/${ROOM}#token=${result.token}`);
    assert.ok(Date.parse(result.expires_at) > Date.now());
    const carol = new Editor('carol', path.join(tmp.dir, 'carol'), server);
    const mallory = new Editor('mallory', path.join(tmp.dir, 'mallory'), server);
    editors.push(carol, mallory);
    await Promise.all([
      carol.start(initializationOptions(settingsFor(invite, 'carol', '#4363d8'), invite.token)),
      mallory.start(initializationOptions(settingsFor(invite, 'mallory', '#911eb4'), `${invite.token.slice(0, -4)}AAAA`)),
    ]);
    const readOnly = await carol.next<P.Status>(P.STATUS, (s) => s.state === 'read-only');
    assert.equal(statusView({ status: readOnly, peers: [] }).text, '$(eye) team/vscode (read-only)');
    const rejected = await mallory.next<P.Status>(P.STATUS, (s) => s.state === 'rejected');
    const view = statusView({ status: rejected, peers: [] });
    assert.equal(view.warning, true);
    assert.ok(rejected.reason, 'a rejection says why');
    await Promise.all([carol.stop(), mallory.stop()]);
  });

  test('inline completion: huddle/inlineCompletionPartial streams ghost text before the answer', async () => {
    const source = 'def add(a, b):\n    return ';
    const uri = await ann.open('calc.py', `${source}\n`);
    await shared(ann, 'calc.py');
    const position = { line: 1, character: '    return '.length };
    const seenBefore: P.InlinePartialParams[][] = [];
    const answer = ann.connection.sendRequest(InlineCompletionRequest.type, {
      textDocument: { uri },
      position,
      context: { triggerKind: 2 },
    });
    void answer.then(() => seenBefore.push([...ann.all<P.InlinePartialParams>(P.INLINE_PARTIAL)]));
    const result = (await answer) as InlineCompletionList | null;
    assert.ok(result && result.items.length === 1, 'no completion');
    const item = result.items[0];
    assert.equal(typeof item.insertText, 'string');
    const text = item.insertText as string;
    assert.ok(text.trim(), 'an empty completion');
    const partials = seenBefore[0].filter((p) => p.textDocument.uri === uri);
    assert.ok(partials.length > 0, 'no huddle/inlineCompletionPartial before the answer');
    for (const p of partials) assert.deepEqual(p.position, position);
    const last = partials[partials.length - 1];
    assert.ok(text.startsWith(last.text.trimEnd()), `${JSON.stringify(text)} vs partial ${JSON.stringify(last.text)}`);
    // The extension draws the partial at the caret, and what is left of it as the user types.
    const line = '    return ';
    assert.equal(remainingGhost(last, { position, lineText: line }), last.text || undefined);
    if (last.text.length > 1) {
      const typed = line + last.text[0];
      assert.equal(remainingGhost(last, { position: { line: 1, character: typed.length }, lineText: typed }), last.text.slice(1));
    }
    assert.ok(!ghostLabel(text).includes('\n'));
  });

  test('accepting a completion: the item’s command tells huddle lsp; huddle.status shows the rate', async () => {
    const uri = await ann.open('accept.py', 'def mul(a, b):\n    return \n');
    await shared(ann, 'accept.py');
    const position = { line: 1, character: '    return '.length };
    const result = (await ann.connection.sendRequest(InlineCompletionRequest.type, {
      textDocument: { uri },
      position,
      context: { triggerKind: 2 },
    })) as InlineCompletionList | null;
    assert.ok(result && result.items.length === 1, 'no completion');
    const item = result.items[0];
    const command = item.command;
    assert.ok(command !== undefined && command.command === P.Command.completionAccepted, JSON.stringify(item));
    const args = command.arguments ?? [];
    assert.equal(typeof args[0], 'string', 'the completion’s id');
    // What VS Code does on Tab: insert the item's text, then run its command.
    const offset = offsetAt(ann.doc(uri).text, position);
    await ann.type(uri, offset, item.insertText as string);
    await ann.command(command.command, args);
    const deadline = Date.now() + 20_000;
    let status = await ann.command<P.Status>(P.Command.status);
    while ((status.acceptance?.accepted ?? 0) < 1) {
      if (Date.now() > deadline) throw new Error(`no acceptance in huddle.status: ${JSON.stringify(status)}`);
      await new Promise((resolve) => setTimeout(resolve, 25)); // the status command is the only way to ask
      status = await ann.command<P.Status>(P.Command.status);
    }
    const acceptance = status.acceptance;
    assert.ok(acceptance !== undefined && acceptance.shown >= 1 && acceptance.accepted === 1, JSON.stringify(acceptance));
    assert.match(statusView({ status, peers: [] }).tooltip, /AI completions: \d+ shown, \d+% taken \(1 accepted/);
  });

  test('summaries: $/progress (cancellable) and huddle/summaryPartial fill the document; the result settles it', async () => {
    const board = new SummaryBoard();
    const range = { start: { line: 0, character: 0 }, end: { line: 1, character: 10 } };
    const runs: [P.SummaryKind, P.CommandName, unknown[]][] = [
      ['file', P.Command.summarizeFile, [{ uri: annApp }]],
      ['selection', P.Command.summarizeSelection, [{ uri: annApp, range }]],
      ['catch_up', P.Command.catchUp, []],
      ['session', P.Command.summarizeSession, [{ since: started - 60, until: Date.now() / 1000 + 1 }]],
    ];
    const streamed: P.SummaryKind[] = [];
    for (const [kind, command, args] of runs) {
      const entry = board.start(kind, kind);
      const rendered: string[] = [];
      const seen = ann.all<P.SummaryPartialParams>(P.SUMMARY_PARTIAL).length;
      const result = await ann.command<P.SummaryResult>(command, args);
      const partials = ann.all<P.SummaryPartialParams>(P.SUMMARY_PARTIAL).slice(seen);
      for (const p of partials) {
        assert.equal(board.partial(p)?.id, entry.id, `${kind}: a partial went astray`);
        rendered.push(board.render(entry.id));
      }
      assert.equal(result.kind, kind);
      assert.ok(result.markdown.trim(), `${kind}: empty markdown`);
      assert.ok(result.token.startsWith('huddle-summary-'));
      assert.ok(ann.progressTokens.includes(result.token), `${kind}: no window/workDoneProgress/create`);
      const progress = ann
        .all<ProgressParams<{ kind: string; cancellable?: boolean }>>('$/progress')
        .filter((p) => p.token === result.token)
        .map((p) => p.value);
      assert.equal(progress[0]?.kind, 'begin');
      assert.equal(progress[0]?.cancellable, true);
      await ann.changed.until(`${kind}: progress end`, () =>
        ann.all<ProgressParams<{ kind: string }>>('$/progress').some((p) => p.token === result.token && p.value.kind === 'end')
          ? true
          : undefined,
      );
      if (kind === 'catch_up' || kind === 'session') {
        // bob's edits are in the exact part the hub computes.
        const app = result.files.find((f) => f.path === 'app.py');
        assert.ok(app?.authors.includes('bob'), `${kind}: ${JSON.stringify(result.files)}`);
      }
      if (result.summary.trim()) {
        streamed.push(kind);
        assert.ok(partials.length > 0, `${kind}: the model wrote without huddle/summaryPartial`);
        assert.ok(partials.every((p) => p.token === result.token && p.kind === kind));
        assert.match(rendered[rendered.length - 1], /_…writing/);
      }
      board.finish(entry.id, result);
      assert.equal(board.render(entry.id), `# ${kind}\n\n${result.markdown.trimEnd()}\n`);
    }
    assert.ok(streamed.includes('file'), `the model wrote nothing for a whole file (streamed: ${streamed.join(', ')})`);
  });

  test('a summary cancelled from its progress notification stops', async () => {
    const before = ann.progressTokens.length;
    const asked = ann.command<P.SummaryResult>(P.Command.summarizeFile, [{ uri: annApp }]);
    const outcome = asked.then(
      () => 'finished',
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    const token = await ann.changed.until('the progress token', () => ann.progressTokens[before]);
    // VS Code shows the Cancel button once the progress has begun.
    await ann.next<ProgressParams<{ kind: string }>>('$/progress', (p) => p.token === token && p.value.kind === 'begin');
    await ann.connection.sendNotification(WorkDoneProgressCancelNotification.type, { token });
    assert.match(await outcome, /cancel/i);
    const end = await ann.next<ProgressParams<{ kind: string; message?: string }>>(
      '$/progress',
      (p) => p.token === token && p.value.kind === 'end',
    );
    assert.equal(end.value.message, 'cancelled');
  });
});

/** Wait until the server shares `file` in the room (its status lists it). */
async function shared(editor: Editor, file: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = await editor.command<P.Status>(P.Command.status);
    if (status.shared?.includes(file)) return;
    if (Date.now() > deadline) throw new Error(`${editor.name}: ${file} never shared: ${JSON.stringify(status)}\n${editor.stderr()}`);
    // Ask again once the server has had a moment: the status command is the only way to ask.
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
