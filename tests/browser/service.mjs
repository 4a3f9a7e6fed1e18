// Loss of service and recovery in the web client (issue 12), in headless Chromium. Started by
// tests/browser.rs (browser_loss_of_service_and_recovery); this script runs the gateway itself
// (RADIOGATE_BIN run --config RADIOGATE_CONFIG, always on RADIOGATE_PORT) so it can kill and
// restart it. The gateway only verifies tokens (EdDSA public key): it cannot renew them.
//
// Checks: the expiry warning 15 minutes ahead when renewal is refused; dead-media detection
// when ICE cannot connect; the alarm (Web Audio tone + vibration) and the full-width state with
// every talk button disabled when the gateway dies; the countdown; the back-online cue; the
// time phones take to be back (online, channel rejoined, media connected) after each of 10
// restarts (p95 <= 2 s); audio flowing after the restarts; Retry now.
//
// Environment: RADIOGATE_BIN, RADIOGATE_CONFIG, RADIOGATE_PORT, RADIOGATE_TOKENS (JSON
// {A,B,C,W,M}), RADIOGATE_SPEECH (WAV), RADIOGATE_ARTIFACTS (dir).

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const need = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BIN = need('RADIOGATE_BIN');
const CONFIG = need('RADIOGATE_CONFIG');
const PORT = need('RADIOGATE_PORT');
const TOKENS = JSON.parse(need('RADIOGATE_TOKENS'));
const SPEECH = need('RADIOGATE_SPEECH');
const ARTIFACTS = need('RADIOGATE_ARTIFACTS');
const HTTP = `http://localhost:${PORT}`;
const WAIT = 15000;
const RESTARTS = 10;

let failures = 0;
const log = (...a) => console.log(`[service ${new Date().toISOString().slice(11, 23)}]`, ...a);
function check(ok, what) {
  if (ok) log(`ok: ${what}`);
  else { failures++; log(`NOT OK: ${what}`); }
}

// ---------- the gateway, run and killed by this script ----------

let gw = null;
function startGateway() {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['run', '--config', CONFIG], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RADIOGATE_LOG: 'info' } });
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`gateway did not listen within ${WAIT} ms:\n${buf}`)), WAIT);
    child.stderr.on('data', (d) => {
      buf += d.toString();
      if (/listening addr=/.test(buf) && timer) {
        clearTimeout(timer);
        resolve(Date.now());
        buf = '';
      }
      if (buf.length > 100000) buf = buf.slice(-10000);
    });
    child.on('exit', () => { if (gw === child) gw = null; });
    gw = child;
  });
}

function killGateway(signal = 'SIGKILL') {
  return new Promise((resolve) => {
    if (!gw) return resolve();
    const child = gw;
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

// ---------- pages ----------

const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, hasTouch: true };

// Records navigator.vibrate calls (headless Chromium has no vibrator).
function recordVibrations() {
  window.__vibrations = [];
  navigator.vibrate = (pattern) => { window.__vibrations.push(pattern); return true; };
}

// Records the frequency of every Web Audio oscillator the page starts (the cues' tones).
function recordTones() {
  window.__tones = [];
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones.push(this.frequency.value);
    return start.apply(this, args);
  };
}

// No UDP path between phone and gateway, as on a network that blocks it: the answer's host
// candidates point at port 9 (discard), and the phone's own candidates never reach the gateway
// (stripped from the offer, trickled ones dropped), so neither side's checks can succeed.
function breakIce() {
  const orig = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (d) {
    if (d && d.sdp) {
      d = { type: d.type, sdp: d.sdp.replace(/^(a=candidate:\S+ \d+ \S+ \d+ \S+ )\d+/gm, (_, head) => `${head}9`) };
    }
    return orig.call(this, d);
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const m = JSON.parse(data);
      if (m.method === 'webrtc.candidate') return undefined;
      if (m.method === 'webrtc.offer') {
        m.params.sdp = m.params.sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate')).join('\r\n');
        return send.call(this, JSON.stringify(m));
      }
    } catch (_) { /* not JSON */ }
    return send.call(this, data);
  };
}

// The page's stats say no RTP arrives (a path that died after ICE connected: the gateway
// stopped sending, a NAT binding timed out).
function freezeInbound() {
  const orig = RTCPeerConnection.prototype.getStats;
  RTCPeerConnection.prototype.getStats = async function (...args) {
    const st = await orig.apply(this, args);
    const out = new Map();
    st.forEach((r, k) => out.set(k, r.type === 'inbound-rtp' ? { ...r, packetsReceived: 0 } : r));
    return out;
  };
}

async function openPhone(browser, name, token, init = []) {
  const ctx = await browser.newContext(PHONE);
  await ctx.addInitScript(recordVibrations);
  await ctx.addInitScript(recordTones);
  for (const f of init) await ctx.addInitScript(f);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => log(`${name} pageerror: ${e.message}`));
  await page.goto(`${HTTP}/?token=${token}`);
  await page.click('#start-btn');
  return page;
}

// Online, ch1 joined and the peer connection connected, no loss-of-service state shown.
const isBack = (page) => page.evaluate(() => {
  const S = window.radiogate;
  const c = S.channels.get('ch1');
  return S.wsOpen && !!c && c.joined && !!S.pc && S.pc.connectionState === 'connected'
    && document.getElementById('service').hidden;
});

async function waitBack(page, ms = WAIT) {
  await page.waitForFunction(() => {
    const S = window.radiogate;
    const c = S.channels.get('ch1');
    return S.wsOpen && !!c && c.joined && !!S.pc && S.pc.connectionState === 'connected'
      && document.getElementById('service').hidden;
  }, null, { timeout: ms, polling: 20 });
  return Date.now();
}

const cues = (page) => page.evaluate(() => window.radiogate.cues.map((c) => c.kind));
const tones = (page) => page.evaluate(() => window.__tones.join(' '));
const vibrations = (page) => page.evaluate(() => window.__vibrations.map((v) => JSON.stringify(v)));

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  await startGateway();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${SPEECH}`,
      '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    const phones = { A: await openPhone(browser, 'A', TOKENS.A), B: await openPhone(browser, 'B', TOKENS.B), C: await openPhone(browser, 'C', TOKENS.C) };
    await Promise.all(Object.values(phones).map((p) => waitBack(p)));
    const a = phones.A;
    check(!(await a.isDisabled('#ptt')) && await a.isHidden('#service'), 'online: no loss-of-service state, PTT enabled');

    // --- the expiry warning when the gateway cannot renew (W's link has 14 minutes left) ---
    const w = await openPhone(browser, 'W', TOKENS.W);
    await w.waitForFunction(() => /Your access ends at/.test(document.getElementById('banner').textContent), null, { timeout: WAIT });
    const wBanner = await w.textContent('#banner');
    check(/Ask the organiser for a new link/.test(wBanner), `the 15-minute warning says to get a new link ("${wBanner}")`);
    check((await cues(w)).includes('warn') && (await vibrations(w)).includes('[200,100,200]'), 'the warning plays its tone and vibration');
    check(await w.evaluate(() => !!window.radiogate.renew.denied), 'renewal was asked for and refused by a verify-only gateway');
    await w.screenshot({ path: join(ARTIFACTS, 'expiry-warning-390x844.png') });
    await w.context().close();

    // --- a phone whose media path never connects is told so, and cannot talk ---
    const m = await openPhone(browser, 'M', TOKENS.M, [breakIce]);
    await m.waitForSelector('#conn[data-state="online"]', { timeout: WAIT });
    await m.waitForFunction(() => /No audio connection/.test(document.getElementById('service-text').textContent)
      && !document.getElementById('service').hidden, null, { timeout: WAIT });
    check(await m.isDisabled('#ptt'), 'no media path: the PTT button is disabled');
    check((await cues(m)).includes('alarm') && (await vibrations(m)).includes('[400,150,400,150,400]'),
      'no media path: the alarm tone and vibration');
    await m.screenshot({ path: join(ARTIFACTS, 'no-media-390x844.png') });
    await m.context().close();

    // --- ICE connected but no audio while someone talks: "Not receiving audio" within ~2 s ---
    const n = await openPhone(browser, 'N', TOKENS.N, [freezeInbound]);
    await waitBack(n);
    const nBox = await a.locator('#ptt').boundingBox();
    await a.mouse.move(nBox.x + nBox.width / 2, nBox.y + nBox.height / 2);
    await a.mouse.down();
    await a.waitForSelector('#floor-state[data-state="talking"]', { timeout: WAIT });
    const talkAt = Date.now();
    await n.waitForFunction(() => /Not receiving audio/.test(document.getElementById('service-text').textContent)
      && !document.getElementById('service').hidden, null, { timeout: WAIT });
    const after = Date.now() - talkAt;
    await a.mouse.up();
    check(after < 5000 && (await cues(n)).includes('alarm') && await n.isDisabled('#ptt'),
      `no RTP while the channel shows a talker: told after ${after} ms, alarm, PTT disabled`);
    await n.screenshot({ path: join(ARTIFACTS, 'no-audio-390x844.png') });
    await n.context().close();

    // --- the gateway dies: alarm, full-width state, buttons disabled, a countdown that counts ---
    const samples = [];
    for (let i = 0; i < RESTARTS; i++) {
      await killGateway(i % 2 ? 'SIGTERM' : 'SIGKILL');
      await Promise.all(Object.values(phones).map((p) => p.waitForFunction(() => !document.getElementById('service').hidden
        && /No connection to the gateway/.test(document.getElementById('service-text').textContent), null, { timeout: WAIT })));
      if (i === 0) {
        check(await a.isDisabled('#ptt'), 'offline: the PTT button is disabled');
        check((await cues(a)).includes('alarm') && (await vibrations(a)).includes('[400,150,400,150,400]'),
          'offline: the alarm tone and vibration');
        check((await tones(a)).includes('880 440 880 440'), `offline: the page started the alarm's oscillators (${await tones(a)})`);
        check(await a.isVisible('#retry-now'), 'offline: "Retry now" is shown');
        await a.screenshot({ path: join(ARTIFACTS, 'offline-390x844.png') });
        // The countdown counts: wait until the text changes while the gateway stays down.
        const t0 = await a.textContent('#service-text');
        await a.waitForFunction((t) => document.getElementById('service-text').textContent !== t, t0, { timeout: WAIT });
        check(true, `the countdown changes ("${t0}" then "${await a.textContent('#service-text')}")`);
        // Stay down a few seconds so the backoff grows, as in a real restart.
        await new Promise((r) => setTimeout(r, 3000)); // the outage itself, not a wait for an event
      }
      const up = await startGateway();
      const back = await Promise.all(Object.values(phones).map((p) => waitBack(p)));
      for (const t of back) samples.push(t - up);
      log(`restart ${i + 1}: back after ${back.map((t) => t - up).join(', ')} ms`);
      if (i === 0) {
        check((await cues(a)).includes('back') && /880 440 880 440.*523 784/.test(await tones(a)),
          `back online: the short "back" cue, after the alarm (${await tones(a)})`);
        await a.screenshot({ path: join(ARTIFACTS, 'back-online-390x844.png') });
      }
    }
    samples.sort((x, y) => x - y);
    const p95 = samples[Math.ceil(samples.length * 0.95) - 1];
    log(`back after restart (ms, ${samples.length} phone-restarts): ${samples.join(' ')}`);
    check(p95 <= 2000, `p95 of phones back within 2 s of the gateway listening again (p95 ${p95} ms, max ${samples[samples.length - 1]} ms)`);

    // --- audio flows again after the restarts ---
    const b = phones.B;
    const before = await b.evaluate(async () => {
      const st = await window.radiogate.pc.getStats();
      let n = 0;
      st.forEach((r) => { if (r.type === 'inbound-rtp') n += r.packetsReceived || 0; });
      return n;
    });
    const box = await a.locator('#ptt').boundingBox();
    await a.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await a.mouse.down();
    await a.waitForSelector('#floor-state[data-state="talking"]', { timeout: WAIT });
    await b.waitForFunction(async (n0) => {
      const st = await window.radiogate.pc.getStats();
      let n = 0;
      st.forEach((r) => { if (r.type === 'inbound-rtp') n += r.packetsReceived || 0; });
      return n >= n0 + 50;
    }, before, { timeout: WAIT, polling: 100 });
    await a.mouse.up();
    check(true, 'after the restarts B hears A again (50 packets)');

    // --- Retry now: after a long outage the next try is seconds away; one tap tries at once ---
    await killGateway('SIGKILL');
    await a.waitForFunction(() => window.radiogate.attempt >= 10, null, { timeout: 30000 });
    await startGateway();
    const waiting = await a.evaluate(() => window.radiogate.retry.until - Date.now());
    const tapped = Date.now();
    await a.click('#retry-now', { timeout: 2000 });
    await waitBack(a);
    const took = Date.now() - tapped;
    check(waiting > 1000 && took < waiting, `"Retry now" brought A back in ${took} ms; its next try was ${waiting} ms away`);
    check(await isBack(a), 'A is back');

    // --- a 429 is told as what it is (here: A's link already open on another phone) ---
    const a2 = await openPhone(browser, 'A2', TOKENS.A);
    await a2.waitForFunction(() => /too many devices/.test(document.getElementById('service-text').textContent)
      && !document.getElementById('service').hidden, null, { timeout: WAIT });
    check(/Retrying in \d+ s|Retrying…/.test(await a2.textContent('#service-text')),
      `a 429 says why and when it retries ("${await a2.textContent('#service-text')}")`);
    await a2.screenshot({ path: join(ARTIFACTS, 'too-many-390x844.png') });
    await a2.context().close();

    // --- installable: with the gateway down, the installed shell still opens ---
    await a.waitForFunction(async () => !!(await navigator.serviceWorker.ready) && !!(await caches.match('/')), null, { timeout: WAIT });
    const head = await a.evaluate(async () => {
      const m = await (await fetch('/manifest.webmanifest')).json();
      const icon = await fetch(document.querySelector('link[rel="apple-touch-icon"]').href);
      return { sizes: m.icons.map((i) => i.sizes), display: m.display, icon: icon.headers.get('content-type') };
    });
    check(head.display === 'standalone' && head.sizes.includes('192x192') && head.sizes.includes('512x512') && head.icon === 'image/png',
      `the manifest has 192 and 512 px icons and the page an apple-touch-icon (${JSON.stringify(head)})`);
    await killGateway('SIGKILL');
    const shell = await a.context().newPage();
    await shell.goto(`${HTTP}/`);
    await shell.waitForSelector('#start-btn', { timeout: WAIT });
    check(await shell.isVisible('#start-btn'), 'with the gateway down the shell opens from the service worker (Tap to start)');
    await shell.click('#start-btn');
    await shell.waitForFunction(() => !document.getElementById('service').hidden, null, { timeout: WAIT });
    check(/No connection to the gateway/.test(await shell.textContent('#service-text')), 'and says at once that there is no connection');
    await shell.screenshot({ path: join(ARTIFACTS, 'offline-shell-390x844.png') });
  } finally {
    await browser.close();
    await killGateway('SIGTERM');
  }
  if (failures) {
    log(`${failures} check(s) failed`);
    process.exit(1);
  }
  log('all service checks passed');
}

main().catch(async (e) => {
  log(`FAILED: ${e.stack || e}`);
  await killGateway('SIGKILL');
  process.exit(1);
});
