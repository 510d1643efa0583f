// Bundles the page into huddle/server/web/static/ (gitignored, shipped as package data):
// content-hashed file names (the hub serves them as immutable) and manifest.json, which the hub
// reads to name them in the page. `./dev setup` runs this; the hub needs no Node at run time.
import * as esbuild from 'esbuild'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const outdir = path.resolve(here, '../../huddle/server/web/static')
rmSync(outdir, { recursive: true, force: true })
mkdirSync(outdir, { recursive: true })

const result = await esbuild.build({
  entryPoints: [path.join(here, 'src/main.ts')],
  bundle: true,
  minify: true,
  // A classic script: the page reads its CSP nonce from document.currentScript.
  format: 'iife',
  target: ['chrome110', 'firefox115', 'safari16'],
  entryNames: '[name]-[hash]',
  outdir,
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning'
})
const outputs = Object.keys(result.metafile.outputs).map((file) => path.basename(file))
const manifest = {
  script: outputs.find((f) => f.endsWith('.js')),
  style: outputs.find((f) => f.endsWith('.css'))
}
if (!manifest.script || !manifest.style) throw new Error(`esbuild wrote ${outputs.join(', ')}: no script or style`)
writeFileSync(path.join(outdir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
console.log(`built ${outputs.join(', ')} in ${path.relative(process.cwd(), outdir)}`)
