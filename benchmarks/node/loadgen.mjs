// Fan-out load generator: N Yjs clients in one room, in one process.
//
// Usage: node loadgen.mjs CONFIG.json
//   {"url": "ws://127.0.0.1:PORT", "room": "bench", "clients": 50, "tokens": [..] | null,
//    "urls": ["ws://127.0.0.1:P1", ...] | null,
//    "rate": 10, "warmup": 3, "duration": 10, "grace": 5, "connectTimeout": 60,
//    "clientsDir": "/path/to/tests/node", "client": "y-websocket" | "hocuspocus",
//    "mode": "fanout" | "rooms", "rooms": [20, 520], "roomTokens": [..] | null,
//    "docBytes": 1024}
//
// client "y-websocket" (default): stock yjs + y-websocket@3 providers from clientsDir.
// client "hocuspocus": @hocuspocus/provider clients from this folder (Hocuspocus prefixes
// every message with the document name, which stock y-websocket clients do not speak).
//
// urls (several nodes of one clustered server): client i connects to urls[i % urls.length]
// instead of url, and the result splits latency and deliveries into same-node (sender and
// receiver on one node) and cross-node ones.
//
// mode "fanout": every client inserts a token "|<sender>:<seq>|" at the end of the shared
// Y.Text files["bench.txt"] `rate` times a second. Every client observes the text and, for each
// token another client inserted, records the latency (receive time - send time; one process,
// one clock: performance.now()). Tokens sent during the measured window are followed until
// every other client has them or `grace` seconds after the window have passed; the result also
// counts the deliveries missing of every token sent, warmup included (missing_all), and whether
// all clients ended with the same text (converged).
// stdout carries JSON lines: {"event":"ready"}, {"event":"measure_start"},
// {"event":"measure_end"} and finally {"event":"result", ...}; the driver samples the
// server's CPU and memory between measure_start and measure_end.
//
// mode "rooms" (memory per open document): opens rooms "<room><k>" with one client each that
// writes `docBytes` of text into files["doc.txt"] and waits until the server has it (a second
// sync round trip on the same connection; Hocuspocus: its acknowledgement). It opens them up
// to rooms[0] in total, prints {"event":"rooms_open","rooms":rooms[0]}, waits for a line on
// stdin, goes on to rooms[1], and so on; after the last step it waits for stdin to close.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { performance } from 'node:perf_hooks'

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const here = path.dirname(fileURLToPath(import.meta.url))
const clientsDir = path.resolve(here, config.clientsDir ?? '../../tests/node')

// The stock clients live in tests/node (y-websocket@3 cannot sit next to the 1.5.4 server in
// one package); the Hocuspocus provider lives here. Import each package through its own "import"
// export so that this module and the provider share one yjs instance (two instances break Yjs'
// constructor checks).
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

/**
 * One client: a provider for `doc` in `room`, with the few things the load generator needs
 * from it whatever the protocol: `synced` (resolves once the first sync is done), `onClose`,
 * `confirmed` (resolves once the server has every local change made so far) and `destroy`.
 */
const openProvider = (room, doc, token, url = config.url) => {
  if (CLIENT === 'hocuspocus') {
    const provider = new providerModule.HocuspocusProvider({
      url,
      name: room,
      document: doc,
      token: token ?? 'none',
      WebSocketPolyfill: WebSocket
    })
    return {
      synced: new Promise((resolve) => {
        const on = ({ state }) => { if (state) { provider.off('synced', on); resolve() } }
        provider.on('synced', on)
      }),
      onClose: (fn) => provider.on('close', ({ event }) => fn(event)),
      // Hocuspocus acknowledges every update: nothing unconfirmed is left at 0
      confirmed: () => new Promise((resolve) => {
        if (provider.unsyncedChanges === 0) return resolve()
        const on = ({ number }) => {
          if (number === 0) { provider.off('unsyncedChanges', on); resolve() }
        }
        provider.on('unsyncedChanges', on)
      }),
      destroy: () => provider.destroy()
    }
  }
  const provider = new providerModule.WebsocketProvider(url, room, doc, {
    WebSocketPolyfill: WebSocket,
    params: token ? { token } : {},
    disableBc: true
  })
  const synced = () => new Promise((resolve) => {
    const on = (state) => { if (state) { provider.off('sync', on); resolve() } }
    provider.on('sync', on)
  })
  return {
    synced: synced(),
    onClose: (fn) => provider.on('connection-close', fn),
    // Every server here handles a connection's messages in order: its answer to a fresh sync
    // step 1 (a step 2) comes after it applied everything this client sent before.
    confirmed: () => {
      const done = synced()
      provider._synced = false // internal: lets the next step 2 emit 'sync' again
      provider.ws.send(syncStep1(doc))
      return done
    },
    destroy: () => provider.destroy()
  }
}

/** y-protocols' [messageSync, messageYjsSyncStep1, state vector] without importing lib0. */
const syncStep1 = (doc) => {
  const sv = Y.encodeStateVector(doc)
  const bytes = [0, 0]
  for (let n = sv.length; ; n >>>= 7) {
    if (n < 0x80) { bytes.push(n); break }
    bytes.push((n & 0x7f) | 0x80)
  }
  const out = new Uint8Array(bytes.length + sv.length)
  out.set(bytes)
  out.set(sv, bytes.length)
  return out
}

const N = config.clients
process.setMaxListeners(N + 10) // y-websocket adds a process 'exit' listener per provider
const RATE = config.rate ?? 10
const PERIOD = 1000 / RATE
const WARMUP = (config.warmup ?? 3) * 1000
const DURATION = (config.duration ?? 10) * 1000
const GRACE = (config.grace ?? 5) * 1000
const CONNECT_TIMEOUT = (config.connectTimeout ?? 60) * 1000
const FILE = 'bench.txt'
const TOKEN = /\|(\d+):(\d+)\|/g
const URLS = config.urls ?? [config.url]
const nodeOf = (i) => i % URLS.length
// clients on each node: a window token of a sender on node k is due at nodeSize[k] - 1
// same-node receivers and N - nodeSize[k] cross-node ones
const nodeSize = URLS.map(() => 0)
for (let i = 0; i < N; i++) nodeSize[nodeOf(i)]++

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const fail = (message) => {
  emit({ event: 'error', error: message })
  process.exitCode = 1
  setTimeout(() => process.exit(1), 100)
}

/** A growable Float64Array: up to millions of latency samples without boxed numbers. */
class Samples {
  constructor (capacity = 1 << 16) { this.data = new Float64Array(capacity); this.length = 0 }
  push (v) {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2)
      bigger.set(this.data)
      this.data = bigger
    }
    this.data[this.length++] = v
  }

  sorted () { return this.data.slice(0, this.length).sort() }
}

const percentile = (sorted, p) => {
  if (sorted.length === 0) return null
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

// -- measurement state -------------------------------------------------------------------
let windowStart = Infinity // performance.now() bounds of the measured window
let windowEnd = Infinity
const sendTimes = Array.from({ length: N }, () => []) // [sender][seq] -> send time
let sentInWindow = 0
let receivedInWindow = 0 // deliveries whose receive time falls inside the window
let deliveredOfWindow = 0 // deliveries of tokens sent inside the window (any receive time)
let duplicates = 0
let eventsInWindow = 0 // remote transactions that changed the text, over all clients
const latencies = new Samples()
const latenciesSame = new Samples() // sender and receiver on the same node
const latenciesCross = new Samples()
let expectedSame = 0 // window deliveries due between clients of one node
let deliveredSame = 0
let sentAll = 0 // every token sent, warmup included
let deliveredAll = 0 // deliveries of any token sent (each (token, receiver) pair once: Yjs dedups)
let drained = null // resolves when every window token reached every other client

const onToken = (receiver, sender, seq, now) => {
  if (sender === receiver) { duplicates++; return }
  const sent = sendTimes[sender]?.[seq]
  if (sent === undefined) return
  deliveredAll++
  if (now >= windowStart && now < windowEnd) receivedInWindow++
  if (sent >= windowStart && sent < windowEnd) {
    deliveredOfWindow++
    latencies.push(now - sent)
    if (nodeOf(sender) === nodeOf(receiver)) {
      deliveredSame++
      latenciesSame.push(now - sent)
    } else {
      latenciesCross.push(now - sent)
    }
  }
  if (drained && deliveredOfWindow >= sentInWindow * (N - 1) && deliveredAll >= sentAll * (N - 1)) {
    drained()
  }
}

// -- clients -----------------------------------------------------------------------------
const clients = []
let stopping = false

const connect = (i) => new Promise((resolve, reject) => {
  const doc = new Y.Doc()
  const token = config.tokens ? config.tokens[i] : null
  const provider = openProvider(config.room, doc, token, URLS[nodeOf(i)])
  const client = { i, doc, provider, files: doc.getMap('files'), seq: 0, timer: null }
  const timer = setTimeout(() => reject(new Error(`client ${i} did not sync`)), CONNECT_TIMEOUT)
  const done = () => { clearTimeout(timer); resolve(client) }
  provider.onClose((e) => {
    if (clients.length < N || stopping) return
    fail(`client ${i} lost its connection: ${e?.code} ${e?.reason}`)
  })
  provider.synced.then(() => {
    if (i === 0 && !client.files.has(FILE)) client.files.set(FILE, new Y.Text())
    if (client.files.has(FILE)) return done()
    const wait = () => { if (client.files.has(FILE)) { client.files.unobserve(wait); done() } }
    client.files.observe(wait)
  })
})

// The inserted strings are read from the structs the transaction added (each client's structs
// are ordered by clock, so they are the ones from its clock before the transaction on), not
// from `event.delta`: YTextEvent.delta walks the whole text on every event, which would make
// the load generator, not the server, the bottleneck as the text grows.
const observe = (client) => {
  client.text = client.files.get(FILE)
  const structs = client.doc.store.clients
  client.text.observe((event, tr) => {
    if (tr.local) return
    const now = performance.now()
    if (now >= windowStart && now < windowEnd) eventsInWindow++
    tr.afterState.forEach((after, id) => {
      const before = tr.beforeState.get(id) ?? 0
      if (after <= before) return
      const list = structs.get(id)
      for (let k = Y.findIndexSS(list, before); k < list.length; k++) {
        const content = list[k].content
        if (!(content instanceof Y.ContentString)) continue
        for (const m of content.str.matchAll(TOKEN)) {
          onToken(client.i, Number(m[1]), Number(m[2]), now)
        }
      }
    })
  })
}

const send = (client) => {
  const seq = client.seq++
  const now = performance.now()
  sendTimes[client.i][seq] = now
  sentAll++
  if (now >= windowStart && now < windowEnd) {
    sentInWindow++
    expectedSame += nodeSize[nodeOf(client.i)] - 1
  }
  client.text.insert(client.text.length, `|${client.i}:${seq}|`)
}

// Open loop with fixed slots: client i sends at start + phase_i + k * PERIOD; a slot that the
// process is too busy to honour is skipped, not made up for in a burst.
const startSending = (client, start) => {
  const phase = (client.i / N) * PERIOD
  let k = 0
  const tick = () => {
    if (performance.now() >= windowEnd) return
    send(client)
    const now = performance.now()
    k = Math.max(k + 1, Math.ceil((now - start - phase) / PERIOD))
    client.timer = setTimeout(tick, Math.max(0, start + phase + k * PERIOD - now))
  }
  client.timer = setTimeout(tick, Math.max(0, start + phase - performance.now()))
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const QUANTILES = [
  ...Array.from({ length: 100 }, (_, k) => k + 0.5), // 0.5, 1.5, ..., 99.5
  99.9, 99.99, 100
].map((q) => Math.round(q * 100) / 100)

// -- memory per open document ------------------------------------------------------------
const DOC_BYTES = config.docBytes ?? 1024
const BATCH = 25 // connections opened at once

const openRoom = async (k) => {
  const doc = new Y.Doc()
  const provider = openProvider(`${config.room}${k}`, doc, config.roomTokens?.[k] ?? null)
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`room ${k} did not sync`)), CONNECT_TIMEOUT)
  })
  try {
    await Promise.race([provider.synced, timeout])
    const line = `// document ${k}: a small file\n`
    const text = new Y.Text()
    doc.getMap('files').set('doc.txt', text)
    text.insert(0, line.repeat(Math.ceil(DOC_BYTES / line.length)).slice(0, DOC_BYTES))
    await Promise.race([provider.confirmed(), timeout])
  } finally {
    clearTimeout(timer)
  }
  provider.onClose((e) => {
    if (!stopping) fail(`room ${k} lost its connection: ${e?.code} ${e?.reason}`)
  })
  return provider
}

const rooms = async () => {
  const stdin = process.stdin
  stdin.setEncoding('utf8')
  let buffered = ''
  let waiting = null
  let closed = false
  stdin.on('data', (chunk) => { buffered += chunk; waiting?.() })
  stdin.on('end', () => { closed = true; waiting?.() })
  const nextLine = async () => {
    while (!buffered.includes('\n') && !closed) await new Promise((resolve) => { waiting = resolve })
    const at = buffered.indexOf('\n')
    if (at < 0) return null
    const line = buffered.slice(0, at)
    buffered = buffered.slice(at + 1)
    return line
  }
  const providers = []
  for (const target of config.rooms) {
    const t0 = performance.now()
    while (providers.length < target) {
      const batch = Array.from(
        { length: Math.min(BATCH, target - providers.length) },
        (_, j) => openRoom(providers.length + j)
      )
      providers.push(...await Promise.all(batch))
    }
    emit({ event: 'rooms_open', rooms: target, open_s: (performance.now() - t0) / 1000 })
    if (await nextLine() === null) break
  }
  while (await nextLine() !== null);
  stopping = true
  for (const p of providers) p.destroy()
  process.stdout.write('', () => process.exit(0))
}

const main = async () => {
  const t0 = performance.now()
  clients.push(await connect(0)) // creates the shared text before anyone else can
  clients.push(...await Promise.all(Array.from({ length: N - 1 }, (_, k) => connect(k + 1))))
  const connectSeconds = (performance.now() - t0) / 1000
  clients.forEach(observe)
  emit({ event: 'ready', connect_s: connectSeconds })

  const start = performance.now() + 50
  windowStart = start + WARMUP
  windowEnd = windowStart + DURATION
  clients.forEach((c) => startSending(c, start))

  await sleep(windowStart - performance.now())
  const elu0 = performance.eventLoopUtilization()
  emit({ event: 'measure_start' })
  await sleep(windowEnd - performance.now())
  const elu = performance.eventLoopUtilization(elu0)
  emit({ event: 'measure_end' })

  const expected = sentInWindow * (N - 1)
  const drainStart = performance.now()
  if (deliveredOfWindow < expected || deliveredAll < sentAll * (N - 1)) {
    await Promise.race([new Promise((resolve) => { drained = resolve }), sleep(GRACE)])
  }
  const drainSeconds = (performance.now() - drainStart) / 1000

  const sorted = latencies.sorted()
  const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : null
  const seconds = DURATION / 1000
  const round = (v, d = 3) => (v === null ? null : Math.round(v * 10 ** d) / 10 ** d)
  const summary = (samples) => {
    const s = samples.sorted()
    return { p50: round(percentile(s, 50)), p99: round(percentile(s, 99)), count: s.length }
  }
  const lengths = clients.map((c) => c.text.length)
  emit({
    event: 'result',
    clients: N,
    rate: RATE,
    warmup_s: WARMUP / 1000,
    duration_s: seconds,
    connect_s: round(connectSeconds),
    sent: sentInWindow,
    offered_per_s: round(sentInWindow / seconds, 1),
    expected_deliveries: expected,
    delivered: deliveredOfWindow,
    missing: expected - deliveredOfWindow,
    received_in_window: receivedInWindow,
    delivered_per_s: round(receivedInWindow / seconds, 1),
    drain_s: round(drainSeconds),
    // > 1 where the server merges updates: fewer, larger messages for every client to apply
    updates_per_event: eventsInWindow ? round(receivedInWindow / eventsInWindow, 2) : null,
    duplicates,
    latency_ms: {
      p50: round(percentile(sorted, 50)),
      p90: round(percentile(sorted, 90)),
      p99: round(percentile(sorted, 99)),
      p999: round(percentile(sorted, 99.9)),
      max: round(sorted.length ? sorted[sorted.length - 1] : null),
      mean: round(mean)
    },
    // the latency distribution for plots: the quantile at each of QUANTILES (percent)
    latency_quantiles_ms: {
      p: QUANTILES,
      ms: QUANTILES.map((q) => round(percentile(sorted, q)))
    },
    loadgen_event_loop_utilization: round(elu.utilization),
    text_length: clients[0].text.length,
    nodes: URLS.length,
    // same-node: sender and receiver connected to the same node; cross-node: to different ones
    latency_same_node_ms: summary(latenciesSame),
    latency_cross_node_ms: summary(latenciesCross),
    missing_same_node: expectedSame - deliveredSame,
    missing_cross_node: (expected - expectedSame) - (deliveredOfWindow - deliveredSame),
    sent_all: sentAll,
    missing_all: sentAll * (N - 1) - deliveredAll,
    converged: lengths.every((n) => n === lengths[0])
  })

  stopping = true
  for (const c of clients) { clearTimeout(c.timer); c.provider.destroy() }
  process.stdout.write('', () => process.exit(0))
}

const mode = config.mode === 'rooms' ? rooms : main
mode().catch((err) => fail(String(err?.stack ?? err)))
