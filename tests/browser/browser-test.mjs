#!/usr/bin/env node
// Headless-Chromium test of wsreactor's test server and www/test.html.
//
//   node tests/browser/browser-test.mjs http://127.0.0.1:PORT/
//   node tests/browser/browser-test.mjs https://127.0.0.1:PORT/   (test-server --ssl, self-signed:
//        Chromium runs with --ignore-certificate-errors; every WebSocket must then be wss://)
//
// Env: ARTIFACTS (screenshot dir, default "artifacts"), CHROMIUM (default /usr/bin/chromium),
//      TEST_TIMEOUT_MS (overall bound, default 60000).
// Exit status: 0 all checks passed, 1 a check failed, 2 usage/overall timeout.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const baseUrl = process.argv[2];
if (!baseUrl || !/^https?:\/\//.test(baseUrl)) {
  console.error("usage: node browser-test.mjs http[s]://127.0.0.1:PORT/");
  process.exit(2);
}
const ARTIFACTS = path.resolve(process.env.ARTIFACTS || "artifacts");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const OVERALL_MS = Number(process.env.TEST_TIMEOUT_MS || 60000);
const TLS = baseUrl.startsWith("https:");
// SECOND_URL: page 2 is opened from another server (test-servers sharing mirror rooms
// through a Redis backplane): the stroke must cross between the servers; each server's
// lws-status lists only its own connections.
const SECOND_URL = process.env.SECOND_URL || "";
const pageUrl = (label) => (label === "page2" && SECOND_URL ? SECOND_URL : baseUrl);
// screenshot names: browser-page1.png over http, browser-https-page1.png over https
const SHOT_PREFIX = TLS ? "browser-https-" : "browser-";
// every WebSocket the pages open (playwright's "websocket" event), to check the scheme
const wsUrls = [];

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "wsreactor-chromium-"));
const cleanupDir = () => { try { fs.rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ } };
process.on("exit", cleanupDir);

let passed = 0, failed = 0;
const pageErrors = [];

class CheckFailed extends Error {}

function fail(msg) { throw new CheckFailed(msg); }

async function check(name, fn) {
  if (timedOut) throw new Error("timed out");
  const t0 = Date.now();
  try {
    const detail = await fn();
    passed++;
    console.log(`ok   ${name}${detail ? ` -- ${detail}` : ""} (${Date.now() - t0} ms)`);
  } catch (e) {
    if (timedOut) throw e;
    failed++;
    console.log(`FAIL ${name}\n     ${e instanceof CheckFailed ? e.message : (e && e.stack) || e}`);
    throw e;
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function readCounter(page) {
  const text = (await page.textContent("#number")).trim();
  if (!/^\d+$/.test(text)) fail(`#number does not hold an integer: ${JSON.stringify(text)}`);
  return parseInt(text, 10);
}

async function waitFor(page, fn, arg, timeout, msg) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    fail(`${msg} (waited ${timeout} ms)`);
  }
}

// Count canvas pixels that are not the white background.
async function inkCount(page) {
  return page.evaluate(() => {
    const c = document.querySelector("#wslm_drawing canvas");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) n++;
    }
    return n;
  });
}

// Is there ink in a small square around canvas coordinate (x, y)?
async function inkNear(page, x, y, r = 3) {
  return page.evaluate(({ x, y, r }) => {
    const c = document.querySelector("#wslm_drawing canvas");
    const d = c.getContext("2d").getImageData(Math.max(0, x - r), Math.max(0, y - r), 2 * r + 1, 2 * r + 1).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) return true;
    return false;
  }, { x, y, r });
}

async function statusText(page, id) { return (await page.textContent(`#${id}`)).trim(); }

async function openPage(context, label) {
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(`${label} console: ${m.text()}`); });
  page.on("websocket", (ws) => wsUrls.push(`${label} ${ws.url()}`));
  const url = pageUrl(label);
  const resp = await page.goto(url, { waitUntil: "load", timeout: 10000 });
  if (!resp || !resp.ok()) fail(`${label}: GET ${url} -> HTTP ${resp ? resp.status() : "no response"}`);
  return page;
}

// Returns the list of problems (empty when every page that exists was saved).
async function screenshots(pages) {
  const problems = [], saved = [];
  try {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
  } catch (e) {
    return { problems: [`cannot create ${ARTIFACTS}: ${e.message}`], saved };
  }
  for (const [name, page] of pages) {
    if (!page || page.isClosed()) { problems.push(`no ${name} to screenshot`); continue; }
    const file = path.join(ARTIFACTS, `${SHOT_PREFIX}${name}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true, timeout: 10000 });
      saved.push(file);
    } catch (e) {
      problems.push(`screenshot of ${name} failed: ${e.message}`);
    }
  }
  return { problems, saved };
}

let context = null;

async function main() {
  console.log(`browser test against ${baseUrl} (chromium ${CHROMIUM}, artifacts ${ARTIFACTS})`);
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1200, height: 1000 },
    // the https run's certificate is self-signed (made at the server's start-up)
    ignoreHTTPSErrors: TLS,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ...(TLS ? ["--ignore-certificate-errors"] : []),
    ],
  });
  let page1 = null, page2 = null;
  try {
    for (const p of context.pages()) await p.close();

    await check("a. page loads and #number shows a rising integer", async () => {
      page1 = await openPage(context, "page1");
      for (const id of ["number", "reset", "wslm_status", "wslm_drawing", "ws_status_list", "browser"]) {
        if ((await page1.$(`#${id}`)) === null) fail(`page has no element #${id}`);
      }
      if ((await page1.$("#wslm_drawing canvas")) === null) fail("no <canvas> inside #wslm_drawing");
      const browserLine = await page1.textContent("#browser");
      if (!/WebSocket supported/.test(browserLine)) fail(`browser line does not say WebSocket supported: ${JSON.stringify(browserLine)}`);
      await waitFor(page1, () => document.getElementById("wsdi_status").textContent.trim() === "connected", null, 10000,
        `dumb-increment status never became "connected" (is ${JSON.stringify(await statusText(page1, "wsdi_status").catch(() => "?"))})`);
      await waitFor(page1, () => /^\d+$/.test(document.getElementById("number").textContent.trim()), null, 10000,
        `#number never showed an integer (shows ${JSON.stringify(await page1.textContent("#number"))})`);
      const first = await readCounter(page1);
      await sleep(400);
      const second = await readCounter(page1);
      if (!(second > first)) fail(`counter did not rise: ${first} then ${second} 400 ms later`);
      return `${first} -> ${second}`;
    });

    await check("b. reset button sends the counter back", async () => {
      await waitFor(page1, () => parseInt(document.getElementById("number").textContent, 10) >= 20, null, 5000,
        "counter never reached 20");
      const before = await readCounter(page1);
      await page1.click("#reset");
      try {
        await page1.waitForFunction((b) => parseInt(document.getElementById("number").textContent, 10) < b, before,
          { timeout: 3000, polling: 20 });
      } catch {
        fail(`after clicking #reset the counter never dropped below ${before} (now ${await readCounter(page1)})`);
      }
      const after = await readCounter(page1);
      return `${before} -> ${after}`;
    });

    await check("c. a stroke drawn on page 1 appears on page 2's canvas", async () => {
      page2 = await openPage(context, "page2");
      for (const [p, label] of [[page1, "page1"], [page2, "page2"]]) {
        await waitFor(p, () => document.getElementById("wslm_status").textContent.trim() === "connected", null, 10000,
          `${label}: mirror status never became "connected" (is ${JSON.stringify(await statusText(p, "wslm_status").catch(() => "?"))})`);
      }
      await page1.bringToFront();
      const before1 = await inkCount(page1);
      const before2 = await inkCount(page2);
      const canvas = await page1.$("#wslm_drawing canvas");
      await canvas.scrollIntoViewIfNeeded();
      const box = await canvas.boundingBox();
      const size = await page1.evaluate(() => {
        const c = document.querySelector("#wslm_drawing canvas");
        return { w: c.width, h: c.height };
      });
      const from = { x: box.x + box.width * 0.15, y: box.y + box.height * 0.25 };
      const to = { x: box.x + box.width * 0.85, y: box.y + box.height * 0.75 };
      await page1.mouse.move(from.x, from.y);
      await page1.mouse.down();
      await page1.mouse.move(to.x, to.y, { steps: 25 });
      await page1.mouse.up();
      // midpoint of the stroke, in canvas pixel coordinates
      const mid = {
        x: Math.round(((from.x + to.x) / 2 - box.x) * size.w / box.width),
        y: Math.round(((from.y + to.y) / 2 - box.y) * size.h / box.height),
      };
      const want = Math.round(0.3 * Math.hypot(to.x - from.x, to.y - from.y) * size.w / box.width);
      try {
        await page2.waitForFunction(({ before, want }) => {
          const c = document.querySelector("#wslm_drawing canvas");
          const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) n++;
          return n - before >= want;
        }, { before: before2, want }, { timeout: 5000, polling: 50 });
      } catch {
        const after2 = await inkCount(page2), after1 = await inkCount(page1);
        fail(`page 2 canvas did not receive the stroke: ink pixels ${before2} -> ${after2} (need +${want}); ` +
          `page 1 ink ${before1} -> ${after1}` + (after1 > before1 ? " (page 1 drew it: the server did not relay to the other client)" : " (page 1 did not draw it either)"));
      }
      if (!(await inkNear(page2, mid.x, mid.y))) fail(`page 2 has new ink but none at the stroke's midpoint (${mid.x},${mid.y})`);
      const after1 = await inkCount(page1);
      if (!(after1 > before1)) fail(`page 1 did not render its own stroke (server must relay to the sender too): ${before1} -> ${after1}`);

      // circle: switch page 1 to the circle tool and click once
      const beforeC = await inkCount(page2);
      await page1.check("#tool_circle");
      const cx = box.x + box.width * 0.8, cy = box.y + box.height * 0.3;
      await page1.mouse.click(cx, cy);
      try {
        await page2.waitForFunction((b) => {
          const c = document.querySelector("#wslm_drawing canvas");
          const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) n++;
          return n - b >= 40;
        }, beforeC, { timeout: 5000, polling: 50 });
      } catch {
        fail(`page 2 canvas did not receive the circle ("c" command): ink ${beforeC} -> ${await inkCount(page2)}`);
      }
      await page1.check("#tool_line");

      // the renderer ignores malformed commands and keeps the good ones
      const parsed = await page2.evaluate(() => window.wsreactorTest.parseMirror(
        "d #ff0000 1 2 3 4; garbage; d #zzzzzz 1 2 3 4; d #00ff00 1 2 x 4; c #0000ff 10 10 5;; c #000000 1 1 -3; d #123456 1 2 3"));
      if (parsed.length !== 2 || parsed[0].op !== "d" || parsed[1].op !== "c")
        fail(`mirror parser did not keep exactly the 2 valid commands: ${JSON.stringify(parsed)}`);
      return `page2 ink ${before2} -> ${await inkCount(page2)}, midpoint (${mid.x},${mid.y}) inked`;
    });

    await check("d. lws-status list shows both pages' connections", async () => {
      const per = SECOND_URL ? 1 : 2;
      const need = { "dumb-increment-protocol": per, "lws-mirror-protocol": per, "lws-status": per };
      for (const [p, label] of [[page1, "page1"], [page2, "page2"]]) {
        await waitFor(p, () => document.getElementById("wsst_status").textContent.trim() === "connected", null, 5000,
          `${label}: lws-status status never became "connected"`);
      }
      const counts = () => page1.evaluate(() => {
        const out = {};
        for (const tr of document.querySelectorAll("#ws_status_list tbody tr[data-protocol]")) {
          const p = tr.getAttribute("data-protocol");
          out[p] = (out[p] || 0) + 1;
        }
        return out;
      });
      try {
        await page1.waitForFunction((need) => {
          const out = {};
          for (const tr of document.querySelectorAll("#ws_status_list tbody tr[data-protocol]")) {
            const p = tr.getAttribute("data-protocol");
            out[p] = (out[p] || 0) + 1;
          }
          return Object.entries(need).every(([p, n]) => (out[p] || 0) >= n);
        }, need, { timeout: 5000, polling: 50 });
      } catch {
        fail(`lws-status table lacks connections: need ${JSON.stringify(need)}, table has ${JSON.stringify(await counts())}`);
      }
      const rows = await page1.$$eval("#ws_status_list tbody tr[data-protocol]", (trs) => trs.map((tr) =>
        Array.from(tr.cells).map((td) => td.textContent.trim())));
      for (const r of rows) {
        if (!/^\d+$/.test(r[0])) fail(`status row has a non-numeric id: ${JSON.stringify(r)}`);
        if (!/^(\d{1,3}(\.\d{1,3}){3}|\[?[0-9a-fA-F:.]+\]?):\d+$/.test(r[1])) fail(`status row has a bad peer: ${JSON.stringify(r)}`);
        if (!/^\d\d:\d\d:\d\d$/.test(r[3])) fail(`status row has a bad "since": ${JSON.stringify(r)}`);
      }
      const ids = rows.map((r) => r[0]);
      const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
      if (dup.length) fail(`lws-status table lists connections twice: ${JSON.stringify(dup)}`);
      return `${rows.length} rows: ${JSON.stringify(await counts())}`;
    });

    await check("echo protocol echoes a message", async () => {
      await waitFor(page1, () => document.getElementById("wse_status").textContent.trim() === "connected", null, 5000,
        `echo status never became "connected"`);
      const msg = `ping ${Date.now()}`;
      await page1.fill("#echo_text", msg);
      await page1.click("#echo_send");
      try {
        await page1.waitForFunction((m) => document.getElementById("echo_reply").textContent === m, msg,
          { timeout: 3000, polling: 50 });
      } catch {
        fail(`no echo of ${JSON.stringify(msg)}; reply shows ${JSON.stringify(await page1.textContent("#echo_reply"))}`);
      }
      return JSON.stringify(msg);
    });

    await check("permessage-deflate negotiated on every socket (ws.extensions)", async () => {
      // test-server offers it by default; EXPECT_EXTENSIONS="" for a server run --no-deflate.
      const want = process.env.EXPECT_EXTENSIONS ?? "permessage-deflate";
      const got = await page1.evaluate(() => Object.entries(window.wsreactorTest.channels)
        .filter(([, ch]) => ch.ws).map(([k, ch]) => `${k}=${ch.ws.extensions}`));
      if (got.length < 4) fail(`only ${got.length} sockets open: ${got.join(", ")}`);
      const bad = got.filter((g) => g.split("=")[1] !== want);
      if (bad.length) fail(`extensions not ${JSON.stringify(want)}: ${bad.join(", ")}`);
      return got.join(", ");
    });

    await check(`every WebSocket is ${TLS ? "wss" : "ws"}:// to the page's own host`, async () => {
      const want = `${TLS ? "wss" : "ws"}://${new URL(baseUrl).host}/`;
      if (wsUrls.length < 8) fail(`only ${wsUrls.length} WebSockets seen (2 pages x 4 protocols): ${wsUrls.join(", ")}`);
      const wantOf = (label) => `${TLS ? "wss" : "ws"}://${new URL(pageUrl(label)).host}/`;
      const bad = wsUrls.filter((u) => !u.split(" ")[1].startsWith(wantOf(u.split(" ")[0])));
      if (bad.length) fail(`WebSockets not under ${want}: ${bad.join(", ")}`);
      return `${wsUrls.length} sockets under ${want}`;
    });

    await check("static files: favicon.ico is an ICO, no JS errors on the pages", async () => {
      const r = await page1.request.get(new URL("favicon.ico", baseUrl).href);
      if (r.status() !== 200) fail(`GET /favicon.ico -> HTTP ${r.status()}`);
      const b = await r.body();
      if (b.length < 22 || b.readUInt16LE(0) !== 0 || b.readUInt16LE(2) !== 1 || b.readUInt16LE(4) < 1)
        fail(`/favicon.ico is not an ICO file (first bytes ${b.subarray(0, 6).toString("hex")})`);
      for (const f of ["test.js", "test.css"]) {
        const rr = await page1.request.get(new URL(f, baseUrl).href);
        if (rr.status() !== 200) fail(`GET /${f} -> HTTP ${rr.status()}`);
      }
      if (pageErrors.length) fail(`errors on the pages:\n     ${pageErrors.join("\n     ")}`);
      return `favicon ${b.length} bytes, ${b.readUInt16LE(4)} image(s)`;
    });
  } finally {
    // e. screenshots, taken also after a failure (for debugging); page 2 first
    if (timedOut) return;
    const { problems, saved } = await screenshots([["page2", page2], ["page1", page1]]);
    if (failed === 0) {
      if (problems.length) { failed++; console.log(`FAIL e. screenshots\n     ${problems.join("\n     ")}`); }
      else { passed++; console.log(`ok   e. screenshots saved: ${saved.join(", ")}`); }
    } else {
      for (const f of saved) console.log(`     screenshot after failure: ${f}`);
    }
    await context.close().catch(() => {});
  }
}

let timedOut = false;
const timer = setTimeout(() => {
  timedOut = true;
  console.log(`FAIL overall time bound: the browser test did not finish within ${OVERALL_MS} ms`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  // close the browser (bounded); playwright also SIGKILLs its process group on exit
  Promise.race([context ? context.close() : null, sleep(3000)]).catch(() => {}).finally(() => process.exit(2));
}, OVERALL_MS);

try {
  await main();
} catch (e) {
  if (!(e instanceof CheckFailed) && failed === 0) {
    failed++;
    console.log(`FAIL setup: ${(e && e.stack) || e}`);
  }
}
if (timedOut) await new Promise(() => {}); // the timer's handler reports and exits
clearTimeout(timer);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
