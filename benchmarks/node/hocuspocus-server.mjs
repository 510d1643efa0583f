// Hocuspocus as a benchmark peer: @hocuspocus/server with no persistence and no auth, bound to
// 127.0.0.1. With REDIS_PORT set it runs as one instance of a cluster: the
// @hocuspocus/extension-redis extension relays every document change and awareness update to
// the other instances through that redis-server's pub/sub (documents still live in memory).
//
// Usage: HOST=127.0.0.1 PORT=1234 [REDIS_HOST=127.0.0.1 REDIS_PORT=6379 REDIS_PREFIX=bench]
//        node hocuspocus-server.mjs
// Prints "running at HOST:PORT" once it listens (the line the benchmark driver waits for).
// Hocuspocus 3 is the last major that runs on Node 20 (4.x needs Node >= 22).
import { Server } from '@hocuspocus/server'

const host = process.env.HOST ?? '127.0.0.1'
const port = Number(process.env.PORT ?? 1234)

const extensions = []
if (process.env.REDIS_PORT) {
  const { Redis } = await import('@hocuspocus/extension-redis')
  extensions.push(new Redis({
    host: process.env.REDIS_HOST ?? '127.0.0.1',
    port: Number(process.env.REDIS_PORT),
    prefix: process.env.REDIS_PREFIX ?? 'hocuspocus'
  }))
}

const server = new Server({
  address: host,
  port,
  extensions,
  quiet: true, // no start screen: stdout carries only the ready line
  stopOnSignals: true
})

await server.listen()
process.stdout.write(`running at ${host}:${server.address.port}\n`)
