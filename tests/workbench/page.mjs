// One page of a real VS Code workbench (code-server) in Debian's chromium, driven by
// tests/test_vscode_workbench.py over stdin/stdout (one JSON object a line, like tests/node/yclient.mjs).
// Usage: node page.mjs URL [CHROMIUM]
// Every wait is on the DOM (waitForSelector / waitForFunction) with a bound; a failed op answers
// {ok: false, error} with what was missing, and the test fails naming it.
import { chromium } from 'playwright-core'
import readline from 'node:readline'

const [url, executablePath = '/usr/bin/chromium'] = process.argv.slice(2)
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] })
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(url).origin })
const page = await context.newPage()
const consoleErrors = []
page.on('pageerror', (err) => consoleErrors.push(String(err)))

// The text of the active editor as Monaco draws it: its visible lines in order (the test files
// are short enough to be visible whole). Monaco draws spaces as U+00A0.
function editorLines () {
  const editor = document.querySelector('.editor-group-container.active .monaco-editor .view-lines') ??
    document.querySelector('.monaco-editor .view-lines')
  if (!editor) return null
  return Array.from(editor.querySelectorAll(':scope > .view-line'))
    .map((line) => [parseFloat(line.style.top), line.textContent.replace(/\u00a0/g, ' ')])
    .sort((a, b) => a[0] - b[0])
    .map(([, text]) => text)
}

// Decorations whose ::before/::after content names someone (a teammate's label).
function decorationsNaming (name) {
  const found = []
  for (const el of document.querySelectorAll('.monaco-editor .view-lines span[class*="ced-"]')) {
    for (const pseudo of ['::before', '::after']) {
      const content = getComputedStyle(el, pseudo).content
      if (content && content.includes(name)) found.push({ pseudo, content, className: el.className })
    }
  }
  return found
}

const ops = {
  goto: async ({ timeout = 120000 }) => {
    await page.goto(url)
    await page.waitForSelector('.monaco-workbench .part.statusbar', { timeout })
    return {}
  },
  // Run a command from the palette by its title, as a user does (F1, type, Enter).
  palette: async ({ title, timeout = 30000 }) => {
    await page.keyboard.press('F1')
    const input = page.locator('.quick-input-widget input.input')
    await input.waitFor({ state: 'visible', timeout })
    await input.fill('>' + title)
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first()
    await row.waitFor({ state: 'visible', timeout })
    await row.click()
    return {}
  },
  // Type into the quick input that a command opened (Join Session's link box) and accept it.
  answer: async ({ text, timeout = 30000 }) => {
    const input = page.locator('.quick-input-widget input.input')
    await input.waitFor({ state: 'visible', timeout })
    await input.fill(text)
    await page.keyboard.press('Enter')
    await page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout })
    return {}
  },
  // Quick Open a workspace file and wait until its editor is active.
  open: async ({ file, timeout = 30000 }) => {
    await page.keyboard.press('Control+P')
    const input = page.locator('.quick-input-widget input.input')
    await input.waitFor({ state: 'visible', timeout })
    await input.fill(file)
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: file.split('/').pop() }).first()
    await row.waitFor({ state: 'visible', timeout })
    await page.keyboard.press('Enter')
    await page.waitForSelector(`.tab.active[aria-label*="${file.split('/').pop()}"]`, { timeout })
    await page.locator('.editor-group-container.active .monaco-editor textarea').focus()
    return {}
  },
  key: async ({ keys }) => { for (const k of keys) await page.keyboard.press(k); return {} },
  type: async ({ text, delay = 20 }) => { await page.keyboard.type(text, { delay }); return {} },
  text: async () => ({ lines: await page.evaluate(editorLines) }),
  waitText: async ({ lines, timeout = 30000 }) => {
    try {
      await page.waitForFunction(
        ([fn, want]) => JSON.stringify(new Function('return ' + fn)()()) === JSON.stringify(want),
        [editorLines.toString(), lines], { timeout, polling: 50 })
    } catch (err) {
      throw new Error(`editor text ${JSON.stringify(await page.evaluate(editorLines))} never became ${JSON.stringify(lines)}: ${err.message.split('\n')[0]}`)
    }
    return {}
  },
  // A status bar entry whose text or label contains `text`.
  status: async ({ text, timeout = 30000 }) => {
    const item = page.locator('.part.statusbar .statusbar-item', { hasText: text }).first()
    try {
      await item.waitFor({ state: 'visible', timeout })
    } catch (err) {
      const all = await page.locator('.part.statusbar .statusbar-item').allInnerTexts()
      throw new Error(`no status bar entry with ${JSON.stringify(text)} (entries: ${JSON.stringify(all.filter(Boolean))})`)
    }
    return { text: await item.innerText() }
  },
  notification: async ({ text, timeout = 30000 }) => {
    const toast = page.locator('.notifications-toasts .notification-toast', { hasText: text }).first()
    try {
      await toast.waitFor({ state: 'visible', timeout })
    } catch {
      const all = await page.locator('.notifications-toasts .notification-toast').allInnerTexts()
      throw new Error(`no notification with ${JSON.stringify(text)} (shown: ${JSON.stringify(all)})`)
    }
    const all = await page.locator('.notifications-toasts .notification-toast').allInnerTexts()
    return { text: await toast.innerText(), all }
  },
  decoration: async ({ name, timeout = 30000 }) => {
    try {
      await page.waitForFunction(([fn, n]) => new Function('return ' + fn)()(n).length > 0,
        [decorationsNaming.toString(), name], { timeout, polling: 100 })
    } catch {
      throw new Error(`no editor decoration draws ${JSON.stringify(name)}`)
    }
    return { found: await page.evaluate(([fn, n]) => new Function('return ' + fn)()(n), [decorationsNaming.toString(), name]) }
  },
  screenshot: async ({ path }) => { await page.screenshot({ path, type: 'png' }); return {} },
  errors: async () => ({ errors: consoleErrors }),
  quit: async () => { await browser.close(); setTimeout(() => process.exit(0), 10); return {} }
}

let queue = Promise.resolve()
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line)
  queue = queue.then(async () => {
    try {
      out({ id: msg.id, ok: true, ...(await ops[msg.op](msg)) })
    } catch (err) {
      out({ id: msg.id, ok: false, error: String(err && err.message ? err.message : err) })
    }
  })
})
out({ event: 'ready' })
