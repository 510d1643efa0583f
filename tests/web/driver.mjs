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
  // A line's text without the ghost text drawn in it (a completion not accepted yet).
  const lineText = (line) => {
    const copy = line.cloneNode(true)
    copy.querySelectorAll('.hd-ghost').forEach((ghost) => ghost.remove())
    return copy.textContent
  }
  const lines = Array.from(document.querySelectorAll('#editor .cm-content > .cm-line'))
  const carets = Array.from(document.querySelectorAll('#editor .hd-caret')).map((caret) => {
    const line = caret.closest('.cm-line')
    const range = document.createRange()
    range.setStart(line, 0)
    range.setEndBefore(caret)
    return { name: caret.dataset.name, line: lines.indexOf(line), column: range.toString().length }
  })
  const content = document.querySelector('#editor .cm-content')
  const summary = document.getElementById('summary')
  return {
    status: document.getElementById('status').dataset.state,
    statusText: document.getElementById('status').textContent,
    files: Array.from(document.querySelectorAll('#files .hd-file')).map((b) => b.dataset.path),
    current: document.getElementById('editor').dataset.path ?? null,
    text: content ? lines.map(lineText).join('\n') : null,
    readOnly: content ? content.getAttribute('aria-readonly') === 'true' : null,
    people: Array.from(document.querySelectorAll('#people li')).map((li) => ({
      name: li.dataset.name, file: li.querySelector('.hd-where').textContent || null, following: li.getAttribute('aria-current') === 'true'
    })),
    following: document.getElementById('following').textContent,
    notice: document.getElementById('notice').textContent,
    carets,
    ghost: Array.from(document.querySelectorAll('#editor .hd-ghost')).map((g) => ({ text: g.textContent, final: g.dataset.final === 'true' })),
    summary: summary.hidden ? null : {
      state: summary.dataset.state,
      partials: Number(summary.dataset.partials),
      title: document.getElementById('summary-title').textContent,
      status: document.getElementById('summary-status').textContent,
      text: document.getElementById('summary-text').textContent
    },
    address: location.href
  }
}

// Page-side probes for benchmarks/web.py (an init script: it runs before the page's own, and
// the page's CSP does not govern it): when the first file became editable, in ms since the
// navigation started, and when each key went down, in ms since the epoch (the clock Python's
// time.time() reads; the benchmark measures the offset between the two).
function probes () {
  window.__hdKeys = []
  window.addEventListener('keydown', () => window.__hdKeys.push(performance.timeOrigin + performance.now()), true)
  const observer = new MutationObserver(() => {
    const content = document.querySelector('#editor .cm-content')
    if (content !== null && content.getAttribute('contenteditable') === 'true') {
      window.__hdInteractive = performance.now()
      observer.disconnect()
    }
  })
  observer.observe(document, { childList: true, subtree: true, attributes: true })
}

const ops = {
  open: async ({ page: id, url, width = 1200, height = 800 }) => {
    const context = await browser.newContext({ viewport: { width, height } })
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
  // Backspace `back` times, then type `text`, in one go (no pause between the keys for the page
  // to ask a completion in).
  retype: async ({ page: id, back, text }) => {
    const { keyboard } = pages.get(id).page
    for (let i = 0; i < back; i++) await keyboard.press('Backspace')
    await keyboard.type(text)
  },
  clickFile: async ({ page: id, path: file }) => { await pages.get(id).page.click(`#files .hd-file[data-path="${file}"]`) },
  clickButton: async ({ page: id, button }) => { await pages.get(id).page.click(`button#${button}`) },
  screenshot: async ({ page: id, path: file }) => { await pages.get(id).page.screenshot({ path: file }) },
  // A picture of `html` (no page of the hub's: it composes screenshots into one), full height.
  render: async ({ html, path: file, width }) => {
    const context = await browser.newContext({ viewport: { width, height: 100 } })
    const page = await context.newPage()
    await page.setContent(html, { waitUntil: 'load' })
    await page.screenshot({ path: file, fullPage: true })
    await context.close()
  },
  clickPerson: async ({ page: id, name }) => { await pages.get(id).page.click(`#people li[data-name="${name}"]`) },
  offline: async ({ page: id, offline }) => { await pages.get(id).context.setOffline(offline) },
  reload: async ({ page: id }) => { await pages.get(id).page.reload() },
  // Load `url` and time it until the first file is editable: in a fresh context (nothing
  // cached), or again in this page's own (its immutable assets cached).
  load: async ({ page: id, url, fresh }) => {
    let record = pages.get(id)
    if (fresh || record === undefined) {
      if (record !== undefined) await record.context.close()
      const context = await browser.newContext({ viewport: { width: 1200, height: 800 } })
      await context.addInitScript(probes)
      record = { context, page: await context.newPage(), errors: [], requests: [] }
      record.page.on('pageerror', (err) => record.errors.push(`pageerror: ${err}`))
      pages.set(id, record)
    } else {
      // Away first: the link differs from the page's address only by its fragment, and a
      // fragment alone would not load the page again.
      await record.page.goto('about:blank')
    }
    await record.page.goto(url)
    await record.page.waitForFunction(() => window.__hdInteractive !== undefined, null, { timeout: 30000 })
    return await record.page.evaluate(() => {
      const [nav] = performance.getEntriesByType('navigation')
      const assets = performance.getEntriesByType('resource')
      return {
        interactive_ms: window.__hdInteractive,
        response_end_ms: nav.responseEnd,
        dom_content_loaded_ms: nav.domContentLoadedEventEnd,
        transfer_bytes: nav.transferSize + assets.reduce((sum, r) => sum + r.transferSize, 0),
        cached_assets: assets.filter((r) => r.transferSize === 0).length,
        assets: assets.length
      }
    })
  },
  clock: async ({ page: id }) => ({ now: await pages.get(id).page.evaluate(() => performance.timeOrigin + performance.now()) }),
  keys: async ({ page: id }) => ({ keys: await pages.get(id).page.evaluate(() => window.__hdKeys.splice(0)) }),
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
