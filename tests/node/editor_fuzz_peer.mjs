// The Node Yjs teammate of the real-editor fuzzer (tests/editor_fuzz.py): a stock yjs +
// y-websocket client like yclient.mjs, with one more op. `edit` replaces [start, end) (UTF-16
// code units, as Yjs counts) by `text` only if the file still holds `expect`: an update that
// arrived between the fuzzer's read and its edit makes it read and choose again, so the fuzzer
// knows exactly what each deletion removed.
// Usage: node editor_fuzz_peer.mjs URL ROOM TOKEN (JSON lines on stdin/stdout)
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [url, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(url, room, doc, {
  WebSocketPolyfill: WebSocket, params: { token }, disableBc: true
})
const files = doc.getMap('files')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
provider.on('sync', (synced) => { if (synced) out({ event: 'synced' }) })

const ops = {
  create: ({ file, text }) => { const t = new Y.Text(); t.insert(0, text); files.set(file, t) },
  get: ({ file }) => ({ text: files.has(file) ? files.get(file).toString() : null }),
  edit: ({ file, expect, start, end, text }) => {
    const t = files.get(file)
    if (t.toString() !== expect) return { applied: false }
    doc.transact(() => {
      if (end > start) t.delete(start, end - start)
      if (text) t.insert(start, text)
    })
    return { applied: true, text: t.toString() }
  },
  quit: () => { provider.destroy(); setTimeout(() => process.exit(0), 10) }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line)
  try {
    out({ id: msg.id, ok: true, ...(ops[msg.op](msg) || {}) })
  } catch (err) {
    out({ id: msg.id, ok: false, error: String(err) })
  }
})
