// A stock Yjs + y-websocket client, driven by the test suite over stdin/stdout (JSON lines).
// Usage: node yclient.mjs URL ROOM [TOKEN]
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [url, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(url, room, doc, {
  WebSocketPolyfill: WebSocket,
  params: token ? { token } : {},
  disableBc: true
})
const files = doc.getMap('files')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

provider.on('sync', (synced) => { if (synced) out({ event: 'synced' }) })
provider.on('status', (e) => out({ event: 'status', status: e.status }))
provider.on('connection-close', (e) => out({ event: 'close', code: e ? e.code : null, reason: e ? e.reason : null }))
provider.on('closed', (e) => out({ event: 'closed', code: e.code, reason: e.reason }))

const text = (file) => {
  let t = files.get(file)
  if (!t) { t = new Y.Text(); files.set(file, t) }
  return t
}

// A tiny deterministic PRNG so a seed reproduces an edit sequence.
const rng = (seed) => () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff }
const ALPHABET = ['a', 'b', 'c', ' ', '\n', 'é', 'ß', '中', '😀', '👩‍💻', '\r\n']

const ops = {
  insert: ({ file, index, text: s }) => { text(file).insert(index, s) },
  delete: ({ file, index, length }) => { text(file).delete(index, length) },
  // At the end of the file as this client sees it now (no stale index from an earlier get).
  append: ({ file, text: s }) => { const t = text(file); t.insert(t.length, s) },
  random: ({ file, count, seed, deleteRatio = 0.3 }) => {
    const r = rng(seed)
    let inserted = 0
    for (let i = 0; i < count; i++) {
      const t = text(file)
      const len = t.length
      if (len > 0 && r() < deleteRatio) {
        // delete whole code points only: Yjs indexes UTF-16 code units
        const s = t.toString()
        const cps = Array.from(s)
        const at = Math.floor(r() * cps.length)
        const idx = cps.slice(0, at).join('').length
        t.delete(idx, cps[at].length)
      } else {
        const s = t.toString()
        const cps = Array.from(s)
        const at = Math.floor(r() * (cps.length + 1))
        const piece = ALPHABET[Math.floor(r() * ALPHABET.length)]
        t.insert(cps.slice(0, at).join('').length, piece)
        inserted += Array.from(piece).length
      }
    }
    return { inserted }
  },
  // Several inserts in one transaction: one update, which a language server sends its editor
  // as one applyEdit of several edits. Each index is in the text the previous insert made.
  inserts: ({ file, inserts }) => { doc.transact(() => { for (const { index, text: s } of inserts) text(file).insert(index, s) }) },
  // From now on, an event for each teammate's awareness change: their cursor's head as an
  // index into the text here (null where it is not in this file).
  watchAwareness: () => {
    provider.awareness.on('change', ({ added, updated }) => {
      const states = provider.awareness.getStates()
      for (const id of [...added, ...updated]) {
        const s = states.get(id)
        if (id === doc.clientID || !s) continue
        const rel = s.cursor?.head && s.file ? Y.createRelativePositionFromJSON(s.cursor.head) : null
        const abs = rel ? Y.createAbsolutePositionFromRelativePosition(rel, doc) : null
        out({ event: 'awareness', name: s.user?.name ?? null, file: s.file ?? null, head: abs ? abs.index : null })
      }
    })
  },
  get: () => ({ files: Object.fromEntries(Array.from(files.entries()).map(([k, v]) => [k, v.toString()])) }),
  awareness: ({ state }) => { provider.awareness.setLocalState(state) },
  // Presence as huddle lsp publishes it: a cursor at a UTF-16 index as Yjs relative positions.
  cursor: ({ file, index, user }) => {
    const at = Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(text(file), index))
    provider.awareness.setLocalState({ user, file, cursor: { anchor: at, head: at } })
  },
  peers: () => ({ peers: Array.from(provider.awareness.getStates().entries()).filter(([id]) => id !== doc.clientID).map(([, s]) => s) }),
  quit: () => { provider.destroy(); setTimeout(() => process.exit(0), 10) }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line)
  try {
    const result = ops[msg.op](msg) || {}
    out({ id: msg.id, ok: true, ...result })
  } catch (err) {
    out({ id: msg.id, ok: false, error: String(err) })
  }
})
