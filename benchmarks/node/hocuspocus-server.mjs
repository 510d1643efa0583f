// Hocuspocus as a benchmark peer: @hocuspocus/server with no extensions, so documents live in
// memory only (no persistence, no auth), bound to 127.0.0.1.
//
// Usage: HOST=127.0.0.1 PORT=1234 node hocuspocus-server.mjs
// Prints "running at HOST:PORT" once it listens (the line the benchmark driver waits for).
// Hocuspocus 3 is the last major that runs on Node 20 (4.x needs Node >= 22).
import { Server } from '@hocuspocus/server'

const host = process.env.HOST ?? '127.0.0.1'
const port = Number(process.env.PORT ?? 1234)

const server = new Server({
  address: host,
  port,
  quiet: true, // no start screen: stdout carries only the ready line
  stopOnSignals: true
})

await server.listen()
process.stdout.write(`running at ${host}:${server.address.port}\n`)
