#!/usr/bin/env node
// Drives headless Chromium for the interop suite (run by tests/interop/browser.py as a child
// process, like tests/peers/pjsua2_caller.py for pjsua2).
//
//   node driver.mjs SCENARIO.json      (or the scenario on stdin)
//
// A scenario names its browsers (one Chromium each, so each has its own fake microphone WAV and
// profile) and a list of steps run in order. The last line on stdout is the JSON report; the
// workdir gets, per browser, the page console (<name>-console.log), every WebSocket frame the
// pages sent and received (<name>-ws.log: the SIP trace), screenshots, and the WAVs of what the
// pages heard.
//
// Scenario:
//   {"workdir": "/abs/dir", "timeout_ms": 120000, "chromium": "/usr/bin/chromium",
//    "browsers": {"caller": {"mic": "/abs/mic.wav", "profile": "/abs/empty-dir"}},
//    "steps": [{"do": "open", "browser": "caller", "page": "sipjs"}, ...]}
// Steps (each may set "browser" (default: the first), "tab" (default "main"), "timeout_ms",
// "name" (its result is kept under that name) and "async": true (run in the background until a
// later {"do": "await", "name": ...})):
//   open        {url} (a url starting with "/" is a file of pages/, served by the driver) or
//               {page: "sipjs" | "jssip"} (the harness's SIP stack pages)
//   peer_run    {config, wav?}  window.peer.run(config) on a stack page (pages/peer.js); what the
//               page heard is written to `wav`
//   peer_mic    {config, wav?}  the fake microphone measured in the page
//   peer_loopback {config, wav?} the microphone through two RTCPeerConnections in the page
//   click       {selector}        fill {selector, value}
//   wait_state  {state}           until body[data-state=STATE]
//   wait_for    {selector} or {js} (an expression polled until truthy)
//   eval        {js}              an expression (may be a promise); its JSON value is the result
//   record_start {expr, freqs?, window_ms?}  measure (and keep) the audio of the MediaStream
//               `expr` evaluates to, e.g. "window.dialtonePage.call.getRemoteStream()"
//   record_stop {of: NAME of the record_start step, wav?}
//   sleep {ms}   screenshot {file?}   close {}   await {name}
//   write_file  {file, js?}  writes the JSON value of `js` (evaluated in the page; null without
//               one) to `file` in the workdir: tells the test a point of the scenario is reached
//   wait_file   {file}   until `file` exists in the workdir: a gate the test opens; its JSON
//               content (or null) is the result
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGES = path.join(HERE, "pages");
const PROBE = fs.readFileSync(path.join(PAGES, "probe.js"), "utf8");

const t0 = Date.now();
const since = () => Date.now() - t0;
const log = (...a) => process.stderr.write(`[driver ${since()} ms] ${a.join(" ")}\n`);

// The harness's pages and the stack bundles, on 127.0.0.1 (a secure context for getUserMedia).
async function startPageServer() {
  const bundles = new Map();
  const bundle = async (name) => {
    if (!bundles.has(name)) {
      const out = await esbuild.build({
        entryPoints: [path.join(PAGES, `${name}.js`)], bundle: true, write: false, format: "iife",
        platform: "browser", target: "chrome110", logLevel: "silent", sourcemap: "inline",
        define: { "process.env.NODE_ENV": '"production"' },
      });
      bundles.set(name, out.outputFiles[0].text);
    }
    return bundles.get(name);
  };
  const types = { ".html": "text/html", ".js": "application/javascript", ".css": "text/css" };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    let m;
    try {
      if ((m = url.pathname.match(/^\/bundle\/([a-z0-9_-]+)\.js$/)) && fs.existsSync(path.join(PAGES, `${m[1]}.js`))) {
        const text = await bundle(m[1]);
        res.writeHead(200, { "content-type": "application/javascript", "cache-control": "no-store" });
        return res.end(text);
      }
      if ((m = url.pathname.match(/^\/pages\/([a-z0-9_-]+\.(html|js|css))$/))) {
        const file = path.join(PAGES, m[1]);
        if (fs.existsSync(file)) {
          res.writeHead(200, { "content-type": types[path.extname(file)], "cache-control": "no-store" });
          return res.end(fs.readFileSync(file));
        }
      }
      if (url.pathname === "/favicon.ico") { res.writeHead(204); return res.end(); }
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    } catch (err) {
      log("page server:", err.stack || err);
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(err));
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, base: `http://127.0.0.1:${server.address().port}` };
}

class Peer {
  constructor(name, spec, scenario) {
    this.name = name;
    this.spec = spec;
    this.scenario = scenario;
    this.tabs = new Map();
    this.consoleLog = fs.createWriteStream(path.join(scenario.workdir, `${name}-console.log`));
    this.wsLog = fs.createWriteStream(path.join(scenario.workdir, `${name}-ws.log`));
    this.shots = 0;
  }

  async launch() {
    const args = [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
      // Pages play remote audio and start AudioContexts without a click.
      "--autoplay-policy=no-user-gesture-required",
      // Host candidates on 127.0.0.1 too: the server under test is only on the loopback.
      "--allow-loopback-in-peer-connection",
    ];
    if (this.spec.mic) args.push(`--use-file-for-fake-audio-capture=${this.spec.mic}`);
    // Extra Chromium switches a test asks for (e.g. a self-signed certificate for wss://).
    if (Array.isArray(this.spec.args)) args.push(...this.spec.args);
    if (!this.spec.profile) throw new Error(`browser ${this.name}: no profile dir`);
    this.context = await chromium.launchPersistentContext(this.spec.profile, {
      executablePath: this.scenario.chromium || "/usr/bin/chromium",
      headless: true, args, viewport: { width: 1000, height: 760 },
      permissions: ["microphone"], timeout: 30000,
    });
    await this.context.addInitScript({ content: PROBE });
    this.version = this.context.browser()?.version() ?? null;
    // A persistent context opens with one blank page: it becomes the main tab.
    const first = this.context.pages()[0] || (await this.context.newPage());
    this.watch(first, "main");
    this.tabs.set("main", first);
    log(`browser ${this.name} up (chromium ${this.version}), mic ${this.spec.mic || "default"}`);
  }

  watch(page, tab) {
    const prefix = () => `${since()} ms [${tab}]`;
    page.on("console", (m) => this.consoleLog.write(`${prefix()} ${m.type()}: ${m.text()}\n`));
    page.on("pageerror", (e) => this.consoleLog.write(`${prefix()} PAGE ERROR: ${e.stack || e}\n`));
    page.on("requestfailed", (r) => this.consoleLog.write(`${prefix()} request failed: ${r.url()} ${r.failure()?.errorText}\n`));
    page.on("websocket", (ws) => {
      this.wsLog.write(`${prefix()} open ${ws.url()}\n`);
      ws.on("framesent", (f) => this.wsLog.write(`${prefix()} >>> sent\n${f.payload}\n`));
      ws.on("framereceived", (f) => this.wsLog.write(`${prefix()} <<< received\n${f.payload}\n`));
      ws.on("socketerror", (e) => this.wsLog.write(`${prefix()} socket error ${e}\n`));
      ws.on("close", () => this.wsLog.write(`${prefix()} closed ${ws.url()}\n`));
    });
  }

  async tab(name = "main") {
    if (!this.tabs.has(name)) {
      const page = await this.context.newPage();
      this.watch(page, name);
      this.tabs.set(name, page);
    }
    return this.tabs.get(name);
  }

  async screenshot(page, file) {
    const out = path.join(this.scenario.workdir, file || `${this.name}-${++this.shots}.png`);
    await page.screenshot({ path: out, fullPage: true, timeout: 10000 });
    return out;
  }

  async close() {
    if (!this.context) return;
    for (const [tab, page] of this.tabs) {
      if (page.isClosed()) continue;
      await this.screenshot(page, `${this.name}-${tab}-final.png`).catch((e) => log(`final screenshot of ${this.name}/${tab}:`, e.message));
    }
    await this.context.close().catch((e) => log(`closing ${this.name}:`, e.message));
    this.context = null;
    await new Promise((r) => this.consoleLog.end(r));
    await new Promise((r) => this.wsLog.end(r));
  }
}

function writeWav(scenario, result, file) {
  if (!result || typeof result !== "object") return;
  for (const key of ["heard", null]) {
    const holder = key ? result[key] : result;
    if (holder && typeof holder.wav_b64 === "string") {
      if (file) {
        const out = path.resolve(scenario.workdir, file);
        fs.writeFileSync(out, Buffer.from(holder.wav_b64, "base64"));
        holder.wav = out;
      }
      delete holder.wav_b64;
    }
  }
}

async function runStep(step, ctx) {
  const { scenario, peers, pageBase, named } = ctx;
  const peer = peers.get(step.browser || scenario.firstBrowser);
  if (!peer && step.do !== "sleep" && step.do !== "await") throw new Error(`no browser ${step.browser}`);
  const timeout = step.timeout_ms ?? 30000;
  const page = peer && step.do !== "close" ? await peer.tab(step.tab) : null;
  switch (step.do) {
    case "open": {
      // A url starting with "/" is one of the harness's own pages (pages/).
      const url = step.page ? `${pageBase}/pages/peer.html?stack=${encodeURIComponent(step.page)}`
        : step.url.startsWith("/") ? pageBase + step.url : step.url;
      const resp = await page.goto(url, { timeout, waitUntil: "load" });
      if (step.page) await page.waitForSelector('body[data-state="ready"]', { timeout });
      return { url, status: resp ? resp.status() : null };
    }
    case "peer_run":
    case "peer_mic":
    case "peer_loopback": {
      const fn = { peer_run: "run", peer_mic: "mic", peer_loopback: "loopback" }[step.do];
      const result = await withTimeout(page.evaluate(([f, c]) => window.peer[f](c), [fn, step.config || {}]), timeout, step.do);
      writeWav(scenario, result, step.wav);
      return result;
    }
    case "click":
      await page.click(step.selector, { timeout });
      return null;
    case "fill":
      await page.fill(step.selector, step.value, { timeout });
      return null;
    case "wait_state":
      await page.waitForSelector(`body[data-state="${step.state}"]`, { timeout, state: "attached" });
      return { state: step.state };
    case "wait_for":
      if (step.selector) await page.waitForSelector(step.selector, { timeout, state: step.state || "visible" });
      else await page.waitForFunction(step.js, null, { timeout, polling: 100 });
      return null;
    case "eval":
      return await withTimeout(page.evaluate(`(async () => (${step.js}))()`), timeout, "eval");
    case "record_start":
    {
      // Evaluated by the driver, not by eval() in the page: a page's CSP may forbid eval.
      const stream = await withTimeout(page.evaluateHandle(`(async () => (${step.expr}))()`), timeout, "record_start");
      return await withTimeout(page.evaluate(
        ([s, opts]) => window.__probe.start(s, opts),
        [stream, { freqs: step.freqs || [], window_ms: step.window_ms || 100, keep_pcm: step.keep_pcm !== false }]), timeout, "record_start");
    }
    case "record_stop": {
      const id = named.get(step.of);
      if (typeof id !== "number") throw new Error(`record_stop: no record_start named ${step.of}`);
      const result = await withTimeout(page.evaluate(([i, o]) => window.__probe.stop(i, o), [id, { loud_dbfs: step.loud_dbfs ?? -40 }]), timeout, "record_stop");
      writeWav(scenario, result, step.wav);
      return result;
    }
    case "screenshot":
      return { file: await peer.screenshot(page, step.file) };
    case "sleep":
      await new Promise((r) => setTimeout(r, step.ms));
      return null;
    case "close":
      await peer.close();
      peers.delete(peer.name);
      return null;
    case "write_file": {
      const value = step.js ? await withTimeout(page.evaluate(`(async () => (${step.js}))()`), timeout, "write_file") : null;
      const out = path.resolve(scenario.workdir, step.file);
      // Written whole, then renamed: the test never reads half a file.
      fs.writeFileSync(`${out}.tmp`, JSON.stringify(value ?? null));
      fs.renameSync(`${out}.tmp`, out);
      return value ?? null;
    }
    case "wait_file": {
      const file = path.resolve(scenario.workdir, step.file);
      const deadline = Date.now() + timeout;
      while (!fs.existsSync(file)) {
        if (Date.now() > deadline) throw new Error(`wait_file: no ${step.file} within ${timeout} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const text = fs.readFileSync(file, "utf8").trim();
      try { return text ? JSON.parse(text) : null; } catch (_) { return text; }
    }
    case "await": {
      const pending = ctx.pending.get(step.name);
      if (!pending) throw new Error(`await: no async step named ${step.name}`);
      return await withTimeout(pending, timeout, `await ${step.name}`);
    }
    default:
      throw new Error(`unknown step ${JSON.stringify(step.do)}`);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

function readScenario() {
  const arg = process.argv[2];
  const text = arg && arg !== "-" ? fs.readFileSync(arg, "utf8") : fs.readFileSync(0, "utf8");
  const s = JSON.parse(text);
  if (!s.workdir || !path.isAbsolute(s.workdir)) throw new Error("scenario.workdir must be an absolute path");
  if (!s.browsers || Object.keys(s.browsers).length === 0) throw new Error("scenario.browsers is empty");
  s.firstBrowser = Object.keys(s.browsers)[0];
  fs.mkdirSync(s.workdir, { recursive: true });
  return s;
}

async function main() {
  const report = { ok: false, error: null, chromium: null, steps: [], results: {}, page_base: null, ms: null };
  let scenario;
  const peers = new Map();
  let pages;
  let done = false;
  const finish = async (code) => {
    if (done) return;
    done = true;
    for (const p of peers.values()) await p.close();
    if (pages) pages.server.close();
    report.ms = since();
    const out = JSON.stringify(report);
    if (scenario?.result) fs.writeFileSync(scenario.result, out);
    process.stdout.write(out + "\n", () => process.exit(code));
  };
  try {
    scenario = readScenario();
    const killer = setTimeout(() => {
      report.error = `scenario timed out after ${scenario.timeout_ms ?? 120000} ms`;
      log(report.error);
      finish(3);
    }, scenario.timeout_ms ?? 120000);
    for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => { report.error = `driver got ${sig}`; finish(4); });
    const chromiumPath = scenario.chromium || "/usr/bin/chromium";
    if (!fs.existsSync(chromiumPath)) throw new Error(`${chromiumPath} is missing: run scripts/install-test-peers.sh`);
    report.chromium = spawnSync(chromiumPath, ["--version"], { encoding: "utf8" }).stdout.trim();
    pages = await startPageServer();
    report.page_base = pages.base;
    for (const [name, spec] of Object.entries(scenario.browsers)) {
      const peer = new Peer(name, spec, scenario);
      peers.set(name, peer);
      await peer.launch();
    }
    const ctx = { scenario, peers, pageBase: pages.base, named: new Map(), pending: new Map() };
    let failed = false;
    for (const [i, step] of scenario.steps.entries()) {
      const entry = { i, do: step.do, browser: step.browser || scenario.firstBrowser, name: step.name ?? null, at_ms: since(), ms: null, ok: false, result: null, error: null };
      report.steps.push(entry);
      const run = runStep(step, ctx).then((result) => {
        entry.ok = true;
        entry.result = result;
        if (step.name) { ctx.named.set(step.name, result); report.results[step.name] = result; }
        return result;
      }, (err) => {
        entry.error = String(err && err.message ? err.message : err);
        throw err;
      }).finally(() => { entry.ms = since() - entry.at_ms; });
      if (step.async) {
        ctx.pending.set(step.name, run);
        run.catch(() => {});
        entry.async = true;
        continue;
      }
      try {
        await run;
        log(`step ${i} ${step.do} ok (${entry.ms} ms)`);
      } catch (err) {
        log(`step ${i} ${step.do} failed: ${err.stack || err}`);
        const peer = peers.get(entry.browser);
        if (peer?.context) {
          const page = await peer.tab(step.tab).catch(() => null);
          if (page) await peer.screenshot(page, `${peer.name}-failed-step${i}.png`).catch(() => {});
        }
        report.error = `step ${i} (${step.do}): ${entry.error}`;
        failed = true;
        break;
      }
    }
    clearTimeout(killer);
    report.ok = !failed;
    await finish(failed ? 2 : 0);
  } catch (err) {
    report.error = String(err && err.stack ? err.stack : err);
    log("driver error:", report.error);
    await finish(1);
  }
}

main();
