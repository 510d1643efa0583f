// Pages of the browser client (huddle/server/web) in Debian's chromium, driven by
// tests/test_web_client.py over stdin/stdout, one JSON object a line (like tests/workbench/page.mjs).
// Usage: node driver.mjs CHROMIUM PLAYWRIGHT_CORE_DIR
// Each op names a page; `open` makes one (its own browser context: its own sessionStorage).
// The test reads what the page shows (the DOM), and types with the real keyboard.
import readline from 'node:readline'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [executablePath, playwrightDir] = process.argv.slice(2)
const { chromium } = await import(pathToFileURL(path.join(playwrightDir, 'index.mjs')).href)
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] })
const pages = new Map()

// What the page shows, read from the DOM (runs in the page).
function shown () {
  const lines = Array.from(document.querySelectorAll('#editor .cm-content > .cm-line'))
  const carets = Array.from(document.querySelectorAll('#editor .hd-caret')).map((caret) => {
    const line = caret.closest('.cm-line')
    const range = document.createRange()
    range.setStart(line, 0)
    range.setEndBefore(caret)
    return { name: caret.dataset.name, line: lines.indexOf(line), column: range.toString().length }
  })
  const content = document.querySelector('#editor .cm-content')
  return {
    status: document.getElementById('status').dataset.state,
    statusText: document.getElementById('status').textContent,
    files: Array.from(document.querySelectorAll('#files .hd-file')).map((b) => b.dataset.path),
    current: document.getElementById('editor').dataset.path ?? null,
    text: content ? lines.map((l) => l.textContent).join('\n') : null,
    readOnly: content ? content.getAttribute('aria-readonly') === 'true' : null,
    people: Array.from(document.querySelectorAll('#people li')).map((li) => ({
      name: li.dataset.name, file: li.querySelector('.hd-where').textContent || null, following: li.getAttribute('aria-current') === 'true'
    })),
    following: document.getElementById('following').textContent,
    notice: document.getElementById('notice').textContent,
    carets,
    address: location.href
  }
}

const ops = {
  open: async ({ page: id, url }) => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } })
    const page = await context.newPage()
    const record = { context, page, errors: [], requests: [] }
    page.on('pageerror', (err) => record.errors.push(`pageerror: ${err}`))
    page.on('console', (msg) => { if (msg.type() === 'error' || /Content Security Policy/i.test(msg.text())) record.errors.push(`console: ${msg.text()}`) })
    page.on('request', (req) => record.requests.push({ url: req.url(), referer: req.headers().referer ?? null }))
    page.on('websocket', (ws) => record.requests.push({ url: ws.url(), referer: null, websocket: true }))
    pages.set(id, record)
    const response = await page.goto(url)
    return { status: response.status(), headers: response.headers() }
  },
  state: async ({ page: id }) => {
    const { page, errors, requests } = pages.get(id)
    return { ...(await page.evaluate(shown)), errors, requests }
  },
  // Click into the editor and put the caret at the end of the document.
  focusEnd: async ({ page: id }) => {
    const { page } = pages.get(id)
    await page.click('#editor .cm-content')
    await page.keyboard.press('Control+End')
  },
  type: async ({ page: id, text, delay = 0 }) => { await pages.get(id).page.keyboard.type(text, { delay }) },
  press: async ({ page: id, key }) => { await pages.get(id).page.keyboard.press(key) },
  clickFile: async ({ page: id, path: file }) => { await pages.get(id).page.click(`#files .hd-file[data-path="${file}"]`) },
  clickPerson: async ({ page: id, name }) => { await pages.get(id).page.click(`#people li[data-name="${name}"]`) },
  offline: async ({ page: id, offline }) => { await pages.get(id).context.setOffline(offline) },
  reload: async ({ page: id }) => { await pages.get(id).page.reload() },
  close: async ({ page: id }) => { await pages.get(id).context.close(); pages.delete(id) }
}

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const msg = JSON.parse(line)
  try {
    const result = await ops[msg.op](msg)
    out({ id: msg.id, ok: true, ...(result ?? {}) })
  } catch (err) {
    out({ id: msg.id, ok: false, error: String(err && err.stack ? err.stack : err) })
  }
})
