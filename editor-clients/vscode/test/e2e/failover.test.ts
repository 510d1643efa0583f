/**
 * The hub setting as a list (a cluster's nodes), through the extension's initializationOptions to
 * the real `huddle lsp`: it skips an address where nobody listens and connects to the live hub.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import * as path from 'node:path';
import { after, before, test } from 'node:test';

import { parseInvite } from '../../src/core/invite';
import * as P from '../../src/core/protocol';
import { initializationOptions } from '../../src/core/settings';
import { Editor, Hub, PYTHON, tempDir } from './harness';

const ROOM = 'team/failover';
const tmp = tempDir('huddle-vscode-failover-');
const hub = new Hub(path.join(tmp.dir, 'hub'), { HUDDLE_HUB__LLM__PRELOAD: 'false' });
let ann: Editor | undefined;

/** A loopback port nobody listens on (it was free a moment ago). */
async function deadAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return `ws://127.0.0.1:${address.port}`;
}

before(() => hub.start());

after(async () => {
  await ann?.stop();
  await hub.stop();
  tmp.remove();
});

test('huddle.hub as a list: the server skips a dead node and names the live one it joined', async () => {
  const invite = parseInvite(await hub.invite(ROOM, 'ann'));
  const addresses = [await deadAddress(), invite.hub];
  const options = initializationOptions(
    { hub: addresses, room: invite.room, user: 'ann', color: '', completionScope: 'auto', serverCommand: [] },
    invite.token,
  );
  assert.deepEqual(options.hub, addresses);
  ann = new Editor('ann', path.join(tmp.dir, 'ann'), { command: PYTHON, args: ['-m', 'huddle.cli', 'lsp'] });
  await ann.start(options);
  const status = await ann.next<P.Status>(P.STATUS, (s) => s.state === 'connected');
  assert.equal(status.hub, hub.url);
  assert.equal(status.room, ROOM);
});
