// Drive Debian's chromium, headless, over the DevTools protocol
// (puppeteer-core, which never downloads a browser), through the steps
// test_http_browser.py gives, and print what the browser's own network
// events saw, as JSON on stdout.
//
//   node browse.js BASE_URL STEPS_JSON
//
// STEPS_JSON is a list of {profile, action: "goto"|"reload", path}; each
// profile is a browser context of its own (its own cookies and cache).
// For every step the output has the main document's request headers as
// sent on the wire (If-None-Match included), its response status and
// headers, whether it came from the browser's cache, the page text, and the
// profile's cookies afterwards.
"use strict";
const puppeteer = require("puppeteer-core");

async function main() {
  const [base, stepsJson] = process.argv.slice(2);
  const steps = JSON.parse(stepsJson);
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"],
  });
  const profiles = {};
  const out = [];
  try {
    for (const step of steps) {
      let p = profiles[step.profile];
      if (!p) {
        const ctx = await browser.createBrowserContext();
        const page = await ctx.newPage();
        const cdp = await page.createCDPSession();
        await cdp.send("Network.enable");
        p = profiles[step.profile] = { ctx, page, cdp, events: {} };
        const ev = (id) => (p.events[id] = p.events[id] || { id });
        cdp.on("Network.requestWillBeSent", (e) => {
          if (e.type === "Document") Object.assign(ev(e.requestId), { url: e.request.url, doc: true });
        });
        cdp.on("Network.requestWillBeSentExtraInfo", (e) => {
          ev(e.requestId).requestHeaders = e.headers;
        });
        cdp.on("Network.responseReceived", (e) => {
          Object.assign(ev(e.requestId), {
            status: e.response.status,
            fromDiskCache: !!e.response.fromDiskCache,
            headers: e.response.headers,
          });
        });
        cdp.on("Network.responseReceivedExtraInfo", (e) => {
          Object.assign(ev(e.requestId), { wireStatus: e.statusCode, wireHeaders: e.headers });
        });
      }
      p.events = {};
      const url = base + step.path;
      if (step.action === "reload") await p.page.reload({ waitUntil: "load" });
      else await p.page.goto(url, { waitUntil: "load" });
      // The extra-info events may trail the load event by a moment.
      for (let i = 0; i < 100; i++) {
        const docs = Object.values(p.events).filter((e) => e.doc);
        if (docs.length && docs.every((d) => d.status && (d.fromDiskCache || d.wireStatus))) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const docs = Object.values(p.events).filter((e) => e.doc);
      const text = await p.page.evaluate(() => document.body.innerText);
      const cookies = (await p.page.cookies(base)).map((c) => `${c.name}=${c.value}`);
      out.push({ ...step, requests: docs, text, cookies });
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
