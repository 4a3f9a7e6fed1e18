// radiogate web client: push-to-talk over the gateway's JSON-RPC WebSocket (docs/PROTOCOL.md)
// and one WebRTC peer connection with pre-allocated audio slots. No dependencies, no build.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'radiogate.token';
  const PREFS_KEY = 'radiogate.prefs';
  const RPC_TIMEOUT_MS = 10000;
  const PING_EVERY_MS = 15000;
  // Reconnect delays (issue 12): fast while a restart is likely, never more than 5 s apart.
  const BACKOFF_MS = [250, 500, 1000, 1000, 1000, 1000, 1000, 1000, 2000, 3000, 5000];
  const BACKOFF_CAP_MS = 5000;
  // No RTP for this long on a slot whose channel shows a talker: the media path is dead.
  const MEDIA_SILENT_MS = 2000;
  // ICE not connected this long after the answer: no media path.
  const ICE_DEADLINE_MS = 6000;
  // Renew the access link when this much of it is left; warn when this much is left.
  const RENEW_BEFORE_MS = 30 * 60 * 1000;
  const EXPIRY_WARNING_MS = 15 * 60 * 1000;

  const S = {
    token: null,
    ws: null,
    wsOpen: false,
    everOpened: false,
    nextId: 1,
    pending: new Map(),
    me: null,
    slots: 1,
    channels: new Map(), // id -> {id, joined, slot, talker, pendingRemoval}
    wanted: new Set(), // channels to be joined: every channel, up to the slots (issue 12)
    muted: new Set(), // joined channels whose speaker is off on this device (activity still shown)
    selected: null,
    pc: null,
    mediaGen: 0,
    micStream: null,
    micTrack: null,
    micError: null,
    sender: null,
    sinks: [],
    floor: { state: 'idle', channel: null, expiresAt: 0, message: '', talker: null },
    pttDown: false,
    // Emergency broadcast (DISPATCH): idle -> arming (arm sent) -> holding (countdown) ->
    // starting (start sent) -> live; released early: back to idle with a "hold longer" hint.
    bcast: { state: 'idle', pressed: false, gen: 0, holdMs: 2000, until: 0, timer: null, hint: '', hintTimer: null, channels: [] },
    broadcasts: new Map(), // connId -> {connId, userId, name} of the event's active broadcasts
    bcastEnded: null, // {name, reason, at} of the last broadcast that ended
    bcastLog: [], // every broadcast.started/stopped received (for the end-to-end tests)
    admin: { timer: null, confirm: null, confirmTimer: null },
    attempt: 0,
    reconnectTimer: null,
    pingTimer: null,
    stopped: false,
    audioCtx: null,
    analyser: null,
    wakeLock: null,
    totTimer: null,
    started: false,
    // Loss-of-service watch (issue 12).
    service: { problem: null, wasOk: false, kind: 'ok' },
    media: { iceOkAt: 0, answeredAt: 0, dead: null, slots: new Map() },
    retry: { until: 0, why: '', timer: null },
    renew: { pending: false, denied: null, warnedFor: 0 },
    cues: [], // every cue played: alarm, back, warn, incoming, eom (for the end-to-end tests)
    // Per-device settings (issue 12): a tone and vibration when someone starts talking on a
    // heard channel (on by default), a beep at the end of their message (off by default).
    prefs: { incoming: true, eom: false, key: 'Space' },
    settingKey: false,
    mediaKeyTalk: false, // a talk started by a headset or media key (kept when the screen locks)
    meterSource: 'none', // 'mic' while talking, 'incoming' while listening
    watchTimer: null,
    recorded: false, // the gateway records (channel.list `recorded`)
    history: [], // recent recordings of the talk channel, newest first
    replay: null, // the <audio> element playing a recording, if any
  };
  window.radiogate = S; // for debugging and the end-to-end tests
  window.radiogateHandle = (msg) => onMessage(msg); // lets tests inject server notifications

  // ---------- screens and small helpers ----------

  function show(id) {
    for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== id;
  }

  function banner(text, kind = 'warn', ms = 0) {
    const b = $('banner');
    if (!text) { b.hidden = true; return; }
    b.textContent = text;
    b.dataset.kind = kind;
    b.hidden = false;
    clearTimeout(banner.t);
    if (ms) banner.t = setTimeout(() => { if (b.textContent === text) b.hidden = true; }, ms);
  }

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  // What people read instead of the wire's role names (issue 12).
  const ROLE_WORDS = { ADMIN: 'Admin', DISPATCH: 'Dispatcher', GENERAL: 'Staff' };
  const roleWord = (r) => ROLE_WORDS[r] || r || '';

  function decodeClaims(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = decodeURIComponent(Array.from(atob(part), (ch) =>
        '%' + ch.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
      return JSON.parse(json);
    } catch (_) {
      return null;
    }
  }

  function wantedKey() {
    return S.me ? `radiogate.wanted.${S.me.event}.${S.me.userId}` : null;
  }

  function saveWanted() {
    const k = wantedKey();
    if (!k) return;
    try {
      localStorage.setItem(k, JSON.stringify({ muted: [...S.muted], selected: S.selected }));
    } catch (_) { /* private mode: state kept for this page only */ }
  }

  function loadWanted() {
    const k = wantedKey();
    try {
      const v = k && JSON.parse(localStorage.getItem(k) || 'null');
      if (v && typeof v === 'object') {
        S.muted = new Set((Array.isArray(v.muted) ? v.muted : []).filter((x) => typeof x === 'string'));
        S.selected = typeof v.selected === 'string' ? v.selected : null;
        return true;
      }
    } catch (_) { /* ignore a corrupt entry */ }
    return false;
  }

  // ---------- token and start ----------

  function tokenFromText(text) {
    const t = text.trim();
    const m = t.match(/[?&]token=([^&#\s]+)/);
    const tok = m ? decodeURIComponent(m[1]) : t;
    return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(tok) ? tok : null;
  }

  function init() {
    const url = new URL(location.href);
    const fromUrl = url.searchParams.get('token');
    if (fromUrl) {
      try { localStorage.setItem(TOKEN_KEY, fromUrl); } catch (_) { /* keep in memory */ }
      url.searchParams.delete('token');
      history.replaceState(null, '', url.pathname + url.search + url.hash);
    }
    S.token = fromUrl || (() => { try { return localStorage.getItem(TOKEN_KEY); } catch (_) { return null; } })();
    // Installable, and the shell opens without the network (sw.js).
    if ('serviceWorker' in navigator && window.isSecureContext) {
      navigator.serviceWorker.register('/sw.js').catch(() => { /* no offline shell */ });
    }
    wireUi();
    if (!S.token) return show('join');
    showStart();
  }

  function showStart() {
    const c = decodeClaims(S.token);
    $('start-who').textContent = c && c.name ? `Signed in as ${c.name}${c.role ? ' (' + roleWord(c.role) + ')' : ''}` : '';
    show('start');
  }

  function forget() {
    try { localStorage.removeItem(TOKEN_KEY); } catch (_) { /* nothing to forget */ }
    location.replace('/');
  }

  async function start() {
    if (S.started) return;
    S.started = true;
    unlockAudio();
    show('talk');
    setConn('connecting', 'Connecting…');
    render();
    await openMic();
    keepAwake();
    setupMediaSession();
    connect();
    S.watchTimer = setInterval(watchMedia, 1000);
  }

  // ---------- audio: unlock, microphone, meter, tones ----------

  function unlockAudio() {
    try {
      if (!S.audioCtx) S.audioCtx = new (window.AudioContext || window.webkitAudioContext)();
      if (S.audioCtx.state === 'suspended') S.audioCtx.resume();
    } catch (_) { /* no Web Audio: no tones or meter */ }
    for (const a of S.sinks) if (a.srcObject && a.paused) a.play().catch(() => {});
  }

  function micErrorText(e) {
    if (!window.isSecureContext || !navigator.mediaDevices) {
      return 'The microphone only works over a secure connection. Open this page with https:// ' +
        '(ask the organiser for the https link), then allow the microphone.';
    }
    switch (e && e.name) {
      case 'NotAllowedError':
      case 'SecurityError':
        return 'Microphone blocked: you can listen but not talk. Allow the microphone for this ' +
          'site (the lock or settings icon next to the address), then reload the page.';
      case 'NotFoundError':
      case 'OverconstrainedError':
        return 'No microphone found: you can listen but not talk. Plug in or enable a microphone, then reload.';
      case 'NotReadableError':
      case 'AbortError':
        return 'The microphone is in use by another app (a call?). Close it, then reload the page.';
      default:
        return `Microphone unavailable (${(e && e.message) || e}): you can listen but not talk.`;
    }
  }

  async function openMic() {
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error('insecure context');
      S.micStream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: false,
      });
      S.micTrack = S.micStream.getAudioTracks()[0] || null;
      S.micError = null;
    } catch (e) {
      S.micError = micErrorText(e);
      banner(S.micError, 'error');
    }
    startMeter();
    render();
  }

  // The level meter: your own microphone while you talk, what you hear otherwise (every
  // downlink slot mixed into one analyser).
  function startMeter() {
    if (!S.audioCtx || S.meterStarted) return;
    S.meterStarted = true;
    try {
      S.inAnalyser = S.audioCtx.createAnalyser();
      S.inAnalyser.fftSize = 1024;
      if (S.micStream) {
        S.analyser = S.audioCtx.createAnalyser();
        S.analyser.fftSize = 1024;
        S.audioCtx.createMediaStreamSource(S.micStream).connect(S.analyser);
      }
    } catch (_) { return; }
    const buf = new Float32Array(1024);
    const bar = $('meter-bar');
    const tick = () => {
      const talking = S.floor.state === 'talking' || S.bcast.state === 'live';
      const an = talking ? S.analyser : S.inAnalyser;
      S.meterSource = an ? (talking ? 'mic' : 'incoming') : 'none';
      let db = -100;
      if (an) {
        an.getFloatTimeDomainData(buf);
        let sum = 0;
        for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        db = 20 * Math.log10(Math.sqrt(sum / buf.length) + 1e-9); // -60 dB .. 0 dB -> 0 .. 100 %
      }
      S.meterDb = db;
      bar.style.width = Math.max(0, Math.min(100, (db + 60) * (100 / 60))).toFixed(0) + '%';
      bar.dataset.source = S.meterSource;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  // Feeds a downlink track to the incoming meter (heard channels only: muted slots are not).
  function meterInput(slot, track) {
    if (!S.audioCtx || !S.inAnalyser) return;
    try {
      const src = S.audioCtx.createMediaStreamSource(new MediaStream([track]));
      const gain = S.audioCtx.createGain();
      src.connect(gain).connect(S.inAnalyser);
      S.meterGains = S.meterGains || [];
      S.meterGains[slot] = gain;
    } catch (_) { /* no meter for this slot */ }
  }

  function tone(freqs, ms, gain = 0.18) {
    const ctx = S.audioCtx;
    if (!ctx) return;
    let t = ctx.currentTime + 0.01;
    for (const f of freqs) {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = f;
      g.gain.setValueAtTime(0, t);
      g.gain.linearRampToValueAtTime(gain, t + 0.005);
      g.gain.setValueAtTime(gain, t + ms / 1000 - 0.01);
      g.gain.linearRampToValueAtTime(0, t + ms / 1000);
      o.connect(g).connect(ctx.destination);
      o.start(t);
      o.stop(t + ms / 1000);
      t += ms / 1000 + 0.03;
    }
  }
  const permitTone = () => tone([880, 1320], 70);
  const denyTone = () => tone([330, 262], 140, 0.15);
  const revokeTone = () => tone([660, 440, 330], 110, 0.15);

  // Service cues: each a distinct tone and vibration pattern, logged in S.cues.
  const CUES = {
    alarm: { freqs: [880, 440, 880, 440], ms: 180, gain: 0.25, vibrate: [400, 150, 400, 150, 400] },
    back: { freqs: [523, 784], ms: 90, gain: 0.18, vibrate: [60] },
    incoming: { freqs: [1320], ms: 45, gain: 0.08, vibrate: [30] },
    eom: { freqs: [1200, 900], ms: 50, gain: 0.07, vibrate: null },
    warn: { freqs: [988, 988, 988], ms: 120, gain: 0.2, vibrate: [200, 100, 200] },
  };

  function cue(kind) {
    const c = CUES[kind];
    S.cues.push({ kind, at: Date.now() });
    tone(c.freqs, c.ms, c.gain);
    if (c.vibrate && navigator.vibrate) navigator.vibrate(c.vibrate);
  }

  function loadPrefs() {
    try {
      const v = JSON.parse(localStorage.getItem(PREFS_KEY) || 'null');
      if (v && typeof v === 'object') {
        if (typeof v.incoming === 'boolean') S.prefs.incoming = v.incoming;
        if (typeof v.eom === 'boolean') S.prefs.eom = v.eom;
        if (typeof v.key === 'string' && /^[A-Za-z0-9]{1,24}$/.test(v.key)) S.prefs.key = v.key;
      }
    } catch (_) { /* defaults */ }
    $('pref-incoming').checked = S.prefs.incoming;
    $('pref-eom').checked = S.prefs.eom;
    $('pref-key').textContent = keyLabel(S.prefs.key);
  }

  // "Space", "F8", "KeyT" -> "space bar", "F8", "T".
  function keyLabel(code) {
    if (code === 'Space') return 'space bar';
    return code.replace(/^Key/, '').replace(/^Digit/, '');
  }

  // A phone (coarse pointer, no hover) gets no keyboard hint.
  const touchOnly = () => window.matchMedia && window.matchMedia('(hover: none) and (pointer: coarse)').matches;

  // Headset and Bluetooth buttons and media keys (Media Session API): play/pause toggles talk;
  // the gateway's time-out timer ends a talk whose second press never comes.
  function setupMediaSession() {
    try { if (navigator.audioSession) navigator.audioSession.type = 'play-and-record'; } catch (_) { /* Safari only */ }
    if (!('mediaSession' in navigator)) return;
    const ms = navigator.mediaSession;
    const toggle = () => {
      if (S.pttDown) { S.mediaKeyTalk = false; pttUp(); } else { S.mediaKeyTalk = true; pttDown(); }
    };
    for (const a of ['play', 'pause', 'togglemicrophone']) {
      try { ms.setActionHandler(a, toggle); } catch (_) { /* action not supported here */ }
    }
    try {
      ms.metadata = new MediaMetadata({ title: 'radiogate push-to-talk', artist: 'Press play/pause to talk' });
      ms.playbackState = 'playing';
    } catch (_) { /* no metadata */ }
  }

  function savePrefs() {
    S.prefs.incoming = $('pref-incoming').checked;
    S.prefs.eom = $('pref-eom').checked;
    $('pref-key').textContent = keyLabel(S.prefs.key);
    try { localStorage.setItem(PREFS_KEY, JSON.stringify(S.prefs)); } catch (_) { /* this page only */ }
  }

  // Whether this device plays `channelId` now (joined, not muted here, or the talk channel).
  function heard(channelId) {
    const c = S.channels.get(channelId);
    return !!c && c.joined && (channelId === S.selected || !S.muted.has(channelId));
  }

  const isMe = (t) => !!t && !!S.me && t.connId === S.me.connId;

  async function keepAwake() {
    if (!('wakeLock' in navigator) || document.visibilityState !== 'visible' || S.stopped) return;
    try {
      S.wakeLock = await navigator.wakeLock.request('screen');
    } catch (_) { /* battery saver or unsupported: the screen may dim */ }
  }

  // ---------- loss of service: said loudly, never silent (issue 12) ----------

  // What is wrong now, as the user should read it, or null.
  function serviceProblem() {
    if (!S.started || S.stopped) return null;
    if (!S.wsOpen) {
      if (!S.everOpened && !S.retry.why) return null; // still connecting the first time
      const left = Math.max(0, Math.ceil((S.retry.until - Date.now()) / 1000));
      return `No connection to the gateway: you cannot talk or hear. ${S.retry.why || ''}` +
        (S.retry.until ? ` Retrying in ${left} s.` : ' Retrying…');
    }
    if (S.media.dead) return `${S.media.dead}: you cannot talk or hear.`;
    return null;
  }

  // Re-evaluates the service state: alarm on loss, a short cue when it is back.
  function updateService() {
    const problem = serviceProblem();
    const svc = $('service');
    const was = S.service.problem;
    S.service.problem = problem;
    if (problem) {
      svc.hidden = false;
      svc.dataset.state = 'lost';
      $('service-text').textContent = problem;
      $('retry-now').hidden = S.wsOpen;
      if (!was) cue('alarm');
    } else {
      svc.hidden = true;
      svc.dataset.state = 'ok';
      if (S.wsOpen && !S.media.dead && S.media.iceOkAt) {
        if (was && S.service.wasOk) cue('back');
        S.service.wasOk = true;
      }
    }
    if (!!was !== !!problem) render();
  }

  // Media path watch, once a second: ICE connected within ICE_DEADLINE_MS of the answer, and
  // RTP arriving on every slot whose channel shows someone else talking.
  async function watchMedia() {
    const pc = S.pc;
    const now = Date.now();
    let dead = null;
    if (S.wsOpen && pc && S.media.answeredAt) {
      const ice = pc.iceConnectionState;
      if (ice === 'connected' || ice === 'completed') {
        S.media.iceOkAt = S.media.iceOkAt || now;
      } else if (ice === 'failed' || ice === 'disconnected' || ice === 'closed') {
        dead = 'No audio connection (the network blocks it)';
      } else if (now - S.media.answeredAt > ICE_DEADLINE_MS) {
        dead = 'No audio connection (the network blocks it)';
      }
      if (!dead && S.media.iceOkAt) {
        let stats = null;
        try { stats = await pc.getStats(); } catch (_) { /* closed meanwhile */ }
        const byMid = new Map();
        if (stats) stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'audio') byMid.set(String(r.mid), r.packetsReceived || 0); });
        const mids = pc.getTransceivers().map((t) => String(t.mid));
        for (const c of S.channels.values()) {
          if (!c.joined || c.slot === null || c.slot === undefined) continue;
          const other = c.talker && !(S.me && c.talker.connId === S.me.connId);
          const got = byMid.get(mids[c.slot]) || 0;
          const w = S.media.slots.get(c.slot) || { packets: got, at: now, talker: null };
          const tid = other ? c.talker.connId : null;
          if (got !== w.packets || tid !== w.talker) { w.packets = got; w.at = now; w.talker = tid; }
          S.media.slots.set(c.slot, w);
          if (other && now - w.at >= MEDIA_SILENT_MS) dead = 'Not receiving audio';
        }
      }
    }
    if (pc !== S.pc) return;
    S.media.dead = dead;
    updateService();
    checkExpiry();
  }

  // ---------- access link: renewal and the expiry warning (issue 12) ----------

  function tokenExpMs() {
    const c = decodeClaims(S.token || '');
    return c && c.exp ? c.exp * 1000 : 0;
  }

  async function checkExpiry() {
    const exp = tokenExpMs();
    if (!exp || !S.wsOpen) return;
    const left = exp - Date.now();
    if (left < RENEW_BEFORE_MS && !S.renew.pending && !S.renew.denied) {
      S.renew.pending = true;
      try {
        const r = await call('session.renew');
        if (r && r.token) {
          S.token = r.token;
          try { localStorage.setItem(TOKEN_KEY, r.token); } catch (_) { /* memory only */ }
          S.renew.log = (S.renew.log || 0) + 1;
        }
      } catch (e) {
        if (e && e.data && e.data.type === 'PERMISSION_DENIED') S.renew.denied = e.message || 'denied';
      } finally {
        S.renew.pending = false;
      }
      return;
    }
    // Not while a renewal is in flight: its answer decides what the warning tells the user
    // (a refusal adds "ask the organiser"); shown once, it is not shown again for this link.
    if (left < EXPIRY_WARNING_MS && !S.renew.pending && S.renew.warnedFor !== exp) {
      S.renew.warnedFor = exp;
      cue('warn');
      const at = new Date(exp).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      banner(`Your access ends at ${at}. ${S.renew.denied ? 'Ask the organiser for a new link.' : ''}`.trim(), 'warn');
    }
  }

  // ---------- signaling ----------

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws?token=${encodeURIComponent(S.token)}`;
  }

  function connect() {
    clearTimeout(S.reconnectTimer);
    if (S.stopped || (S.ws && S.ws.readyState <= 1)) return;
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      return scheduleReconnect();
    }
    S.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      S.wsOpen = true;
      S.everOpened = true;
      S.attempt = 0;
      S.retry = { until: 0, why: '', timer: null };
      setConn('online', 'Online');
      banner(S.micError, 'error');
      S.pingTimer = setInterval(ping, PING_EVERY_MS);
      updateService();
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.wsOpen = false;
      clearInterval(S.pingTimer);
      dropSession();
      const why = S.closingReason || ev.reason;
      S.closingReason = null;
      if (ev.code === 4001) {
        return stop('Access expired', 'Your access link has expired. Ask the organiser for a new one.');
      }
      if (ev.code === 4003) {
        return stop('Disconnected by the organiser',
          (why ? why + '. ' : '') + 'Contact the organiser if this is a mistake.');
      }
      if (!opened) return probe();
      scheduleReconnect(ev.code === 1001 ? 'The gateway restarted.' : 'Connection lost.');
      updateService();
    };
  }

  // The WebSocket API hides why a connect was refused: ask the same URL without upgrading.
  async function probe() {
    let resp = null;
    let body = '';
    try {
      resp = await fetch(`/ws?token=${encodeURIComponent(S.token)}`, { cache: 'no-store' });
      body = (await resp.text()).trim();
    } catch (_) { /* the gateway is unreachable */ }
    if (resp && resp.status === 401) {
      if (/expired/i.test(body)) {
        return stop('Access expired', 'Your access link has expired. Ask the organiser for a new one.');
      }
      return stop('Access refused', `This access link is not valid here (${body}). Ask the organiser for a new one.`);
    }
    if (resp && resp.status === 403) {
      return stop(/suspend/i.test(body) ? 'Account suspended' : 'Access refused',
        `${body.replace(/^forbidden:\s*/i, '')}. Contact the organiser.`);
    }
    if (resp && resp.status === 429) {
      // The gateway says which limit: this user's open sessions, or attempts from here.
      const after = parseInt(resp.headers.get('retry-after') || '', 10);
      const why = /sessions for this user/i.test(body)
        ? 'This link is open on too many devices: close it on another one.'
        : 'Too many attempts from this network.';
      return scheduleReconnect(why, Number.isFinite(after) ? after * 1000 : 0);
    }
    scheduleReconnect(resp ? `The gateway is not ready (${resp.status}).` : 'Cannot reach the gateway.');
  }

  // Next attempt after the backoff (capped at 5 s, with jitter), or `atLeastMs` when the
  // gateway said when (429 Retry-After). The countdown counts; "Retry now" and the browser's
  // `online` event try at once.
  function scheduleReconnect(why, atLeastMs = 0) {
    if (S.stopped) return;
    const base = BACKOFF_MS[Math.min(S.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.max(atLeastMs, Math.min(BACKOFF_CAP_MS, Math.round(base * (0.85 + Math.random() * 0.3))));
    S.attempt++;
    S.retry.until = Date.now() + delay;
    S.retry.why = why || 'Connection lost.';
    setConn('reconnecting', 'Offline');
    clearTimeout(S.reconnectTimer);
    clearInterval(S.retry.timer);
    S.retry.timer = setInterval(updateService, 250);
    S.reconnectTimer = setTimeout(retryNow, delay);
    updateService();
  }

  function retryNow() {
    if (S.stopped || S.wsOpen || (S.ws && S.ws.readyState <= 1)) return;
    clearTimeout(S.reconnectTimer);
    clearInterval(S.retry.timer);
    S.retry.until = 0;
    updateService();
    connect();
  }

  function stop(title, text) {
    S.stopped = true;
    clearInterval(S.admin.timer);
    clearTimeout(S.reconnectTimer);
    if (S.ws) { const ws = S.ws; S.ws = null; try { ws.close(1000); } catch (_) { /* closed */ } }
    dropSession();
    if (S.wakeLock) { S.wakeLock.release().catch(() => {}); S.wakeLock = null; }
    $('stopped-title').textContent = title;
    $('stopped-text').textContent = text;
    show('stopped');
    clearInterval(S.watchTimer);
    clearInterval(S.retry.timer);
    cue('alarm');
  }

  function send(obj) {
    if (S.ws && S.wsOpen) S.ws.send(JSON.stringify(obj));
  }

  function call(method, params) {
    return new Promise((resolve, reject) => {
      if (!S.ws || !S.wsOpen) return reject({ message: 'not connected', data: { type: 'OFFLINE' } });
      const id = S.nextId++;
      const timer = setTimeout(() => {
        S.pending.delete(id);
        reject({ message: `${method}: no reply`, data: { type: 'TIMEOUT' } });
      }, RPC_TIMEOUT_MS);
      S.pending.set(id, { resolve, reject, timer });
      send({ jsonrpc: '2.0', id, method, params: params || {} });
    });
  }

  function ping() {
    const ws = S.ws;
    // A phone that changed networks may keep a dead TCP connection: no reply, start over.
    call('session.ping').catch((e) => {
      if (ws && S.ws === ws && e && e.data && e.data.type === 'TIMEOUT') ws.close();
    });
  }

  function onMessage(msg) {
    if (msg.id !== undefined && msg.id !== null && !msg.method) {
      const p = S.pending.get(msg.id);
      if (!p) return;
      S.pending.delete(msg.id);
      clearTimeout(p.timer);
      return msg.error ? p.reject(msg.error) : p.resolve(msg.result);
    }
    const params = msg.params || {};
    switch (msg.method) {
      case 'channel.list': return onChannelList(params);
      case 'floor.granted': return onTalker(params.channelId, S.me && { connId: S.me.connId, userId: S.me.userId, name: S.me.name });
      case 'floor.taken': return onTalker(params.channelId, params.talker || null);
      case 'floor.idle': return onIdle(params.channelId);
      case 'floor.revoke': return onRevoke(params);
      case 'permission.update': return onPermissionUpdate(params);
      case 'broadcast.started': return onBroadcastStarted(params);
      case 'broadcast.stopped': return onBroadcastStopped(params);
      case 'channel.link': return onChannelLink(params);
      // The whole close reason when it is longer than the close frame can carry.
      case 'session.closing': S.closingReason = params.reason || null; return undefined;
      default: return undefined;
    }
  }

  // A new session: nothing joined on the server, a fresh peer connection.
  function dropSession() {
    for (const p of S.pending.values()) {
      clearTimeout(p.timer);
      p.reject({ message: 'connection closed', data: { type: 'OFFLINE' } });
    }
    S.pending.clear();
    for (const c of S.channels.values()) { c.joined = false; c.slot = null; c.talker = null; }
    // The gateway stops our broadcast when the session ends. Others' broadcasts are not
    // announced again to a new session: their banner shows from the next start.
    resetBroadcast();
    S.broadcasts.clear();
    if (S.floor.state === 'talking' || S.floor.state === 'requesting') {
      S.floor = { state: 'revoked', channel: S.floor.channel, message: 'Connection lost while talking', expiresAt: 0 };
    }
    stopSending();
    closePc();
    render();
  }

  function channelEntry(x) {
    return typeof x === 'string' ? { channelId: x } : x;
  }

  // This page's state of a channel from a `channel.list` entry (or a bare id).
  function channelState(e) {
    return { id: e.channelId, name: e.name || null, joined: !!e.joined, slot: e.slot ?? null, talker: e.talker || null, pendingRemoval: false, link: e.link || null };
  }

  // A linked channel's state changed (issue 16): "linked" (heard at every linked site) or
  // "site only" (the upstream gateway cannot be reached: only people at this site hear it).
  function onChannelLink(p) {
    const c = S.channels.get(p.channelId);
    if (c) c.link = p.link || null;
    render();
  }

  async function onChannelList(p) {
    S.me = { connId: p.connId, userId: p.userId, name: p.name, role: p.role, event: p.event };
    S.recorded = !!p.recorded;
    S.slots = Math.max(1, p.slots | 0);
    const selectedBefore = S.selected;
    loadWanted();
    if (selectedBefore) S.selected = selectedBefore; // a reconnect keeps this page's choice
    // The gateway lists the token's channels first, in the token's order (issue 12).
    S.channels = new Map();
    for (const e of (p.channels || []).map(channelEntry)) {
      S.channels.set(e.channelId, channelState(e));
    }
    // Every channel is joined and heard, up to the slots; the talk channel is the one this
    // device used last, else the token's first.
    S.wanted = new Set([...S.channels.keys()].slice(0, S.slots));
    if (!S.selected || !S.channels.has(S.selected)) S.selected = S.channels.size ? S.channels.keys().next().value : null;
    fixSelection();
    saveWanted();
    $('me').textContent = `${S.me.name} · ${roleWord(S.me.role)}`;
    const dispatch = S.me.role === 'DISPATCH';
    $('extra-controls').hidden = !dispatch;
    $('priority-btn').hidden = !dispatch;
    $('emergency-btn').hidden = !dispatch;
    $('admin-link').hidden = S.me.role !== 'ADMIN';
    route();
    render();
    await setupMedia();
    await rejoin();
    loadHistory();
  }

  function fixSelection() {
    for (const id of [...S.wanted]) if (!S.channels.has(id)) S.wanted.delete(id);
    if (!S.selected || !S.channels.has(S.selected)) {
      S.selected = [...S.wanted][0] || (S.channels.size ? S.channels.keys().next().value : null);
    }
    if (S.selected) S.wanted.add(S.selected);
  }

  async function rejoin() {
    const ids = [...S.wanted];
    await Promise.all(ids.map((id) => join(id).catch(() => {})));
  }

  async function join(id) {
    const c = S.channels.get(id);
    if (!c) return;
    try {
      const r = await call('channel.join', { channelId: id });
      c.joined = true;
      c.slot = r.slot ?? null;
      c.talker = r.talker || null;
      if (c.slot === null) banner(`${id}: joined, but no audio slot is free for it.`, 'warn', 5000);
    } catch (e) {
      if (e && e.data && e.data.type !== 'OFFLINE') {
        banner(`Cannot join ${id}: ${e.message}`, 'error', 6000);
        S.wanted.delete(id);
        saveWanted();
      }
      throw e;
    } finally {
      render();
    }
  }

  function onTalker(channelId, talker) {
    const c = S.channels.get(channelId);
    const before = c ? c.talker : null;
    if (c) c.talker = talker;
    // Someone else starts talking on a heard channel: the incoming-talk cue.
    if (talker && !isMe(talker) && (!before || before.connId !== talker.connId) && heard(channelId)
      && S.prefs.incoming && S.floor.state !== 'talking') cue('incoming');
    // Live talk wins over a replay.
    if (talker && !isMe(talker) && heard(channelId) && S.replay) stopReplay();
    render();
  }

  function onIdle(channelId) {
    const c = S.channels.get(channelId);
    const before = c ? c.talker : null;
    if (c) c.talker = null;
    if (before && !isMe(before) && heard(channelId) && S.prefs.eom) cue('eom');
    // The transmission just ended is in the history a moment later (the recorder closes it).
    if (before && channelId === S.selected) setTimeout(loadHistory, 700);
    if (S.floor.channel === channelId && S.floor.state === 'talking') {
      // The server ended our turn without a revoke (e.g. the channel was left).
      stopSending();
      S.floor = { state: 'idle', channel: channelId };
    }
    render();
  }

  function onRevoke(p) {
    if (S.floor.channel === p.channelId && (S.floor.state === 'talking' || S.floor.state === 'requesting')) {
      stopSending();
      S.floor = { state: 'revoked', channel: p.channelId, message: p.message || p.reason || 'Floor revoked' };
      revokeTone();
      if (navigator.vibrate) navigator.vibrate([80, 60, 80]);
    }
    const c = S.channels.get(p.channelId);
    if (c && c.talker && S.me && c.talker.connId === S.me.connId) c.talker = null;
    render();
  }

  // Pushed by the gateway when the control plane changes this user's channels.
  function onPermissionUpdate(p) {
    const list = (p.channels || []).map(channelEntry);
    const pending = new Set(p.pending || []);
    const next = new Map();
    for (const e of list) {
      const old = S.channels.get(e.channelId);
      next.set(e.channelId, old || channelState(e));
      next.get(e.channelId).pendingRemoval = pending.has(e.channelId);
    }
    // A channel whose removal waits for our floor release stays listed until it is gone.
    for (const id of pending) {
      const old = S.channels.get(id);
      if (old && !next.has(id)) { old.pendingRemoval = true; next.set(id, old); }
    }
    S.channels = next;
    fixSelection();
    saveWanted();
    const removed = (p.removed || []).filter((id) => !pending.has(id));
    const msgs = [];
    if ((p.added || []).length) msgs.push(`New channel: ${p.added.join(', ')}`);
    if (removed.length) msgs.push(`No longer available: ${removed.join(', ')}`);
    if (pending.size) msgs.push(`Access to ${[...pending].join(', ')} ends when you release`);
    if (msgs.length) banner(msgs.join(' · '), 'info', 8000);
    render();
    // An ADMIN also lists every channel of its event, which a permission update does not carry.
    if (S.me && S.me.role === 'ADMIN') {
      call('channel.list').then((r) => {
        for (const e of (r.channels || []).map(channelEntry)) {
          if (!S.channels.has(e.channelId)) S.channels.set(e.channelId, channelState(e));
        }
        render();
      }).catch(() => {});
    }
  }

  // ---------- media ----------

  function closePc() {
    S.mediaGen++;
    if (S.pc) { try { S.pc.close(); } catch (_) { /* closed */ } }
    S.pc = null;
    S.sender = null;
  }

  function sink(slot) {
    while (S.sinks.length <= slot) {
      const a = document.createElement('audio');
      a.autoplay = true;
      a.setAttribute('playsinline', '');
      a.dataset.slot = String(S.sinks.length);
      $('sinks').appendChild(a);
      S.sinks.push(a);
    }
    return S.sinks[slot];
  }

  function waitGathering(pc, ms) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      });
    });
  }

  async function setupMedia() {
    closePc();
    S.media = { iceOkAt: 0, answeredAt: 0, dead: null, slots: new Map() };
    const gen = S.mediaGen;
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
    S.pc = pc;
    const up = pc.addTransceiver('audio', { direction: 'sendrecv' });
    S.sender = up.sender;
    for (let i = 1; i < S.slots; i++) pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.getTransceivers().forEach((t, i) => {
      const a = sink(i);
      a.srcObject = new MediaStream([t.receiver.track]);
      a.play().catch(() => { /* played after the next tap */ });
      meterInput(i, t.receiver.track);
    });
    pc.oniceconnectionstatechange = () => { if (gen === S.mediaGen) watchMedia(); };
    pc.onconnectionstatechange = () => {
      if (gen !== S.mediaGen) return;
      if (pc.connectionState === 'failed') {
        banner('Audio connection failed, retrying…', 'warn', 4000);
        setTimeout(() => { if (gen === S.mediaGen && S.wsOpen) setupMedia(); }, 1000);
      }
      render();
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitGathering(pc, 2000);
      if (gen !== S.mediaGen) return;
      const r = await call('webrtc.offer', { sdp: pc.localDescription.sdp });
      if (gen !== S.mediaGen) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: r.sdp });
      S.media.answeredAt = Date.now();
      pc.onicecandidate = (ev) => {
        if (ev.candidate && ev.candidate.candidate && gen === S.mediaGen) {
          call('webrtc.candidate', {
            candidate: ev.candidate.candidate,
            sdpMid: ev.candidate.sdpMid,
            sdpMLineIndex: ev.candidate.sdpMLineIndex,
          }).catch(() => {});
        }
      };
      if (S.floor.state === 'talking' || S.bcast.state === 'live') startSending();
    } catch (e) {
      if (gen === S.mediaGen && S.wsOpen) banner(`Audio setup failed: ${e.message || e}`, 'error', 6000);
    }
  }

  function startSending() {
    if (S.sender && S.micTrack) S.sender.replaceTrack(S.micTrack).catch(() => {});
  }

  // The microphone stays up while an emergency broadcast is live, whatever the floors do.
  function stopSending() {
    if (S.bcast.state === 'live') return;
    if (S.sender) S.sender.replaceTrack(null).catch(() => {});
  }

  // ---------- push to talk ----------

  // `priority`: the DISPATCH priority button (floor.priority_request, pre-empts GENERAL).
  async function pttDown(priority = false) {
    if (S.pttDown) return;
    if (S.bcast.state !== 'idle') return; // the broadcast already holds every floor
    S.pttDown = true;
    unlockAudio();
    const id = S.selected;
    if (!id || !S.wsOpen || S.service.problem) {
      S.floor = { state: 'denied', channel: id, message: S.service.problem ? 'No service' : S.wsOpen ? 'Select a channel first' : 'Not connected' };
      denyTone();
      return render();
    }
    if (!S.micTrack) {
      S.floor = { state: 'denied', channel: id, message: S.micError || 'No microphone' };
      denyTone();
      return render();
    }
    S.floor = { state: 'requesting', channel: id, priority };
    render();
    try {
      const c = S.channels.get(id);
      if (!c || !c.joined) { S.wanted.add(id); saveWanted(); await join(id); }
      const r = await call(priority ? 'floor.priority_request' : 'floor.request', { channelId: id });
      if (!S.pttDown || S.floor.channel !== id || S.floor.state !== 'requesting') {
        // Released (or revoked) before the grant arrived: give the floor back at once.
        call('floor.release', { channelId: id }).catch(() => {});
        return;
      }
      S.floor = { state: 'talking', channel: id, priority, expiresAt: performance.now() + (r.expiresInMs || 0) };
      startSending();
      permitTone();
      if (navigator.vibrate) navigator.vibrate(40);
      startTot();
    } catch (e) {
      if (S.floor.channel !== id || S.floor.state !== 'requesting') return;
      const talker = e && e.data && e.data.talker;
      if (talker) onTalker(id, talker);
      S.floor = e && e.data && e.data.type === 'FLOOR_BUSY'
        ? { state: 'denied', channel: id, talker, message: '' }
        : { state: 'denied', channel: id, message: (e && e.message) || 'Floor request failed' };
      denyTone();
    }
    render();
  }

  function pttUp() {
    if (!S.pttDown) return;
    S.pttDown = false;
    S.mediaKeyTalk = false;
    const f = S.floor;
    if (f.state === 'talking') {
      stopSending();
      call('floor.release', { channelId: f.channel }).catch(() => {});
      const c = S.channels.get(f.channel);
      if (c && c.talker && S.me && c.talker.connId === S.me.connId) c.talker = null;
      S.floor = { state: 'idle', channel: f.channel };
    } else if (f.state === 'requesting') {
      S.floor = { state: 'idle', channel: f.channel }; // the grant, if any, is handed back
    } else if (f.state === 'denied') {
      S.floor = { state: 'idle', channel: f.channel };
    } // 'revoked' stays on screen until the next press
    render();
  }

  function startTot() {
    clearInterval(S.totTimer);
    S.totTimer = setInterval(() => {
      if (S.floor.state !== 'talking') { clearInterval(S.totTimer); }
      renderFloor();
    }, 250);
  }

  // ---------- emergency broadcast (DISPATCH) ----------

  // Button down: arm at the gateway, count the hold down from the `holdMs` it answers, then
  // start. The gateway measures the hold itself (arm to start); the countdown starts when the
  // arm reply arrives, so the start can never reach it early.
  async function emergencyDown() {
    const b = S.bcast;
    if (b.pressed) return;
    b.pressed = true;
    unlockAudio();
    if (b.state !== 'idle') return;
    if (!S.wsOpen || !S.micTrack) {
      bcastHint(S.wsOpen ? 'No microphone' : 'Not connected');
      denyTone();
      return render();
    }
    if (S.pttDown) pttUp();
    const gen = ++b.gen;
    b.state = 'arming';
    b.hint = '';
    render();
    let r;
    try {
      r = await call('broadcast.arm');
    } catch (e) {
      if (gen !== b.gen) return;
      b.state = 'idle';
      bcastHint(`Cannot arm: ${(e && e.message) || e}`);
      denyTone();
      return render();
    }
    if (gen !== b.gen || !b.pressed) return; // released meanwhile (emergencyUp said why)
    b.holdMs = Math.max(0, (r && r.holdMs) | 0);
    b.until = performance.now() + b.holdMs + 30;
    b.state = 'holding';
    if (navigator.vibrate) navigator.vibrate(30);
    clearInterval(b.timer);
    b.timer = setInterval(() => {
      if (gen !== b.gen || b.state !== 'holding') { clearInterval(b.timer); return; }
      if (performance.now() >= b.until) { clearInterval(b.timer); startBroadcast(gen); }
      renderDispatch();
    }, 50);
    render();
  }

  async function startBroadcast(gen) {
    const b = S.bcast;
    b.state = 'starting';
    render();
    try {
      const r = await call('broadcast.start');
      if (gen !== b.gen) return;
      b.channels = (r && r.channels) || [];
      b.state = 'live';
      startSending();
      permitTone();
      if (navigator.vibrate) navigator.vibrate([60, 40, 60]);
      if (!b.pressed) emergencyUp(true); // released while the start was on its way
    } catch (e) {
      if (gen !== b.gen) return;
      b.state = 'idle';
      const d = e && e.data;
      bcastHint(d && d.type === 'BROADCAST_REFUSED'
        ? `Hold longer: ${Math.round((d.holdMs || b.holdMs) / 100) / 10} s` : `Broadcast failed: ${(e && e.message) || e}`);
      denyTone();
    }
    render();
  }

  function emergencyUp(force = false) {
    const b = S.bcast;
    if (!b.pressed && !force) return;
    b.pressed = false;
    if (b.state === 'arming' || b.state === 'holding') {
      // Released before the hold completed: nothing is started; the arm is simply dropped.
      b.gen++;
      clearInterval(b.timer);
      b.state = 'idle';
      bcastHint(`Hold longer: keep Emergency pressed for ${Math.round(b.holdMs / 100) / 10} s`);
      denyTone();
    } else if (b.state === 'live') {
      b.gen++;
      b.state = 'idle';
      call('broadcast.stop').catch(() => {});
      stopSending();
      if (S.floor.state === 'talking') startSending();
    } // 'starting': finished by startBroadcast, which sees the release
    render();
  }

  function bcastHint(text) {
    const b = S.bcast;
    b.hint = text;
    clearTimeout(b.hintTimer);
    b.hintTimer = setTimeout(() => { b.hint = ''; renderDispatch(); }, 6000);
  }

  function resetBroadcast() {
    const b = S.bcast;
    b.gen++;
    clearInterval(b.timer);
    const wasLive = b.state === 'live';
    b.state = 'idle';
    b.pressed = false;
    if (wasLive) stopSending();
  }

  function onBroadcastStarted(p) {
    const by = p.by || {};
    S.bcastLog.push({ method: 'broadcast.started', by, at: Date.now() });
    S.broadcasts.set(by.connId, by);
    S.bcastEnded = null;
    if (!(S.me && by.connId === S.me.connId)) {
      tone([988, 740, 988, 740], 120, 0.16);
      if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
    }
    render();
  }

  function onBroadcastStopped(p) {
    const by = p.by || {};
    S.bcastLog.push({ method: 'broadcast.stopped', by, reason: p.reason, at: Date.now() });
    S.broadcasts.delete(by.connId);
    const mine = S.me && by.connId === S.me.connId;
    if (mine && S.bcast.state === 'live') {
      // Ended by the gateway (time-out timer): stop sending, tell the dispatcher.
      resetBroadcast();
      bcastHint(`Broadcast ended: ${p.reason || 'stopped'}`);
      revokeTone();
    }
    S.bcastEnded = { name: by.name || by.userId || 'Dispatch', mine, reason: p.reason, at: Date.now() };
    clearTimeout(onBroadcastStopped.t);
    onBroadcastStopped.t = setTimeout(() => { S.bcastEnded = null; renderBroadcastBanner(); }, 6000);
    render();
  }

  function renderDispatch() {
    const pri = $('priority-btn');
    if (!pri.hidden) {
      const f = S.floor;
      const st = f.priority && f.channel === S.selected && (f.state === 'talking' || f.state === 'requesting') ? f.state : 'idle';
      pri.dataset.state = st;
      pri.querySelector('.extra-label').textContent = st === 'talking' ? 'Priority: talking' : st === 'requesting' ? 'Priority: wait…' : 'Priority talk';
      pri.querySelector('.extra-sub').textContent = st === 'talking' ? 'release to stop' : 'hold · pre-empts';
      pri.disabled = S.bcast.state === 'live' || (!S.micTrack && !!S.micError);
    }
    const em = $('emergency-btn');
    if (em.hidden) return;
    const b = S.bcast;
    let label = 'Emergency';
    let sub = 'hold 2 s · all channels';
    let progress = 0;
    if (b.state === 'arming') { label = 'Keep holding…'; sub = 'arming'; }
    else if (b.state === 'holding') {
      const left = Math.max(0, b.until - performance.now());
      progress = b.holdMs ? 1 - left / b.holdMs : 1;
      label = `${(left / 1000).toFixed(1)} s`;
      sub = 'keep holding to broadcast';
    } else if (b.state === 'starting') { label = 'Starting…'; sub = 'keep holding'; progress = 1; }
    else if (b.state === 'live') { label = 'BROADCASTING'; sub = 'release to stop'; progress = 1; }
    else if (b.hint) { label = 'Emergency'; sub = b.hint; }
    else if (b.holdMs) sub = `hold ${Math.round(b.holdMs / 100) / 10} s · all channels`;
    em.dataset.state = b.state === 'idle' && b.hint ? 'hint' : b.state;
    em.querySelector('.extra-label').textContent = label;
    em.querySelector('.extra-sub').textContent = sub;
    em.querySelector('.extra-fill').style.width = `${Math.round(Math.min(1, Math.max(0, progress)) * 100)}%`;
    em.disabled = !S.micTrack && !!S.micError;
  }

  function renderBroadcastBanner() {
    const el = $('bcast-banner');
    const live = [...S.broadcasts.values()];
    let text = '';
    let kind = '';
    if (S.bcast.state === 'live') {
      text = `EMERGENCY BROADCAST: you are talking to every channel (${S.bcast.channels.length}). Release Emergency to stop.`;
      kind = 'live';
    } else if (live.length) {
      const names = live.map((by) => `Dispatch ${by.name || by.userId}`).join(', ');
      text = `EMERGENCY BROADCAST by ${names}: listen`;
      kind = 'live';
    } else if (S.bcastEnded) {
      text = S.bcastEnded.mine ? 'Your emergency broadcast ended'
        : `Emergency broadcast by Dispatch ${S.bcastEnded.name} ended`;
      kind = 'ended';
    }
    el.hidden = !text;
    if (el.textContent !== text) el.textContent = text;
    el.dataset.kind = kind;
  }

  // ---------- admin panel (ADMIN) ----------

  const AUDIT_ACTIONS = ['AUTH_SUCCESS', 'AUTH_FAILURE', 'CONNECT', 'DISCONNECT', 'CHANNEL_JOIN',
    'CHANNEL_LEAVE', 'CHANNEL_JOIN_DENIED', 'FLOOR_GRANTED', 'FLOOR_DENIED', 'FLOOR_RELEASED',
    'FLOOR_REVOKED', 'FLOOR_PREEMPTED', 'BROADCAST_START', 'BROADCAST_STOP', 'PERMISSION_DENIED',
    'PERMISSION_CHANGE', 'BAN', 'UNBAN', 'FORCE_DISCONNECT', 'RATE_LIMITED', 'TOKEN_ISSUED',
    'TOKEN_RENEWED', 'RECORDING_DELETED'];

  // A DOM element with attributes (`class`, `data-*`, properties) and children (text or nodes).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v);
      else if (k === 'onclick') e.addEventListener('click', v);
      else e[k] = v;
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
  }

  function isAdminView() {
    return location.hash === '#admin' && S.me && S.me.role === 'ADMIN';
  }

  // #admin shows the admin panel (ADMIN only); anything else the talk screen.
  function route() {
    if (!S.started || S.stopped) return;
    if (isAdminView()) {
      if ($('admin').hidden) {
        show('admin');
        adminRefresh();
        clearInterval(S.admin.timer);
        S.admin.timer = setInterval(() => { if (isAdminView()) adminRefresh(false); }, 5000);
      }
    } else {
      clearInterval(S.admin.timer);
      if ($('talk').hidden) show('talk');
    }
  }

  function adminMsg(text, kind = 'info') {
    const m = $('admin-msg');
    m.hidden = !text;
    m.textContent = text || '';
    m.dataset.kind = kind;
    clearTimeout(adminMsg.t);
    if (text && kind === 'info') adminMsg.t = setTimeout(() => { m.hidden = true; }, 6000);
  }

  const errText = (e) => (e && e.message) || String(e);

  function fmtTime(ms) {
    if (!ms) return '';
    const d = new Date(ms);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function fmtDuration(secs) {
    const s = Math.max(0, Math.floor(secs));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    const h = Math.floor(s / 3600);
    return h < 48 ? `${h} h ${Math.floor((s % 3600) / 60)} min` : `${Math.floor(h / 24)} days`;
  }

  async function adminRefresh(withAudit = true) {
    if (!S.wsOpen) return adminMsg('Not connected', 'error');
    const [st, conns, bans] = await Promise.allSettled([
      call('admin.status'), call('admin.connections'), call('admin.bans'),
    ]);
    if (st.status === 'fulfilled') renderAdminStatus(st.value);
    if (conns.status === 'fulfilled') renderAdminConns(conns.value.connections || []);
    if (bans.status === 'fulfilled') renderAdminBans(bans.value.bans || []);
    const bad = [st, conns, bans].find((x) => x.status === 'rejected');
    if (bad) adminMsg(`Refresh failed: ${errText(bad.reason)}`, 'error');
    else if ($('admin-msg').dataset.kind === 'error') adminMsg('');
    if (withAudit) adminAudit();
  }

  function renderAdminStatus(s) {
    const hub = s.hub || {};
    const byRole = Object.entries(hub.connectionsByRole || {}).map(([r, n]) => `${n} ${r}`).join(' · ');
    const sync = s.permissionSync || {};
    const rows = [
      ['Connections', `${hub.connections ?? 0}${byRole ? ` (${byRole})` : ''}`],
      ['Channels', String((hub.channels || []).length)],
      ['Broadcasts', (hub.broadcasts || []).length ? `${hub.broadcasts.length} live` : 'none'],
      ['Permission sync', `${sync.state || '?'}${sync.lastError ? ` (${sync.lastError})` : ''}`],
      ['Bans', String(s.bans ?? 0)],
      ['Audit dropped', String(s.auditDropped ?? 0)],
      ['Uptime', fmtDuration(s.uptimeSecs || 0)],
      ['Version', s.version || ''],
    ];
    $('admin-status').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    // Every channel of the admin's event, with or without members.
    const active = new Map((hub.channels || []).filter((c) => !S.me || c.event === S.me.event).map((c) => [c.channelId, c]));
    const ids = [...new Set([...(s.eventChannels || []), ...active.keys()])].sort();
    $('admin-channels').replaceChildren(...ids.map((id) => {
      const c = active.get(id) || { members: [] };
      return el('li', { 'data-channel': id },
        el('span', { class: 'row-main' }, el('b', {}, id)),
        el('span', { class: 'row-sub' }, `${(c.members || []).length} member(s)` +
          (c.talker ? ` · talking: ${c.talker.name || c.talker.userId}` : '')));
    }));
    renderIssueForm(s.links, s.eventChannels || []);
    $('admin-rec').hidden = !S.recorded;
    const sel = $('rec-channel');
    const want = ['', ...(s.eventChannels || [])].join('\n');
    if (sel.dataset.ids !== want) {
      const cur = sel.value;
      sel.replaceChildren(el('option', { value: '' }, 'All channels'), ...(s.eventChannels || []).map((c) => el('option', { value: c }, channelName(c))));
      sel.value = cur;
      sel.dataset.ids = want;
    }
  }

  // ---------- admin: recordings (issue 14): search, play, download, export ----------

  const msOf = (id) => { const v = $(id).value; return v ? new Date(v).getTime() : undefined; };

  async function adminRecordings(ev) {
    if (ev) ev.preventDefault();
    const q = { limit: 100 };
    const ch = $('rec-channel').value;
    const user = $('rec-user').value.trim();
    if (ch) q.channelId = ch;
    if (user) q.userId = user;
    const since = msOf('rec-since');
    const until = msOf('rec-until');
    if (since !== undefined) q.sinceMs = since;
    if (until !== undefined) q.untilMs = until;
    try {
      const r = await call('admin.recordings', q);
      const list = r.recordings || [];
      $('rec-count').textContent = `${list.length} recording${list.length === 1 ? '' : 's'}, newest first`;
      const exp = $('rec-export');
      exp.hidden = !ch;
      if (ch) {
        const p = new URLSearchParams({ channel: ch, token: S.token });
        if (since !== undefined) p.set('since', String(since));
        if (until !== undefined) p.set('until', String(until));
        exp.href = `/recordings-export.ogg?${p}`;
      }
      $('admin-recordings').replaceChildren(...list.map((x) => el('li', { 'data-recording': String(x.id) },
        el('span', { class: 'row-main' }, el('b', {}, x.name || x.userId),
          ` · ${(x.channels || []).map(channelName).join(', ')}${x.emergency ? ' · Emergency' : ''}`),
        el('span', { class: 'row-sub' }, `${fmtTime(x.startMs)} · ${(x.durationMs / 1000).toFixed(1)} s · ${x.ended || 'recording…'}`),
        el('span', { class: 'row-actions' },
          el('button', { type: 'button', class: 'small-btn', 'data-action': 'play', onclick: () => playRecording(x) }, 'Play'),
          el('a', { class: 'small-btn', href: recordingUrl(x.id), download: `${x.id}.opus` }, 'Download'),
          confirmButton('Delete', `rec:${x.id}`, 'delete', () => adminDo('admin.recording_delete', { id: x.id }, () => { adminRecordings(); return `Deleted recording ${x.id}`; }))))));
    } catch (e) {
      adminMsg(`Recordings: ${errText(e)}`, 'error');
    }
  }

  // ---------- issue a link (only when this gateway signs tokens: status.links) ----------

  function renderIssueForm(links, channels) {
    $('admin-issue').hidden = !links;
    if (!links) return;
    const box = $('issue-channels');
    const ticked = new Set([...box.querySelectorAll('input:checked')].map((i) => i.value));
    const have = [...box.querySelectorAll('input')].map((i) => i.value).join('\n');
    if (have !== channels.join('\n')) {
      box.replaceChildren(box.querySelector('legend'), ...channels.map((c) => el('label', {},
        el('input', { type: 'checkbox', value: c, checked: ticked.has(c), onclick: () => tickOrder(c) }), c)));
    }
    if (!channels.length) box.append(el('span', { class: 'hint' }, 'No channel is known for this event yet.'));
    const span = (secs) => fmtDuration(secs).replace(/ 0 min$/, '');
    $('issue-ttl').placeholder = span(links.defaultTtlSecs);
    $('issue-ttl-hint').textContent = `Empty: ${span(links.defaultTtlSecs)}. At most ${span(links.maxTtlSecs)}. Examples: 30m, 8h, 2d.`;
    S.admin.joinUrls = links.joinUrls || [];
  }

  // The order channels were ticked in: the first is where the phone starts.
  function tickOrder(c) {
    const order = S.admin.tickOrder || (S.admin.tickOrder = []);
    const i = order.indexOf(c);
    if (i >= 0) order.splice(i, 1);
    if ($('issue-channels').querySelector(`input[value="${CSS.escape(c)}"]`).checked) order.push(c);
  }

  async function issueLink(ev) {
    ev.preventDefault();
    const ticked = [...$('issue-channels').querySelectorAll('input:checked')].map((i) => i.value);
    const order = (S.admin.tickOrder || []).filter((c) => ticked.includes(c));
    const channels = [...order, ...ticked.filter((c) => !order.includes(c))];
    const params = {
      userId: $('issue-user').value.trim(), name: $('issue-name').value.trim(),
      role: $('issue-role').value, channels, baseUrl: location.origin,
    };
    const ttl = $('issue-ttl').value.trim();
    if (ttl) params.ttl = ttl;
    if (!channels.length) return adminMsg('Pick at least one channel', 'error');
    try {
      const r = await call('admin.issueLink', params);
      const c = r.claims || {};
      $('link-who').textContent = `${c.name || c.sub} · ${roleWord(c.role)} · ${(c.channels || []).join(', ')}`;
      // The SVG is the gateway's own rendering of the QR modules (no text from outside in it).
      $('link-qr').innerHTML = r.qrSvg;
      $('link-url').value = r.url;
      $('link-expiry').textContent = `Valid until ${new Date(r.expiresAtMs).toLocaleString()}. Anyone with this link can talk as ${c.name || c.sub}: hand it to that person only.`;
      $('link-card').hidden = false;
      adminMsg(`Link issued for ${c.name || c.sub}`, 'info');
      adminAudit();
    } catch (e) {
      adminMsg(`Issuing the link failed: ${errText(e)}`, 'error');
    }
  }

  async function copyLink() {
    const url = $('link-url').value;
    try {
      await navigator.clipboard.writeText(url);
      adminMsg('Link copied', 'info');
    } catch (_) {
      $('link-url').select();
      adminMsg('Select and copy the link by hand (the browser refused the clipboard)', 'error');
    }
  }

  function printLink() {
    document.body.classList.add('printing');
    const done = () => { document.body.classList.remove('printing'); window.removeEventListener('afterprint', done); };
    window.addEventListener('afterprint', done);
    window.print();
    setTimeout(done, 1000);
  }

  // A button that asks "sure?" on the first tap and acts on the second (within 4 s).
  function confirmButton(label, key, action, act) {
    const b = el('button', { type: 'button', class: 'small-btn danger', 'data-action': action }, label);
    b.addEventListener('click', () => {
      const A = S.admin;
      if (A.confirm !== key) {
        A.confirm = key;
        b.textContent = `Confirm ${label.toLowerCase()}?`;
        b.dataset.confirm = 'true';
        clearTimeout(A.confirmTimer);
        A.confirmTimer = setTimeout(() => { A.confirm = null; b.textContent = label; delete b.dataset.confirm; }, 4000);
        return;
      }
      A.confirm = null;
      clearTimeout(A.confirmTimer);
      act();
    });
    return b;
  }

  function adminReason() {
    return $('admin-reason').value.trim() || undefined;
  }

  // The words a connection row is found by with the filter.
  function connWords(c) {
    return [c.name, c.userId, c.role, roleWord(c.role), c.event, c.deviceId, c.remoteAddr, ...(c.channels || [])]
      .filter(Boolean).join(' ').toLowerCase();
  }

  function renderAdminConns(list) {
    if (list) S.admin.conns = list;
    list = S.admin.conns || [];
    if (S.admin.confirm) return; // do not swap the button out from under a pending confirm
    list.sort((a, b) => (a.event + a.name).localeCompare(b.event + b.name));
    $('admin-conn-count').textContent = `(${list.length})`;
    const all = list;
    const terms = $('admin-filter').value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    list = all.filter((c) => terms.every((t) => connWords(c).includes(t)));
    $('admin-filter-count').hidden = !terms.length;
    $('admin-filter-count').textContent = `${list.length} of ${all.length} shown`;
    const perUser = new Map();
    for (const c of list) perUser.set(c.userId, (perUser.get(c.userId) || 0) + 1);
    $('admin-conns').replaceChildren(...list.map((c) => {
      const me = S.me && c.connId === S.me.connId;
      const myUser = S.me && c.userId === S.me.userId;
      const who = c.name && c.name !== c.userId ? `${c.name} (${c.userId})` : c.userId;
      const n = perUser.get(c.userId) || 1;
      const done = (r) => `Disconnected ${who} (${r.disconnected} connection${r.disconnected === 1 ? '' : 's'})`;
      // A row acts on its own connection; all of a user's connections is a separate, labelled
      // action. Never oneself: not this session, not a ban of one's own user id.
      const actions = me ? el('span', { class: 'hint' }, 'this is you') : el('span', { class: 'row-actions' },
        el('button', {
          type: 'button', class: 'small-btn', 'data-action': 'disconnect',
          title: 'Disconnect this connection only',
          onclick: () => adminDo('admin.disconnect', { connId: c.connId, reason: adminReason() }, done),
        }, 'Disconnect'),
        n > 1 && !myUser ? el('button', {
          type: 'button', class: 'small-btn', 'data-action': 'disconnect-user',
          title: `Disconnect all ${n} connections of ${who}`,
          onclick: () => adminDo('admin.disconnect', { userId: c.userId, reason: adminReason() }, done),
        }, `All ${n} of this user`) : null,
        myUser ? null : Object.assign(confirmButton('Ban', `ban:${c.userId}`, 'ban', () => adminDo('admin.ban', { userId: c.userId, reason: adminReason() },
          () => `Banned ${who}`)), { title: 'Ban: disconnect now and refuse further connects' }));
      return el('li', { 'data-user': c.userId, 'data-conn': String(c.connId) },
        el('span', { class: 'row-main' }, el('b', {}, who), el('span', { class: `role role-${String(c.role).toLowerCase()}` }, roleWord(c.role))),
        el('span', { class: 'row-chans' }, (c.channels || []).length ? `on ${c.channels.join(', ')}` : 'on no channel'),
        el('span', { class: 'row-sub' }, [c.event, c.deviceId ? `device ${c.deviceId}` : null, c.remoteAddr,
          `since ${fmtTime(c.connectedAtMs)}`].filter(Boolean).join(' · ')),
        actions);
    }));
  }

  function renderAdminBans(list) {
    $('admin-no-bans').hidden = list.length > 0;
    $('admin-bans').replaceChildren(...list.map((b) => el('li', { 'data-user': b.userId },
      el('span', { class: 'row-main' }, el('b', {}, b.userId)),
      el('span', { class: 'row-sub' }, `${b.reason} · by ${b.by} · ${fmtTime(b.atMs)}`),
      el('span', { class: 'row-actions' }, el('button', {
        type: 'button', class: 'small-btn', 'data-action': 'unban',
        onclick: () => adminDo('admin.unban', { userId: b.userId }, (r) => r.unbanned ? `Unbanned ${b.userId}` : `${b.userId} was not banned`),
      }, 'Unban')))));
  }

  async function adminDo(method, params, say) {
    for (const k of Object.keys(params)) if (params[k] === undefined) delete params[k];
    try {
      const r = await call(method, params);
      adminMsg(say(r), 'info');
    } catch (e) {
      adminMsg(`${method} failed: ${errText(e)}`, 'error');
    }
    adminRefresh();
  }

  async function adminAudit() {
    const q = {};
    const user = $('audit-user').value.trim();
    const action = $('audit-action').value;
    const limit = parseInt($('audit-limit').value, 10);
    if (user) q.userId = user;
    if (action) q.action = action;
    q.limit = Number.isFinite(limit) ? Math.max(1, Math.min(1000, limit)) : 50;
    try {
      const r = await call('admin.audit', q);
      const entries = r.entries || [];
      $('audit-count').textContent = `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, newest first`;
      $('admin-audit').replaceChildren(...entries.map((e) => {
        // The gateway's sentence (audit/sentence.rs); the raw entry stays in the tooltip.
        const raw = JSON.stringify({ actor: e.actor, role: e.role, event: e.event, target: e.target, outcome: e.outcome, details: e.details });
        return el('li', { 'data-action': e.action, 'data-outcome': e.outcome || '', title: raw },
          el('span', { class: 'row-main' }, el('span', { class: 'audit-time' }, fmtTime(e.tsMs)),
            el('span', { class: 'audit-text' }, e.text || `${e.actor} ${e.action} ${e.target}`)));
      }));
    } catch (e) {
      adminMsg(`Audit query failed: ${errText(e)}`, 'error');
    }
  }

  // ---------- recordings: history and Say again (issue 14) ----------

  async function loadHistory() {
    if (!S.recorded || !S.selected || !S.wsOpen) return;
    const ch = S.selected;
    try {
      const r = await call('recording.list', { channelId: ch, limit: 10 });
      if (ch !== S.selected) return;
      S.history = (r.recordings || []).filter((x) => x.ended);
    } catch (_) { S.history = []; }
    renderHistory();
  }

  function recordingUrl(id) {
    return `/recordings/${id}.opus?token=${encodeURIComponent(S.token)}`;
  }

  // Plays a recording on this phone only (never sent to anyone).
  function playRecording(rec) {
    stopReplay();
    unlockAudio();
    const a = new Audio(recordingUrl(rec.id));
    S.replay = a;
    S.replayId = rec.id;
    $('replay-info').textContent = `Playing ${rec.name || rec.userId}, ${fmtTime(rec.startMs)}`;
    a.addEventListener('ended', () => { if (S.replay === a) stopReplay(); });
    a.play().catch(() => { $('replay-info').textContent = 'Cannot play the recording'; });
  }

  function stopReplay() {
    if (S.replay) { try { S.replay.pause(); } catch (_) { /* gone */ } }
    S.replay = null;
    $('replay-info').textContent = '';
  }

  function sayAgain() {
    const last = S.history[0];
    if (!last) { $('replay-info').textContent = 'Nothing recorded on this channel yet'; return; }
    playRecording(last);
  }

  function renderHistory() {
    $('replay').hidden = !S.recorded || !S.selected;
    $('history').hidden = !S.recorded || !S.selected;
    const key = S.history.map((r) => r.id).join(',');
    if (key === renderHistory.key) return;
    renderHistory.key = key;
    $('history-list').replaceChildren(...S.history.map((r) => el('li', { 'data-recording': String(r.id) },
      el('span', {}, `${r.emergency ? 'Emergency · ' : ''}${r.name || r.userId} · ${fmtTime(r.startMs)} · ${(r.durationMs / 1000).toFixed(1)} s`),
      el('button', { type: 'button', class: 'small-btn', onclick: () => playRecording(r) }, 'Play'))));
  }

  // ---------- rendering ----------

  // Constant icons (no emoji: not every phone or kiosk has an emoji font).
  const SPEAKER = '<path d="M3 9h4l5-4v14l-5-4H3z" fill="currentColor"/>';
  const SPEAKER_ON = `<svg viewBox="0 0 24 24" width="26" height="26" aria-hidden="true">${SPEAKER}` +
    '<path d="M15.5 8.5a5 5 0 0 1 0 7M18 6a8.5 8.5 0 0 1 0 12" stroke="currentColor" stroke-width="2" fill="none" stroke-linecap="round"/></svg><span>On</span>';
  const SPEAKER_OFF = `<svg viewBox="0 0 24 24" width="26" height="26" aria-hidden="true">${SPEAKER}` +
    '<path d="M16 9l5 6M21 9l-5 6" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg><span>Off</span>';

  function talkerName(t) {
    if (!t) return '';
    if (S.me && t.connId === S.me.connId) return 'You';
    return t.name || t.userId || 'someone';
  }

  function render() {
    applyMutes();
    renderHistory();
    renderChannels();
    renderFloor();
    renderDispatch();
    renderBroadcastBanner();
  }

  function renderChannels() {
    const ul = $('channel-list');
    const ids = [...S.channels.keys()];
    $('no-channels').hidden = ids.length > 0 || !S.me;
    // Rebuild only when the set changes; update rows in place otherwise (keeps focus/taps).
    if (ul.dataset.ids !== ids.join('\n')) {
      ul.textContent = '';
      for (const id of ids) {
        const li = document.createElement('li');
        li.className = 'chan';
        li.dataset.channel = id;
        const sel = document.createElement('button');
        sel.type = 'button';
        sel.className = 'chan-select';
        const name = document.createElement('span');
        name.className = 'chan-name';
        name.textContent = channelName(id);
        const info = document.createElement('span');
        info.className = 'chan-info';
        sel.append(name, info);
        sel.addEventListener('click', () => selectChannel(id));
        const lis = document.createElement('button');
        lis.type = 'button';
        lis.className = 'chan-listen';
        lis.addEventListener('click', () => toggleListen(id));
        li.append(sel, lis);
        ul.appendChild(li);
      }
      ul.dataset.ids = ids.join('\n');
    }
    for (const li of ul.children) {
      const c = S.channels.get(li.dataset.channel);
      if (!c) continue;
      const selected = c.id === S.selected;
      li.setAttribute('aria-current', selected ? 'true' : 'false');
      li.dataset.joined = c.joined ? 'true' : 'false';
      li.dataset.talking = c.talker ? 'true' : 'false';
      li.dataset.pending = c.pendingRemoval ? 'true' : 'false';
      li.dataset.link = c.link || '';
      const listening = selected || (c.joined ? !S.muted.has(c.id) : S.wanted.has(c.id));
      li.dataset.muted = c.joined && !listening ? 'true' : 'false';
      let info;
      if (c.talker) info = `${talkerName(c.talker)} ${talkerName(c.talker) === 'You' ? 'are' : 'is'} talking${listening ? '' : ' (muted here)'}`;
      else if (c.pendingRemoval) info = 'Access ends when you release';
      else if (c.joined) info = selected ? 'Talk channel · listening' : listening ? 'Listening' : 'Muted here';
      else if (S.wanted.has(c.id)) info = S.wsOpen ? 'Joining…' : 'Waiting for connection';
      else info = 'Not joined (channel limit) · tap the speaker to join';
      if (c.link === 'site only') info += ' · Site only';
      li.querySelector('.chan-info').textContent = info;
      const btn = li.querySelector('.chan-listen');
      if (btn.dataset.on !== String(listening)) {
        btn.innerHTML = listening ? SPEAKER_ON : SPEAKER_OFF;
        btn.dataset.on = String(listening);
      }
      btn.setAttribute('aria-pressed', listening ? 'true' : 'false');
      btn.setAttribute('aria-label', listening ? `Mute ${channelName(c.id)} on this device` : `Hear ${channelName(c.id)}`);
      btn.title = selected ? 'You always hear the channel you talk on' : btn.getAttribute('aria-label');
      btn.disabled = selected;
    }
  }

  function floorView() {
    const f = S.floor;
    const c = S.selected ? S.channels.get(S.selected) : null;
    if (S.bcast.state === 'live') return ['talking', 'Emergency broadcast: every channel', 'Release Emergency to stop'];
    if (S.service.problem) return ['offline', S.wsOpen ? 'No audio' : 'Offline', 'Talking is not possible now'];
    if (!S.selected) return ['idle', 'No channel selected', ''];
    if (f.channel === S.selected || f.state === 'denied') {
      if (f.state === 'talking') return ['talking', f.priority ? 'You are talking (priority)' : 'You are talking', 'Release to stop'];
      if (f.state === 'requesting') return ['requesting', 'Requesting the floor…', 'Keep holding'];
      if (f.state === 'denied') {
        const t = f.talker || (c && c.talker);
        return ['denied', t ? `Denied: taken by ${talkerName(t)}` : `Denied: ${f.message}`, 'Release, wait, then try again'];
      }
      // The server's reason, as it says it ("Dispatch NAME has priority").
      if (f.state === 'revoked') return ['revoked', f.message, 'You were cut off · press again to talk'];
    }
    if (c && c.talker) return ['taken', `Taken by ${talkerName(c.talker)}`, 'Wait until they finish'];
    if (!S.wsOpen) return ['offline', 'Offline', 'Reconnecting…'];
    return ['idle', 'Channel free', touchOnly() ? 'Press and hold' : `or hold the ${keyLabel(S.prefs.key)}`];
  }

  function renderFloor() {
    const [state, text, sub] = floorView();
    const fs = $('floor-state');
    fs.dataset.state = state;
    if (fs.textContent !== text) fs.textContent = text;
    const sc = S.selected ? S.channels.get(S.selected) : null;
    // On a linked channel whose upstream is unreachable, only this site hears the talk.
    const siteOnly = sc && sc.link === 'site only' ? ' · site only' : '';
    $('floor-channel').textContent = S.selected ? `Talk channel: ${channelName(S.selected)}${siteOnly}` : '';
    const ptt = $('ptt');
    ptt.dataset.state = state;
    ptt.querySelector('.ptt-label').textContent = S.bcast.state === 'live' ? 'Broadcasting…'
      : state === 'talking' ? 'Talking…' : state === 'requesting' ? 'Wait…' : 'Hold to talk';
    ptt.querySelector('.ptt-sub').textContent = sub;
    ptt.disabled = (!S.micTrack && !!S.micError) || S.bcast.state === 'live' || !!S.service.problem;
    for (const b of [$('priority-btn'), $('emergency-btn')]) b.disabled = !!S.service.problem && S.bcast.state !== 'live';
    $('talk').dataset.talking = state === 'talking' ? 'true' : 'false';
    const tot = $('tot');
    if (state === 'talking' && S.floor.expiresAt) {
      const left = Math.max(0, Math.ceil((S.floor.expiresAt - performance.now()) / 1000));
      tot.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')} left`;
      tot.hidden = false;
    } else {
      tot.hidden = true;
    }
  }

  function selectChannel(id) {
    if (S.pttDown) return;
    unlockAudio();
    S.selected = id;
    S.history = [];
    loadHistory();
    if (!S.wanted.has(id)) { S.wanted.add(id); if (S.wsOpen) join(id).catch(() => {}); }
    if (S.floor.state === 'revoked' || S.floor.state === 'denied') S.floor = { state: 'idle', channel: id };
    saveWanted();
    render();
  }

  // The speaker switch: mutes or unmutes a joined channel on this device only (its activity
  // stays on screen); a channel not joined (beyond the per-user limit) is joined.
  function toggleListen(id) {
    unlockAudio();
    if (id === S.selected) return;
    const c = S.channels.get(id);
    if (c && !c.joined && !S.wanted.has(id)) {
      S.wanted.add(id);
      S.muted.delete(id);
      if (S.wsOpen) join(id).catch(() => {});
    } else if (S.muted.has(id)) {
      S.muted.delete(id);
    } else {
      S.muted.add(id);
    }
    saveWanted();
    render();
  }

  // Mutes the audio element of each muted channel's slot (never the talk channel's).
  function applyMutes() {
    const mutedSlots = new Set();
    const heardSlots = new Set();
    for (const c of S.channels.values()) {
      if (c.slot === null || c.slot === undefined) continue;
      if (S.muted.has(c.id) && c.id !== S.selected) mutedSlots.add(c.slot);
      else heardSlots.add(c.slot);
    }
    S.sinks.forEach((a, i) => {
      a.muted = mutedSlots.has(i) && !heardSlots.has(i);
      const g = S.meterGains && S.meterGains[i];
      if (g) g.gain.value = a.muted ? 0 : 1;
    });
  }

  const channelName = (id) => {
    const c = S.channels.get(id);
    return (c && c.name) || id;
  };

  // ---------- input wiring ----------

  // Press-and-hold on touch, mouse or pen: `down` on press, `up` on release or when the
  // pointer is lost (a long press never selects text, opens a menu or scrolls).
  function holdButton(btn, down, up) {
    btn.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0 || btn.disabled) return;
      ev.preventDefault();
      try { btn.setPointerCapture(ev.pointerId); } catch (_) { /* not capturable */ }
      down();
    });
    for (const t of ['pointerup', 'pointercancel', 'lostpointercapture']) btn.addEventListener(t, up);
    btn.addEventListener('contextmenu', (ev) => ev.preventDefault());
    btn.addEventListener('selectstart', (ev) => ev.preventDefault());
    btn.addEventListener('touchstart', (ev) => ev.preventDefault(), { passive: false });
    btn.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') ev.preventDefault(); });
  }

  function wireUi() {
    $('join-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const tok = tokenFromText($('token-input').value);
      if (!tok) { $('join-error').textContent = 'That does not look like an access link or token.'; return; }
      try { localStorage.setItem(TOKEN_KEY, tok); } catch (_) { /* memory only */ }
      S.token = tok;
      showStart();
    });
    $('start-btn').addEventListener('click', start);
    loadPrefs();
    $('pref-incoming').addEventListener('change', savePrefs);
    $('pref-eom').addEventListener('change', savePrefs);
    $('start-forget').addEventListener('click', forget);
    $('stopped-forget').addEventListener('click', forget);
    $('forget-btn').addEventListener('click', forget);
    $('stopped-retry').addEventListener('click', () => location.reload());

    holdButton($('ptt'), () => pttDown(), pttUp);

    // DISPATCH: priority talk is held like PTT; Emergency is held 2 s to broadcast.
    holdButton($('priority-btn'), () => pttDown(true), pttUp);
    holdButton($('emergency-btn'), emergencyDown, () => emergencyUp());

    // ADMIN panel.
    const sel = $('audit-action');
    for (const a of AUDIT_ACTIONS) sel.append(el('option', { value: a }, a));
    $('admin-refresh').addEventListener('click', () => adminRefresh());
    $('admin-filter').addEventListener('input', () => renderAdminConns());
    $('issue-form').addEventListener('submit', issueLink);
    $('rec-form').addEventListener('submit', adminRecordings);
    $('link-copy').addEventListener('click', copyLink);
    $('link-print').addEventListener('click', printLink);
    $('audit-form').addEventListener('submit', (ev) => { ev.preventDefault(); adminAudit(); });
    window.addEventListener('hashchange', route);

    const typing = (el) => el && (el.tagName === 'TEXTAREA' || el.tagName === 'INPUT' || el.tagName === 'SELECT');
    window.addEventListener('keydown', (ev) => {
      if (S.settingKey) {
        if (ev.code === 'Escape' || ev.code === 'Tab' || !/^[A-Za-z0-9]{1,24}$/.test(ev.code)) return;
        ev.preventDefault();
        S.settingKey = false;
        S.prefs.key = ev.code;
        $('pref-key-set').textContent = 'Change';
        savePrefs();
        return render();
      }
      if (ev.code !== S.prefs.key || $('talk').hidden || typing(ev.target)) return;
      ev.preventDefault();
      if (!ev.repeat) pttDown();
    });
    window.addEventListener('keyup', (ev) => {
      if (ev.code !== S.prefs.key || $('talk').hidden || typing(ev.target)) return;
      ev.preventDefault();
      pttUp();
    });
    $('pref-key-set').addEventListener('click', () => {
      S.settingKey = true;
      $('pref-key-set').textContent = 'Press a key…';
    });
    // Never keep transmitting when the page loses focus or is hidden, except a talk started
    // by a headset or media key (the screen may lock while it is held; the time-out timer
    // ends it).
    window.addEventListener('blur', () => { if (!S.mediaKeyTalk) pttUp(); emergencyUp(); });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') {
        keepAwake();
        if (S.started && !S.stopped && !S.ws) connect();
      } else {
        if (!S.mediaKeyTalk) pttUp();
        emergencyUp();
      }
    });
    window.addEventListener('online', () => { if (S.started && !S.stopped && !S.ws) retryNow(); });
    $('retry-now').addEventListener('click', retryNow);
    $('say-again').addEventListener('click', sayAgain);
    $('history').addEventListener('toggle', () => { if ($('history').open) loadHistory(); });
    document.addEventListener('pointerdown', unlockAudio, { passive: true });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
