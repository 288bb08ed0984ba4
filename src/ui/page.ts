import type { PageState } from './cluster-view.js'

/** Text made safe inside HTML elements and quoted attributes. */
export function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

function bytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

/**
 * The page's first HTML: this node's name and peer ID and the images' names are in it before any
 * script runs; app.js then keeps every part live from the event stream.
 */
export function renderPage (state: PageState): string {
  const self = state.self
  const title = `imgswarm · ${self.name}`
  const imageRows = state.images.map(i => `<tr><td class="name">${escapeHtml(i.name || '(no name)')}</td><td><code>${escapeHtml(i.ref.slice(7, 19))}</code></td><td><span class="state ${escapeHtml(i.state)}">${escapeHtml(i.state)}</span></td><td class="num">${bytes(i.size)}</td><td>${escapeHtml(i.holders.join(', '))}</td><td>${i.pinned ? 'pinned' : ''}</td><td>${escapeHtml(i.leasedBy.join(', '))}</td><td></td></tr>`).join('\n')
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="/ui/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/app.css">
<script src="/ui/app.js" defer></script>
</head>
<body>
<header>
  <h1>imgswarm <span id="node-name">${escapeHtml(self.name)}</span></h1>
  <div class="sub">peer <code id="peer-id">${escapeHtml(self.peerId)}</code> · version <span id="version">${escapeHtml(self.version)}</span> · <span id="live" class="live off">connecting…</span></div>
</header>
<main>
<section>
  <h2>Nodes</h2>
  <table id="nodes"><thead><tr><th>name</th><th>peer ID</th><th>version</th><th>uptime</th><th>store used / cap</th><th>images</th><th>peers</th><th>receiving</th><th>serving</th></tr></thead>
  <tbody><tr><td class="name">${escapeHtml(self.name)} (this node)</td><td><code>${escapeHtml(self.peerId)}</code></td><td>${escapeHtml(self.version)}</td><td></td><td>${bytes(self.store.used)}${self.store.cap != null ? ` / ${bytes(self.store.cap)}` : ''}</td><td class="num">${self.store.images}</td><td class="num">${self.peers}</td><td></td><td></td></tr></tbody></table>
</section>
<section class="split">
  <div>
    <h2>Throughput <small>(last 2 minutes, this node)</small></h2>
    <div id="chart" class="chart"></div>
  </div>
  <div>
    <h2>Fetches</h2>
    <div id="jobs"><p class="empty">none yet</p></div>
    <h2>Preheats</h2>
    <div id="preheats"><p class="empty">none yet</p></div>
  </div>
</section>
<section>
  <h2>Images <small id="image-count">${state.images.length}</small></h2>
  <table id="images"><thead><tr><th>name</th><th>digest</th><th>state</th><th>size</th><th>held by</th><th>pin</th><th>leases</th><th>bytes by source</th></tr></thead>
  <tbody>
${imageRows}
  </tbody></table>
</section>
</main>
<footer>read-only view · updated live from <code>/ui/events</code></footer>
</body>
</html>
`
}
