// radiogate service worker (issue 12): the client installs as an app and opens its shell
// without the network. The shell (page, script, style, icons) is served from the network
// when the gateway answers (always the gateway's current version) and from the cache when it
// does not; nothing else is cached (the WebSocket and /ws probes never pass through here).
'use strict';
const CACHE = 'radiogate-shell-v1';
const SHELL = ['/', '/app.js', '/style.css', '/icon.svg', '/icon-192.png', '/icon-512.png',
  '/apple-touch-icon.png', '/manifest.webmanifest'];

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (ev) => {
  const url = new URL(ev.request.url);
  if (ev.request.method !== 'GET' || url.origin !== self.location.origin) return;
  // A join link (/?token=...) is the shell too.
  const key = url.pathname === '/' ? '/' : url.pathname;
  if (!SHELL.includes(key)) return;
  ev.respondWith(fetch(ev.request).then((resp) => {
    if (resp.ok) {
      const copy = resp.clone();
      caches.open(CACHE).then((c) => c.put(key, copy));
    }
    return resp;
  }).catch(() => caches.match(key).then((hit) => hit || Response.error())));
});
