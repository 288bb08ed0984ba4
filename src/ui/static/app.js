/* The cluster page: renders the state that /ui/events sends, with no library. Read-only. */
/* global document, EventSource, window */
'use strict'

const SVG = 'http://www.w3.org/2000/svg'

function bytes (n) {
  if (n == null) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

function rate (n) {
  return n > 0 ? `${bytes(n)}/s` : '–'
}

function duration (s) {
  if (s == null) return '–'
  s = Math.round(s)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m`
  return `${Math.floor(s / 86400)}d ${Math.floor(s % 86400 / 3600)}h`
}

function el (tag, attrs, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v
    else if (k === 'style') Object.assign(e.style, v) // CSSOM: the page's CSP allows no style attributes
    else e.setAttribute(k, v)
  }
  for (const c of children) {
    if (c == null) continue
    e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c)
  }
  return e
}

function stateBadge (state) {
  return el('span', { class: `state ${state}` }, state)
}

function sources (b) {
  if (b == null) return el('span', { class: 'detail' }, '–')
  return el('span', { class: 'sources' },
    el('span', { class: 'peer' }, `peers ${bytes(b.peer)}`), ' · ',
    el('span', { class: 'origin' }, `origin ${bytes(b.origin)}`), ' · ',
    el('span', {}, `local ${bytes(b.local)}`))
}

function replaceRows (table, rows) {
  const body = table.tBodies[0]
  body.replaceChildren(...rows)
}

function renderNodes (state) {
  const rows = [state.self, ...state.nodes].map((n, i) => {
    if (n.error != null) {
      return el('tr', {}, el('td', { class: 'name' }, n.name || '?'), el('td', {}, el('code', {}, n.peerId)),
        el('td', { colspan: '7' }, stateBadge('unreachable'), ' ', el('span', { class: 'detail' }, n.error)))
    }
    return el('tr', {},
      el('td', { class: 'name' }, n.name, i === 0 ? ' (this node)' : ''),
      el('td', {}, el('code', {}, n.peerId)),
      el('td', {}, n.version),
      el('td', {}, duration(n.uptimeSeconds)),
      el('td', {}, `${bytes(n.store.used)}${n.store.cap != null ? ` / ${bytes(n.store.cap)}` : ' (no cap)'}`),
      el('td', { class: 'num' }, n.store.images),
      el('td', { class: 'num' }, n.peers),
      el('td', {}, `${rate(n.rate.peer + n.rate.origin)}${n.jobs.length > 0 ? ` (${n.jobs.length} fetching)` : ''}`),
      el('td', {}, rate(n.rate.served)))
  })
  replaceRows(document.getElementById('nodes'), rows)
}

function progressBar (size, b) {
  const bar = el('div', { class: 'bar' })
  if (size > 0) {
    for (const k of ['local', 'peer', 'origin']) {
      const w = Math.min(100, b[k] / size * 100)
      if (w > 0) bar.append(el('span', { class: k, style: { width: `${w.toFixed(2)}%` } }))
    }
  }
  return bar
}

function renderJob (j, where) {
  const total = j.bytes.local + j.bytes.peer + j.bytes.origin
  const pct = j.percent != null ? `${j.percent.toFixed(1)}%` : ''
  const detail = j.finished != null
    ? `${j.state} in ${duration(j.seconds)}${j.hit ? ' (already stored)' : ''}${j.error ? `: ${j.error}` : ''}`
    : `${bytes(total)} of ${bytes(j.size)} · peers ${rate(j.rate.peer)} · origin ${rate(j.rate.origin)} · ETA ${j.etaSeconds != null ? duration(j.etaSeconds) : '–'}`
  return el('div', { class: 'job' },
    el('div', { class: 'title' }, el('span', {}, el('strong', {}, j.name || (j.image || j.ref).slice(0, 19)), where ? ` on ${where}` : ''), el('span', {}, stateBadge(j.state), ' ', pct)),
    progressBar(j.size, j.bytes),
    el('div', { class: 'detail' }, detail, ' · ', sources(j.bytes)))
}

function renderJobs (state) {
  const box = document.getElementById('jobs')
  const items = state.jobs.map(j => renderJob(j, null))
  // Other nodes' fetches in flight, from their summaries.
  for (const n of state.nodes) {
    if (n.jobs == null) continue
    for (const j of n.jobs) items.push(renderJob({ ...j, seconds: 0 }, n.name))
  }
  box.replaceChildren(...(items.length > 0 ? items : [el('p', { class: 'empty' }, 'none yet')]))
}

function renderPreheats (state) {
  const box = document.getElementById('preheats')
  const items = state.preheats.map(p => el('div', { class: 'job' },
    el('div', { class: 'title' }, el('span', {}, el('strong', {}, `preheat ${p.id}`), ` · ${p.refs.length} image(s)`), stateBadge(p.done ? (p.ok ? 'available' : 'failed') : 'running')),
    ...p.nodes.map(n => {
      const size = n.images.reduce((s, i) => s + (i.size || 0), 0)
      const got = { local: 0, peer: 0, origin: 0 }
      for (const i of n.images) for (const k of Object.keys(got)) got[k] += i.bytes[k]
      return el('div', {}, el('div', { class: 'detail' }, `${n.name || n.peerId.slice(-8)}: ${n.state}${n.reason ? ` (${n.reason})` : ''}`), progressBar(size, got))
    }),
    ...p.problems.map(t => el('div', { class: 'detail' }, t))))
  box.replaceChildren(...(items.length > 0 ? items : [el('p', { class: 'empty' }, 'none yet')]))
}

function renderImages (state) {
  document.getElementById('image-count').textContent = `${state.images.length}${state.imagesOmitted > 0 ? ` (+${state.imagesOmitted} not shown)` : ''}`
  replaceRows(document.getElementById('images'), state.images.map(i => el('tr', {},
    el('td', { class: 'name' }, i.name || '(no name)'),
    el('td', {}, el('code', { title: i.ref }, i.ref.slice(7, 19))),
    el('td', {}, stateBadge(i.state), i.percent != null && i.state === 'fetching' ? ` ${i.percent.toFixed(1)}%` : '', i.reason ? el('div', { class: 'detail' }, i.reason) : null),
    el('td', { class: 'num' }, bytes(i.size)),
    el('td', {}, i.holders.join(', ') || '–'),
    el('td', {}, i.pinned ? 'pinned' : ''),
    el('td', {}, i.leasedBy.join(', ')),
    el('td', {}, sources(i.bytes)))))
}

function renderChart (points) {
  const box = document.getElementById('chart')
  const w = 600
  const h = 170
  const pad = { l: 58, r: 8, t: 8, b: 20 }
  const max = Math.max(1024, ...points.map(p => Math.max(p.peer, p.origin, p.served)))
  const x = i => pad.l + (w - pad.l - pad.r) * i / Math.max(1, points.length - 1)
  const y = v => h - pad.b - (h - pad.t - pad.b) * v / max
  const svg = document.createElementNS(SVG, 'svg')
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`)
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', 'bytes a second received from peers and the origin, and served to peers')
  const line = (x1, y1, x2, y2, cls) => {
    const l = document.createElementNS(SVG, 'line')
    for (const [k, v] of Object.entries({ x1, y1, x2, y2 })) l.setAttribute(k, v)
    l.setAttribute('class', cls)
    svg.append(l)
  }
  const text = (tx, ty, s, anchor) => {
    const t = document.createElementNS(SVG, 'text')
    t.setAttribute('x', tx)
    t.setAttribute('y', ty)
    t.setAttribute('text-anchor', anchor)
    t.textContent = s
    svg.append(t)
  }
  for (const f of [0, 0.5, 1]) {
    line(pad.l, y(max * f), w - pad.r, y(max * f), 'axis')
    text(pad.l - 4, y(max * f) + 3, `${bytes(max * f)}/s`, 'end')
  }
  text(pad.l, h - 4, '-2 min', 'start')
  text(w - pad.r, h - 4, 'now', 'end')
  for (const [key, colour] of [['origin', '#e8833a'], ['peer', '#2a7de1'], ['served', '#3aa76d']]) {
    const pl = document.createElementNS(SVG, 'polyline')
    pl.setAttribute('fill', 'none')
    pl.setAttribute('stroke', colour)
    pl.setAttribute('stroke-width', '2')
    pl.setAttribute('points', points.map((p, i) => `${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' '))
    svg.append(pl)
  }
  const legend = el('div', { class: 'legend' },
    el('span', { style: { background: '#2a7de1' } }), 'from peers',
    el('span', { style: { background: '#e8833a' } }), 'from origin',
    el('span', { style: { background: '#3aa76d' } }), 'served to peers')
  box.replaceChildren(svg, legend)
}

function render (state) {
  document.getElementById('node-name').textContent = state.self.name
  document.getElementById('peer-id').textContent = state.self.peerId
  document.getElementById('version').textContent = state.self.version
  document.title = `imgswarm · ${state.self.name}`
  renderNodes(state)
  renderJobs(state)
  renderPreheats(state)
  renderImages(state)
  renderChart(state.throughput)
  document.body.dataset.updated = state.time
}

function connect () {
  const live = document.getElementById('live')
  const events = new EventSource('/ui/events')
  events.addEventListener('open', () => { live.textContent = 'live'; live.className = 'live on' })
  events.addEventListener('error', () => { live.textContent = 'reconnecting…'; live.className = 'live off' })
  events.addEventListener('state', e => { render(JSON.parse(e.data)) })
  events.addEventListener('image', e => {
    const ev = JSON.parse(e.data)
    live.textContent = `live · ${ev.name || ev.ref.slice(7, 19)} ${ev.kind}`
  })
  window.addEventListener('beforeunload', () => { events.close() })
}

connect()
