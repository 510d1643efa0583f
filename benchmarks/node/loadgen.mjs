// Fan-out load generator: N stock Yjs + y-websocket@3 clients in one room, in one process.
//
// Usage: node loadgen.mjs CONFIG.json
//   {"url": "ws://127.0.0.1:PORT", "room": "bench", "clients": 50, "tokens": [..] | null,
//    "rate": 10, "warmup": 3, "duration": 10, "grace": 5, "connectTimeout": 60,
//    "clientsDir": "/path/to/tests/node"}
//
// Every client inserts a token "|<sender>:<seq>|" at the end of the shared Y.Text
// files["bench.txt"] `rate` times a second. Every client observes the text and, for each
// token another client inserted, records the latency (receive time - send time; one process,
// one clock: performance.now()). Tokens sent during the measured window are followed until
// every other client has them or `grace` seconds after the window have passed.
//
// stdout carries JSON lines: {"event":"ready"}, {"event":"measure_start"},
// {"event":"measure_end"} and finally {"event":"result", ...}; the driver samples the
// server's CPU and memory between measure_start and measure_end.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { performance } from 'node:perf_hooks'

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const here = path.dirname(fileURLToPath(import.meta.url))
const clientsDir = path.resolve(here, config.clientsDir ?? '../../tests/node')

// The stock clients live in tests/node (y-websocket@3 cannot sit next to the 1.5.4 server in
// one package). Import each package through its own "import" export so that this module and
// y-websocket share one yjs instance (two instances break Yjs' constructor checks).
const esmEntry = (name) => {
  const dir = path.join(clientsDir, 'node_modules', name)
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
  let entry = pkg.exports?.['.'] ?? pkg.module ?? pkg.main
  while (typeof entry === 'object' && entry !== null) entry = entry.import ?? entry.default
  return pathToFileURL(path.join(dir, entry)).href
}
const Y = await import(esmEntry('yjs'))
const { WebsocketProvider } = await import(esmEntry('y-websocket'))
const { default: WebSocket } = await import(esmEntry('ws'))

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
let drained = null // resolves when every window token reached every other client

const onToken = (receiver, sender, seq, now) => {
  if (sender === receiver) { duplicates++; return }
  const sent = sendTimes[sender]?.[seq]
  if (sent === undefined) return
  if (now >= windowStart && now < windowEnd) receivedInWindow++
  if (sent >= windowStart && sent < windowEnd) {
    deliveredOfWindow++
    latencies.push(now - sent)
    if (drained && deliveredOfWindow >= sentInWindow * (N - 1)) drained()
  }
}

// -- clients -----------------------------------------------------------------------------
const clients = []
let stopping = false

const connect = (i) => new Promise((resolve, reject) => {
  const doc = new Y.Doc()
  const token = config.tokens ? config.tokens[i] : null
  const provider = new WebsocketProvider(config.url, config.room, doc, {
    WebSocketPolyfill: WebSocket,
    params: token ? { token } : {},
    disableBc: true
  })
  const client = { i, doc, provider, files: doc.getMap('files'), seq: 0, timer: null }
  const timer = setTimeout(() => reject(new Error(`client ${i} did not sync`)), CONNECT_TIMEOUT)
  const done = () => { clearTimeout(timer); resolve(client) }
  provider.on('connection-close', (e) => {
    if (clients.length < N || stopping) return
    fail(`client ${i} lost its connection: ${e?.code} ${e?.reason}`)
  })
  provider.once('sync', (synced) => {
    if (!synced) return
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
  if (now >= windowStart && now < windowEnd) sentInWindow++
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
  if (deliveredOfWindow < expected) {
    await Promise.race([new Promise((resolve) => { drained = resolve }), sleep(GRACE)])
  }
  const drainSeconds = (performance.now() - drainStart) / 1000

  const sorted = latencies.sorted()
  const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : null
  const seconds = DURATION / 1000
  const round = (v, d = 3) => (v === null ? null : Math.round(v * 10 ** d) / 10 ** d)
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
    loadgen_event_loop_utilization: round(elu.utilization),
    text_length: clients[0].text.length
  })

  stopping = true
  for (const c of clients) { clearTimeout(c.timer); c.provider.destroy() }
  process.stdout.write('', () => process.exit(0))
}

main().catch((err) => fail(String(err?.stack ?? err)))
