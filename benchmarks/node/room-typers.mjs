// Room benchmark typers: Yjs clients in one room that type at a human rate with cursor presence.
//
// Usage: node room-typers.mjs CONFIG.json
//   {"url": "ws://127.0.0.1:PORT", "room": "bench/room", "file": "src/room.py",
//    "client": "y-websocket" | "hocuspocus", "clientsDir": "/path/to/tests/node",
//    "clients": [{"user": "node3", "token": ".." | null, "line": 12 | null}, ...],
//    "seed": "text of the file" | null, "rate": 5, "connectTimeout": 60}
//
// Every client with a `line` types one letter at the end of that line `rate` times a second
// (an open loop: a slot the process is too busy for is skipped, never made up in a burst) and
// after every key sets its awareness in the schema huddle lsp and the web client use
// {user, file, cursor: {anchor, head}} (Yjs relative positions). y-protocols broadcasts every
// setLocalState, even when the position did not move (it sticks to the line break while one
// types at the end of a line): presence traffic on every key, the heavy case. huddle lsp only
// publishes a cursor that moved. Clients without a line only
// receive. With `seed`, client 0 creates the file with that text (the hub comparison, where no
// language server opens it); otherwise every client waits until the file is in the room.
//
// The driver steers the phases over stdin, one word a line: "start" (typing begins: warmup),
// "measure" (the measured window opens), "stop" (typing ends, the window closes), "report"
// (print the result and exit). stdout carries JSON lines: {"event":"ready"} once every client
// has the file, {"event":"ok","phase":..} after each phase word, {"event":"result", ...}.
//
// Latency is measured between clients of this process (one clock): a key's send time is kept
// by its (client id, clock); a receiver sees the remote clocks a transaction added (one clock per
// letter: nothing else is inserted) and takes each one's send time. Keys typed by clients of
// other processes (language servers) are counted as received, not timed.
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { performance } from 'node:perf_hooks'

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const here = path.dirname(fileURLToPath(import.meta.url))
const clientsDir = path.resolve(here, config.clientsDir ?? '../../tests/node')

// The same import dance as loadgen.mjs: one yjs instance shared with the provider.
const esmEntry = (dir) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
  let entry = pkg.exports?.['.'] ?? pkg.exports?.default ?? pkg.module ?? pkg.main
  while (typeof entry === 'object' && entry !== null) entry = entry.import ?? entry.default
  return pathToFileURL(path.join(dir, entry)).href
}
const CLIENT = config.client ?? 'y-websocket'
const modules = path.join(CLIENT === 'hocuspocus' ? here : clientsDir, 'node_modules')
const Y = await import(esmEntry(path.join(modules, 'yjs')))
const providerModule = CLIENT === 'hocuspocus'
  ? await import(esmEntry(path.join(modules, '@hocuspocus', 'provider')))
  : await import(esmEntry(path.join(modules, 'y-websocket')))
const wsDir = CLIENT === 'hocuspocus'
  ? path.join(modules, '@hocuspocus', 'provider', 'node_modules', 'ws')
  : path.join(modules, 'ws')
const { default: WebSocket } = await import(esmEntry(wsDir))

const FILE = config.file
const PERIOD = 1000 / (config.rate ?? 5)
const CONNECT_TIMEOUT = (config.connectTimeout ?? 60) * 1000
const LETTERS = 'abcdefghijklmnopqrstuvwxyz'
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const fail = (message) => {
  emit({ event: 'error', error: message })
  setTimeout(() => process.exit(1), 100)
}
process.setMaxListeners(config.clients.length + 10)

const openProvider = (doc, token) => {
  if (CLIENT === 'hocuspocus') {
    const provider = new providerModule.HocuspocusProvider({
      url: config.url, name: config.room, document: doc, token: token ?? 'none', WebSocketPolyfill: WebSocket
    })
    const synced = new Promise((resolve) => {
      const on = ({ state }) => { if (state) { provider.off('synced', on); resolve() } }
      provider.on('synced', on)
    })
    return { provider, awareness: provider.awareness, synced }
  }
  const provider = new providerModule.WebsocketProvider(config.url, config.room, doc, {
    WebSocketPolyfill: WebSocket, params: token ? { token } : {}, disableBc: true
  })
  const synced = new Promise((resolve) => {
    const on = (state) => { if (state) { provider.off('sync', on); resolve() } }
    provider.on('sync', on)
  })
  return { provider, awareness: provider.awareness, synced }
}

// -- measurement state ----------------------------------------------------------------------
let measuring = false
const sendTimes = new Map() // client id -> Map(clock -> send time), keys sent while measuring
let sent = 0 // keys sent while measuring
let received = 0 // remote keys applied while measuring, over all clients
let awarenessUpdates = 0 // remote awareness changes seen while measuring, over all clients
let skipped = 0 // typing slots missed because this process was busy
const latencies = []

const clients = []
const connect = (spec, i) => new Promise((resolve, reject) => {
  const doc = new Y.Doc()
  const files = doc.getMap('files')
  const { provider, awareness, synced } = openProvider(doc, spec.token)
  const client = { i, spec, doc, files, provider, awareness, text: null, typed: 0, timer: null }
  const timer = setTimeout(() => reject(new Error(`client ${i} (${spec.user}) did not sync`)), CONNECT_TIMEOUT)
  const done = () => { clearTimeout(timer); resolve(client) }
  synced.then(() => {
    if (i === 0 && config.seed != null && !files.has(FILE)) {
      const text = new Y.Text()
      files.set(FILE, text)
      text.insert(0, config.seed)
    }
    const ready = () => files.has(FILE) && files.get(FILE).length > 0
    if (ready()) return done()
    const wait = () => { if (ready()) { doc.off('update', wait); done() } }
    doc.on('update', wait)
  })
})

const observe = (client) => {
  client.text = client.files.get(FILE)
  const own = client.doc.clientID
  client.text.observe((_event, tr) => {
    if (tr.local || !measuring) return
    const now = performance.now()
    tr.afterState.forEach((after, id) => {
      if (id === own) return
      const before = tr.beforeState.get(id) ?? 0
      if (after <= before) return
      received += after - before
      const times = sendTimes.get(id)
      if (times === undefined) return // a language server's keys: counted, not timed
      for (let clock = before; clock < after; clock++) {
        const at = times.get(clock)
        if (at !== undefined) latencies.push(now - at)
      }
    })
  })
  // 'update', not 'change': a cursor typing at the end of a line keeps its relative position
  // (it sticks to the line break), yet every setLocalState is broadcast and relayed.
  client.awareness.on('update', ({ added, updated }, origin) => {
    if (!measuring || origin === 'local') return
    awarenessUpdates += added.filter((id) => id !== own).length + updated.filter((id) => id !== own).length
  })
}

/** The UTF-16 index of the end of `line` (0-based) in `text`. */
const endOfLine = (text, line) => {
  const s = text.toString()
  let at = 0
  for (let k = 0; k < line; k++) at = s.indexOf('\n', at) + 1
  const end = s.indexOf('\n', at)
  return end < 0 ? s.length : end
}

const typeKey = (client) => {
  const { text, doc, awareness, spec } = client
  const index = endOfLine(text, spec.line)
  const letter = LETTERS[client.typed++ % LETTERS.length]
  if (measuring) {
    const clock = Y.getState(doc.store, doc.clientID)
    let times = sendTimes.get(doc.clientID)
    if (times === undefined) sendTimes.set(doc.clientID, (times = new Map()))
    times.set(clock, performance.now())
    sent++
  }
  text.insert(index, letter)
  const at = Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(text, index + 1))
  awareness.setLocalState({ user: { name: spec.user, color: '#1e90ff' }, file: FILE, cursor: { anchor: at, head: at } })
}

const startTyping = (client, start, phase) => {
  let k = 0
  const tick = () => {
    typeKey(client)
    const now = performance.now()
    const next = Math.max(k + 1, Math.ceil((now - start - phase) / PERIOD))
    skipped += next - k - 1
    k = next
    client.timer = setTimeout(tick, Math.max(0, start + phase + k * PERIOD - now))
  }
  client.timer = setTimeout(tick, Math.max(0, start + phase - performance.now()))
}

const percentile = (sorted, p) => {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

let measureStart = 0
let measureSeconds = 0
const phases = {
  start: () => {
    const typists = clients.filter((c) => c.spec.line != null)
    const start = performance.now() + 20
    typists.forEach((c, k) => startTyping(c, start, (k / typists.length) * PERIOD))
  },
  measure: () => { measuring = true; measureStart = performance.now() },
  stop: () => {
    for (const c of clients) clearTimeout(c.timer)
    measureSeconds = (performance.now() - measureStart) / 1000
    // stays "measuring" for deliveries of keys sent in the window; the driver waits the grace
  },
  report: () => {
    const sorted = Float64Array.from(latencies).sort()
    const round = (v) => (v === null ? null : Math.round(v * 1000) / 1000)
    const receivers = clients.length
    emit({
      event: 'result',
      clients: clients.length,
      typists: clients.filter((c) => c.spec.line != null).length,
      seconds: round(measureSeconds),
      sent,
      received,
      skipped_slots: skipped,
      timed: sorted.length,
      latency_ms: { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), max: round(percentile(sorted, 100)) },
      awareness_updates: awarenessUpdates,
      awareness_per_client_per_s: measureSeconds ? round(awarenessUpdates / receivers / measureSeconds) : null,
      text_length: clients[0].text.length,
      converged: clients.every((c) => c.text.toString() === clients[0].text.toString())
    })
    for (const c of clients) c.provider.destroy()
    process.stdout.write('', () => process.exit(0))
  }
}

const main = async () => {
  const specs = config.clients
  clients.push(await connect(specs[0], 0)) // creates the file (seed) before the others look
  clients.push(...await Promise.all(specs.slice(1).map((s, k) => connect(s, k + 1))))
  clients.forEach(observe)
  for (const c of clients) {
    c.awareness.setLocalState({ user: { name: c.spec.user, color: '#1e90ff' }, file: FILE })
  }
  emit({ event: 'ready' })
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const word = line.trim()
    if (!phases[word]) return fail(`unknown phase ${word}`)
    phases[word]()
    if (word !== 'report') emit({ event: 'ok', phase: word })
  })
}

main().catch((err) => fail(String(err?.stack ?? err)))
