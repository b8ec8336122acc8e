// understudy dashboard: shows an instance's status and records, live from
// /dashboard/events (Server-Sent Events), and sends operator commands to
// POST /command/VERB with the instance's API token.
//
// Plain JavaScript, no framework. Lists are rendered by key: a row that stays
// is updated in place, so a button does not move or vanish under the pointer
// when a fresh status arrives. Nothing from the instance is ever parsed as
// HTML: text goes in with textContent.
'use strict';

(function () {
  const TOKEN_KEY = 'understudy.token';
  const KEEP_RECORDS = 200;
  const STALE_AFTER_MS = 7000;
  // Members are listed worst first.
  const STATE_ORDER = ['broken', 'lost', 'suspect', 'closed', 'unknown', 'alive'];

  const page = {
    status: null,        // the last status
    statusAt: 0,         // when it came (browser clock)
    records: [],         // oldest first
    token: '',
    events: null,        // the EventSource of the status and records
    skewMs: 0,           // the instance's clock minus the browser's
  };

  // ---------------------------------------------------------------- helpers

  function $(selector, root) { return (root || document).querySelector(selector); }

  // el('li', {class: 'x', data: {member: 'main'}}, 'text', childNode, …)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === 'data') {
        Object.assign(node.dataset, value);
      } else if (name === 'class') {
        node.className = value;
      } else if (value !== false && value !== undefined && value !== null) {
        node.setAttribute(name, value === true ? '' : value);
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function setText(node, text) {
    text = String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  function setData(node, name, value) {
    value = String(value);
    if (node.dataset[name] !== value) node.dataset[name] = value;
  }

  function show(node, visible) {
    if (node.hidden === visible) node.hidden = !visible;
  }

  // A Go zero time (0001-01-01…) or nothing: no time.
  function parseTime(value) {
    if (!value) return null;
    const t = Date.parse(value);
    return Number.isNaN(t) || t < 0 ? null : t;
  }

  function serverNow() { return Date.now() + page.skewMs; }

  function pad(n, width) { return String(n).padStart(width || 2, '0'); }

  function clockTime(value, withMillis) {
    const t = parseTime(value);
    if (t === null) return '—';
    const d = new Date(t);
    const hms = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    return withMillis ? hms + '.' + pad(d.getMilliseconds(), 3) : hms;
  }

  // 75 → "1m 15s"
  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    if (h > 0) return h + 'h ' + pad(m) + 'm';
    if (m > 0) return m + 'm ' + pad(s) + 's';
    return s + 's';
  }

  function ago(value) {
    const t = parseTime(value);
    if (t === null) return '';
    return duration((serverNow() - t) / 1000) + ' ago';
  }

  function bytes(n) {
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    n = Number(n) || 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }

  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

  function words(type) { return String(type || '').replace(/_/g, ' '); }

  // The elements whose text counts down to data-until, or up from data-since.
  function countdown(until, expiredText) {
    return el('span', { class: 'countdown', data: { until: until || '', expired: expiredText || 'now' } });
  }

  function since(value) {
    return el('span', { class: 'ago', data: { since: value || '' } });
  }

  // -------------------------------------------------------- keyed rendering

  // sync makes container's children show items, in order: the child of an
  // item's key is reused (make builds a missing one), update fills it in.
  function sync(container, items, key, make, update) {
    const old = new Map();
    for (const child of Array.from(container.children)) old.set(child.dataset.key, child);
    let previous = null;
    for (const item of items) {
      const k = String(key(item));
      let node = old.get(k);
      if (node) {
        old.delete(k);
      } else {
        node = make(item);
        node.dataset.key = k;
      }
      update(node, item);
      const wanted = previous ? previous.nextElementSibling : container.firstElementChild;
      if (node !== wanted) container.insertBefore(node, wanted);
      previous = node;
    }
    for (const node of old.values()) node.remove();
    showEmpty(container.id, items.length === 0);
  }

  function showEmpty(id, empty) {
    const note = $('[data-empty-for="' + id + '"]');
    if (note) show(note, empty);
  }

  // ------------------------------------------------------------ the status

  function members() { return (page.status && page.status.members) || []; }
  function takeover() { return (page.status && page.status.takeover) || null; }
  function drills() { return (page.status && page.status.drills) || []; }

  function coverageOf(id) {
    const t = takeover();
    return t ? (t.coverage || []).find((c) => c.member === id) : undefined;
  }

  function drillOf(m) {
    if (m.drill) return m.drill;
    const d = drills().find((x) => x.member === m.id);
    return d ? d.fault + (d.dry_run ? ' (dry run)' : '') : '';
  }

  // The instance's clock, from a countdown it gave with its end.
  function learnSkew(until, remainingSeconds) {
    const end = parseTime(until);
    if (end === null || typeof remainingSeconds !== 'number' || remainingSeconds <= 0) return;
    page.skewMs = end - remainingSeconds * 1000 - Date.now();
  }

  function onStatus(st) {
    page.status = st;
    page.statusAt = Date.now();
    const t = st.takeover;
    for (const g of (t && t.grace) || []) learnSkew(g.until, g.remaining_s);
    for (const d of st.drills || []) learnSkew(d.until, d.remaining_s);
    show($('#unavailable'), false);
    render();
  }

  function render() {
    renderHeader();
    renderDrills();
    renderAlarms();
    renderMembers();
    renderBroken();
    renderCoverage();
    renderGrace();
    renderProposals();
    renderQueue();
    renderCopies();
    renderPools();
    renderActionForms();
    tick();
  }

  function renderHeader() {
    const st = page.status;
    setText($('#site'), st.site || '');
    document.title = 'understudy ' + (st.site || '');
    let seen = 'seen from ' + st.self + (st.coordinator ? ', the coordinator' : '');
    const ci = st.coordinator_info;
    if (!st.coordinator) {
      const who = ci && ci.member ? 'the coordinator is ' + ci.member + (ci.term ? ', elected in term ' + ci.term : '') + ': ' : '';
      seen += ' (' + who + 'coverage, queue and proposals show on the coordinator\'s page; commands are passed to it)';
    }
    const el = st.election;
    if (el) seen += '; election: ' + (el.leader ? el.leader + ' leads, term ' + el.term : 'NO LEADER — ' + el.problem) + ', this instance ' + el.role;
    setText($('#seen-from'), seen);
    const mode = takeover() ? takeover().mode : '';
    setText($('#mode'), mode || '—');
    setData($('#mode-box'), 'mode', mode || '');
    for (const button of document.querySelectorAll('#mode-box [data-action="mode"]')) {
      button.disabled = !mode || button.dataset.mode === mode;
    }
  }

  function renderDrills() {
    const running = drills();
    show($('#drill-banner'), running.length > 0);
    document.body.classList.toggle('drilling', running.length > 0);
    // Rebuilt only when the drills change: the countdowns tick in place.
    const text = $('#drill-text');
    const signature = JSON.stringify(running.map((d) => [d.member, d.fault, d.dry_run, d.until, d.by]));
    if (text.dataset.signature === signature) return;
    text.dataset.signature = signature;
    const parts = running.map((d) => el('span', { class: 'drill', data: { drill: d.member } },
      d.member + ' held ' + d.fault + (d.dry_run ? ' (dry run)' : '') + (d.by ? ', by ' + d.by : '') + ', reverts in ',
      countdown(d.until, 'a moment'), ' ',
      el('button', { type: 'button', class: 'needs-token', data: { action: 'drill_end', member: d.member } }, 'End drill')));
    text.replaceChildren(...parts.flatMap((p, i) => (i ? ['; ', p] : [p])));
  }

  // Raised alarms (the coordinator's): a red list at the top until each ends.
  function renderAlarms() {
    const list = (page.status && page.status.alarms) || [];
    show($('#alarms-banner'), list.length > 0);
    sync($('#alarms'), list, (a) => a.key,
      (a) => {
        const li = el('li', { data: { alarm: a.kind, member: a.member || '' } },
          el('span', { class: 'severity' }), ' ', el('span', { class: 'message' }), ' ', el('span', { class: 'detail' }));
        const f = a.fields || {};
        if (a.kind === 'routing_fight' && f.driver && f.output) {
          li.append(' ', el('button', { type: 'button', class: 'needs-token', data: { action: 'reassert', driver: f.driver, output: String(f.output) } }, 'Put back'));
        }
        return li;
      },
      (li, a) => {
        setData(li, 'severity', a.severity);
        setText($('.severity', li), (a.severity || 'alarm').toUpperCase() + ' ' + words(a.kind) + (a.member ? ' of ' + a.member : '') + ':');
        setText($('.message', li), a.message);
        setText($('.detail', li), '(since ' + clockTime(a.since) + (a.count > 1 ? ', ' + a.count + ' times' : '') + ')');
      });
  }

  function renderMembers() {
    const list = members().slice().sort((a, b) =>
      STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state) || a.id.localeCompare(b.id));
    sync($('#members tbody'), list, (m) => m.id, makeMemberRow, updateMemberRow);
    const counts = {};
    for (const m of list) counts[m.state] = (counts[m.state] || 0) + 1;
    setText($('#member-counts'), STATE_ORDER.filter((s) => counts[s]).map((s) => counts[s] + ' ' + s).join(' · '));
  }

  function makeMemberRow(m) {
    return el('tr', { data: { member: m.id } },
      el('td', { class: 'id' }, el('span', { class: 'name' }, m.id), ' ', el('span', { class: 'tags' })),
      el('td', {}, el('span', { class: 'state badge' })),
      el('td', { class: 'since' }, el('span', { class: 'at' }), ' ', since('')),
      el('td', { class: 'covered' }),
      el('td', { class: 'reason' }),
      el('td', { class: 'actions needs-token' },
        el('button', { type: 'button', data: { action: 'takeover', member: m.id } }, 'Take over'),
        el('button', { type: 'button', data: { action: 'failback', member: m.id } }, 'Fail back')));
  }

  function updateMemberRow(row, m) {
    const c = coverageOf(m.id);
    const drill = drillOf(m);
    setData(row, 'state', m.state);
    setData(row, 'coveredBy', c ? c.standby : '');
    setData(row, 'phase', c ? c.phase : '');
    setData(row, 'drill', drill);
    const state = $('.state', row);
    setText(state, m.state);
    setData(state, 'state', m.state);
    const tags = [];
    if (m.standby) tags.push('standby');
    if (m.pool) tags.push('pool ' + m.pool);
    if ((m.roles || []).length) tags.push(m.roles.join(', '));
    if (drill) tags.push('DRILL: ' + drill);
    setText($('.tags', row), tags.join(' · '));
    setText($('.at', row), clockTime(m.since));
    setData($('.ago', row), 'since', m.since || '');
    setText($('.covered', row), c ? c.standby + ' (' + c.phase + ')' : '');
    setText($('.reason', row), m.reason || '');

    const take = $('[data-action="takeover"]', row);
    show(take, !m.standby && !c);
    const back = $('[data-action="failback"]', row);
    show(back, !!c);
    // Back (alive, or suspect: late heartbeats; the failback waits for it),
    // or a copy back that waits to be tried again.
    const here = m.state === 'alive' || m.state === 'suspect';
    const ready = c && ((c.phase === 'covering' && here) || (c.phase === 'copying' && here));
    back.disabled = !ready;
    back.title = ready ? (c.phase === 'copying' ? 'try the copy back again now' : '') :
      (!here ? m.id + ' is not back' : 'the coverage is ' + (c ? c.phase : 'not there'));
  }

  function renderBroken() {
    const broken = members().filter((m) => m.state === 'broken');
    sync($('#broken'), broken, (m) => m.id,
      (m) => el('li', { data: { broken: m.id } }, el('strong', {}, m.id), ' ', el('span', { class: 'detail' })),
      (li, m) => {
        const c = coverageOf(m.id);
        setText($('.detail', li), (m.reason || 'its material disks failed') + ' — since ' + clockTime(m.since) +
          (c ? '; covered by ' + c.standby + ' (' + c.phase + ')' : '; not covered'));
      });
  }

  function renderCoverage() {
    const t = takeover();
    sync($('#coverage'), (t && t.coverage) || [], (c) => c.member,
      (c) => el('li', { data: { covered: c.member } },
        el('strong', { class: 'member' }), ' covered by ', el('strong', { class: 'standby' }),
        ' ', el('span', { class: 'phase badge' }), ' ', el('span', { class: 'detail' })),
      (li, c) => {
        setData(li, 'standby', c.standby);
        setData(li, 'phase', c.phase);
        setText($('.member', li), c.member);
        setText($('.standby', li), c.standby);
        setText($('.phase', li), c.phase);
        const detail = ['since ' + clockTime(c.since)];
        if (c.reason) detail.push(c.reason);
        if (c.pending) detail.push('waiting for ' + c.pending);
        if (c.ready_at && parseTime(c.ready_at) !== null) detail.push('ready at ' + clockTime(c.ready_at));
        setText($('.detail', li), detail.join(' · '));
      });
  }

  function renderGrace() {
    const t = takeover();
    sync($('#grace'), (t && t.grace) || [], (g) => g.member,
      (g) => el('li', { data: { grace: g.member } }, el('span', { class: 'who' }), ': ', countdown(g.until, 'expired'), el('span', { class: 'left' })),
      (li, g) => {
        setText($('.who', li), g.member + ' on ' + g.standby);
        setData($('.countdown', li), 'until', g.expired ? '' : g.until);
        setText($('.left', li), g.expired ? '' : ' left');
        li.classList.toggle('expired', !!g.expired);
      });
  }

  function renderProposals() {
    const t = takeover();
    sync($('#proposals'), (t && t.proposals) || [], (p) => p.id,
      (p) => el('li', { data: { proposal: p.id } },
        el('span', { class: 'what' }), ' ', el('span', { class: 'auto' }),
        el('span', { class: 'buttons needs-token' },
          el('button', { type: 'button', class: 'primary', data: { action: 'confirm', proposal: p.id } }, 'Confirm'),
          el('button', { type: 'button', data: { action: 'reject', proposal: p.id } }, 'Reject'))),
      (li, p) => {
        const who = p.standby ? 'by ' + p.standby : p.pool ? 'from pool ' + p.pool : 'by a standby the policy picks';
        setText($('.what', li), p.id + ': take over ' + p.member + ' ' + who + (p.reason ? ' (' + p.reason + ')' : ''));
        const auto = $('.auto', li);
        if (parseTime(p.act_at) !== null) {
          if (!auto.firstChild) auto.append('— confirms itself in ', countdown(p.act_at, 'a moment'));
          setData($('.countdown', auto), 'until', p.act_at);
        } else {
          auto.replaceChildren();
        }
      });
  }

  function renderQueue() {
    const t = takeover();
    sync($('#queue'), (t && t.queue) || [], (q) => q.member,
      (q) => el('li', { data: { queued: q.member } }, el('strong', {}, q.member), ' ', el('span', { class: 'detail' })),
      (li, q) => {
        const detail = ['priority ' + q.priority, 'waiting since ' + clockTime(q.since)];
        if (q.standby) detail.push('for ' + q.standby);
        else if (q.pool) detail.push('for pool ' + q.pool);
        if (q.reason) detail.push(q.reason);
        setText($('.detail', li), detail.join(' · '));
      });
  }

  function renderCopies() {
    sync($('#copies'), (page.status && page.status.copies) || [], (c) => c.action,
      (c) => el('li', { data: { copy: c.action } },
        el('div', { class: 'what' }),
        el('progress', { max: '1', value: '0' }),
        el('div', { class: 'detail' })),
      (li, c) => {
        setData(li, 'member', c.member);
        setText($('.what', li), 'to ' + c.member + ' from ' + c.from + (c.final ? ' — finished' : ''));
        const bar = $('progress', li);
        const total = c.bytes_total > 0 ? c.bytes_total : c.files_total;
        const done = c.bytes_total > 0 ? c.bytes_done : c.files_done;
        if (total > 0) {
          bar.max = total;
          bar.value = Math.min(done, total);
        } else {
          bar.removeAttribute('value'); // still counting: an indeterminate bar
        }
        const detail = [c.files_done + '/' + c.files_total + ' files', bytes(c.bytes_done) + ' of ' + bytes(c.bytes_total)];
        if (c.rate > 0) detail.push(bytes(c.rate) + '/s');
        if (c.eta_s > 0) detail.push(duration(c.eta_s) + ' left');
        if (c.current) detail.push(c.current);
        setText($('.detail', li), detail.join(' · '));
      });
  }

  // Standby pools: the standbys of each pool, free or covering whom, and the
  // members they protect (members without a pool share the default one).
  function renderPools() {
    const pools = new Map();
    const pool = (name) => {
      if (!pools.has(name)) pools.set(name, { name, standbys: [], members: [] });
      return pools.get(name);
    };
    for (const m of members()) {
      if (m.standby) pool(m.pool || '').standbys.push(m);
    }
    for (const m of members()) {
      if (!m.standby && pools.has(m.pool || '')) pool(m.pool || '').members.push(m.id);
    }
    const t = takeover();
    const covering = (id) => ((t && t.coverage) || []).filter((c) => c.standby === id).map((c) => c.member);
    sync($('#pools'), Array.from(pools.values()), (p) => p.name,
      (p) => el('li', { data: { pool: p.name } }, el('strong', {}, p.name ? 'pool ' + p.name : 'default pool'), el('ul', { class: 'standbys' }), el('p', { class: 'protects' })),
      (li, p) => {
        sync($('.standbys', li), p.standbys, (s) => s.id,
          (s) => el('li', { data: { standby: s.id } }, el('strong', {}, s.id), ' ', el('span', { class: 'state badge' }), ' ', el('span', { class: 'duty' })),
          (sli, s) => {
            const busy = covering(s.id);
            const state = $('.state', sli);
            setText(state, s.state);
            setData(state, 'state', s.state);
            setData(sli, 'free', busy.length === 0 && s.state === 'alive');
            setText($('.duty', sli), busy.length ? 'covering ' + busy.join(', ') : s.state === 'alive' ? 'free' : 'unavailable');
          });
        setText($('.protects', li), p.members.length ? 'protects ' + p.members.join(', ') : 'protects nobody');
      });
  }

  // The choices of the action forms follow the members.
  function renderActionForms() {
    const ids = (list) => list.map((m) => m.id).sort();
    const standbys = ids(members().filter((m) => m.standby));
    fillSelect($('#takeover-all-standby'), standbys);
    fillSelect($('#drill-member'), ids(members().filter((m) => !m.standby)).concat(standbys));
  }

  function fillSelect(select, values) {
    const current = Array.from(select.options).map((o) => o.value);
    if (JSON.stringify(current) === JSON.stringify(values)) return;
    const chosen = select.value;
    select.replaceChildren(...values.map((v) => el('option', { value: v }, v)));
    if (values.includes(chosen)) select.value = chosen;
  }

  // Every second: countdowns, "… ago", and whether the feed is stale.
  function tick() {
    const now = serverNow();
    for (const node of document.querySelectorAll('[data-until]')) {
      const end = parseTime(node.dataset.until);
      if (end === null) { setText(node, node.dataset.expired); continue; }
      const left = (end - now) / 1000;
      setText(node, left > 0 ? duration(left) : node.dataset.expired);
    }
    for (const node of document.querySelectorAll('[data-since]')) {
      const text = ago(node.dataset.since);
      setText(node, text ? '(' + text + ')' : '');
    }
    if (page.statusAt && Date.now() - page.statusAt > STALE_AFTER_MS && connection().dataset.connection === 'live') {
      setConnection('stale', 'no news for ' + duration((Date.now() - page.statusAt) / 1000));
    }
  }

  // -------------------------------------------------------------- records

  // The action a record is about, in words (as engine.Record.Action says it).
  function actionWords(f) {
    if (f.driver !== undefined && f.verb === 'route') return 'route ' + f.driver + ' output ' + f.output + ' ← input ' + f.input;
    if (f.driver !== undefined) return f.driver + ' send ' + JSON.stringify(f.args);
    if (f.member !== undefined) return f.verb + ' on ' + f.target + ' for ' + f.member;
    return f.verb + ' on ' + f.target;
  }

  // The fields that tell a record's story briefly (as engine.Record.Summary).
  function summary(f) {
    const parts = [];
    for (const k of ['standby', 'from', 'reason', 'why', 'cause', 'error', 'step']) {
      if (f[k] !== undefined && f[k] !== null && String(f[k]) !== '') parts.push(k + ': ' + (typeof f[k] === 'object' ? JSON.stringify(f[k]) : f[k]));
    }
    return parts.length ? ' (' + parts.join('; ') + ')' : '';
  }

  const SAYINGS = {
    member_seen: (m) => m + ' seen',
    member_suspect: (m) => m + ' suspect: heartbeats late',
    member_lost: (m) => m + ' LOST',
    member_closed: (m) => m + ' closed (shut down)',
    member_restored: (m) => m + ' restored',
    member_broken: (m) => m + ' BROKEN',
    member_ready: (m) => m + ' ready: it has its duties again',
    takeover_started: (m, f) => f.standby + ' takes over ' + m,
    takeover_done: (m, f) => f.standby + ' has taken over ' + m,
    takeover_failed: (m, f) => f.standby + ' could not take over ' + m,
    takeover_queued: (m, f) => m + ' queued: it waits for a standby' + (f.position ? ' (position ' + f.position + ')' : ''),
    takeover_dequeued: (m) => m + ' left the queue',
    takeover_proposed: (m, f) => 'takeover of ' + m + ' proposed' + (f.proposal ? ' as ' + f.proposal : '') + ': an operator confirms it',
    proposal_confirmed: (m, f) => 'proposal ' + (f.proposal || f.id || '') + ' for ' + m + ' confirmed',
    proposal_rejected: (m, f) => 'proposal ' + (f.proposal || f.id || '') + ' for ' + m + ' rejected',
    proposal_withdrawn: (m, f) => 'proposal ' + (f.proposal || f.id || '') + ' for ' + m + ' withdrawn',
    failback_started: (m) => 'failback of ' + m + ' started',
    failback_done: (m, f) => m + ' failed back' + (f.standby ? ': ' + f.standby + ' let go' : ''),
    failback_failed: (m) => 'failback of ' + m + ' did not finish',
    failback_paused: (m, f) => 'failback of ' + m + ' waits: it is suspect (' + (f.step || '') + ' waits)',
    member_alive: (m) => m + ' is heard again',
    grace_expired: (m, f) => 'grace period of ' + m + ' on ' + f.standby + ' expired',
    mode_changed: (m, f) => 'mode ' + f.mode + (f.by ? ' (by ' + f.by + ')' : ''),
    copy_done: (m, f) => 'material copied to ' + m + (f.from ? ' from ' + f.from : ''),
    drill_started: (m, f) => 'FIRE DRILL: ' + m + ' held ' + f.fault + (f.by ? ', by ' + f.by : ''),
    drill_ended: (m) => 'fire drill of ' + m + ' ended',
    drill_dry_run: (m, f) => 'dry-run fire drill of ' + m + ' (' + (f.fault || 'lost') + '): ' + plural((f.decisions || []).length, 'decision') + ', nothing sent',
    policy_loaded: (m, f) => 'policy ' + (f.reload ? 're' : '') + 'loaded',
    policy_error: () => 'policy error',
    command: (m, f) => 'command ' + f.verb + (f.args && Object.keys(f.args).length ? ' ' + JSON.stringify(f.args) : '') + (f.error ? ' refused' : ''),
    route_changed: (m, f) => f.driver + ' output ' + f.output + ' now shows input ' + f.input,
    routing_differs: (m, f) => f.driver + ' output ' + f.output + ' shows input ' + f.actual + ', not ' + f.expected + (m ? ' (' + m + "'s output)" : ''),
    routing_accepted: (m, f) => f.driver + ' output ' + f.output + ' keeps input ' + f.input,
    route_withheld: (m, f) => 'manual mode: ' + f.driver + ' output ' + f.output + ' not routed to input ' + f.input,
    driver_connected: (m, f) => f.driver + ' connected' + (f.address ? ' (' + f.address + ')' : ''),
    driver_disconnected: (m, f) => f.driver + ' DISCONNECTED',
    alarm: (m, f) => (f.severity === 'warning' ? 'WARNING ' : 'ALARM ') + words(f.kind || '') + (m ? ' of ' + m : '') + ': ' + (f.message || ''),
    alarm_cleared: (m, f) => 'alarm ' + words(f.kind || '') + (m ? ' of ' + m : '') + ' cleared',
    event_quarantined: (m, f) => (f.event || 'an event') + (m ? ' of ' + m : '') + ' SET ASIDE' + (f.proposal ? ' as ' + f.proposal + ': an operator confirms or rejects it' : ''),
    event_held: (m, f) => (f.event || 'an event') + (m ? ' of ' + m : '') + ' held, not handed to the policy: it is quarantined' + (f.proposal ? ' (' + f.proposal + ')' : ''),
    bus_silent: () => 'the bus went silent',
    bus_heard: () => 'the bus is heard again',
  };

  // The sayings that name the standby already.
  const NAMES_STANDBY = new Set(['takeover_started', 'takeover_done', 'takeover_failed', 'failback_done', 'grace_expired']);

  function recordWords(r) {
    const f = r.fields || {};
    const m = r.member || f.member || '';
    if (r.type && r.type.startsWith('action_')) {
      return actionWords(f) + ': ' + words(r.type.slice('action_'.length)) + (f.took_ms !== undefined ? ' in ' + f.took_ms + ' ms' : '') + summary({ cause: f.cause, error: f.error });
    }
    const say = SAYINGS[r.type];
    const text = say ? say(m, f) : words(r.type) + (m ? ' ' + m : '');
    const rest = Object.assign({}, f);
    if (NAMES_STANDBY.has(r.type)) delete rest.standby;
    return text + summary(rest);
  }

  function recordItem(r) {
    const f = r.fields || {};
    const li = el('li', { data: { type: r.type, subject: r.member || f.member || '' } },
      el('time', { datetime: r.at }, clockTime(r.at, true)), ' ',
      el('span', { class: 'what' }, recordWords(r)));
    if (/lost|broken|failed|error|disconnected|quarantined|held/.test(r.type) || r.type === 'drill_started' || f.error || f.severity) li.classList.add('alarm');
    li.append(...decisions(r));
    return li;
  }

  // A dry run's decisions, as a list (none for other records).
  function decisions(r) {
    const f = r.fields || {};
    if (r.type !== 'drill_dry_run' || !Array.isArray(f.decisions) || !f.decisions.length) return [];
    return [el('ol', { class: 'decisions' }, ...f.decisions.map((d) =>
      el('li', {}, '+' + duration(d.at_s) + ' ' + d.what + (d.cause ? ' (on ' + d.cause + ')' : ''))))];
  }

  function onRecords(list) {
    page.records = list.slice(-KEEP_RECORDS);
    const timeline = $('#timeline');
    timeline.replaceChildren(...page.records.slice().reverse().map(recordItem));
    showEmpty('timeline', page.records.length === 0);
  }

  function onRecord(r) {
    const at = parseTime(r.at);
    if (at !== null) page.skewMs = at - Date.now();
    page.records.push(r);
    const timeline = $('#timeline');
    timeline.prepend(recordItem(r));
    while (page.records.length > KEEP_RECORDS) {
      page.records.shift();
      timeline.lastElementChild.remove();
    }
    showEmpty('timeline', false);
  }

  // ------------------------------------------------------------ live feed

  function connection() { return $('#connection'); }

  function setConnection(state, text) {
    setData(connection(), 'connection', state);
    setText(connection(), text);
  }

  function listen() {
    const events = new EventSource('/dashboard/events');
    page.events = events;
    events.addEventListener('open', () => setConnection('live', 'live'));
    events.addEventListener('error', () => setConnection('lost', 'reconnecting…'));
    events.addEventListener('status', (e) => {
      setConnection('live', 'live');
      onStatus(JSON.parse(e.data));
    });
    events.addEventListener('records', (e) => onRecords(JSON.parse(e.data)));
    events.addEventListener('record', (e) => onRecord(JSON.parse(e.data)));
    events.addEventListener('unavailable', (e) => {
      const box = $('#unavailable');
      setText(box, 'The instance did not give its status: ' + JSON.parse(e.data).error);
      show(box, true);
    });
  }

  // ----------------------------------------------------------------- token

  // The token comes in the fragment (#token=…), which the browser never
  // sends; it is kept for this tab only and taken out of the address bar.
  function takeToken() {
    const hash = new URLSearchParams(location.hash.slice(1));
    const fromURL = hash.get('token');
    if (fromURL) {
      sessionStorage.setItem(TOKEN_KEY, fromURL);
      hash.delete('token');
      const rest = hash.toString();
      history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    }
    setToken(sessionStorage.getItem(TOKEN_KEY) || '');
  }

  function setToken(token) {
    page.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    // An instance whose API is not on loopback answers its event stream only
    // with a token, and EventSource cannot send a header: a cookie for this
    // origin carries it (read by the instance only, never sent elsewhere).
    document.cookie = 'understudy_token=' + (token ? encodeURIComponent(token) + '; path=/; SameSite=Strict' : '; path=/; max-age=0; SameSite=Strict');
    if (page.events && page.events.readyState === EventSource.CLOSED) listen();
    document.body.classList.toggle('locked', !token);
    document.body.classList.toggle('unlocked', !!token);
    show($('#unlock'), !token);
  }

  function askToken() {
    const dialog = $('#token-dialog');
    $('#token-input').value = '';
    dialog.showModal();
  }

  // ------------------------------------------------------------- commands

  // What each action asks before it is sent, and the command it sends.
  const ACTIONS = {
    takeover: (d) => ({ fields: { member: d.member }, ask: 'Take over ' + d.member + '? A standby takes its duties and its switcher outputs now.', ok: 'Take over ' + d.member }),
    failback: (d) => {
      const c = coverageOf(d.member);
      return { fields: { member: d.member }, ask: 'Fail back ' + d.member + '? Its duties go back to it' + (c ? ' from ' + c.standby : '') + ', and its outputs show it again.', ok: 'Fail back ' + d.member };
    },
    mode: (d) => ({ fields: { mode: d.mode }, ask: d.mode === 'manual' ? 'Switch to manual mode? A lost member then waits for an operator to confirm its takeover.' : 'Switch to automatic mode? Takeovers happen at once, and waiting proposals are carried out.', ok: 'Mode ' + d.mode }),
    confirm: (d) => ({ fields: { proposal: d.proposal }, ask: 'Confirm proposal ' + d.proposal + '? The takeover happens now.', ok: 'Confirm' }),
    reject: (d) => ({ fields: { proposal: d.proposal }, ask: 'Reject proposal ' + d.proposal + '? The member stays uncovered.', ok: 'Reject' }),
    takeover_all: (d) => ({ fields: { standby: d.standby }, ask: d.standby + ' takes over every member it can cover, now.', ok: 'Take over all' }),
    reassert: (d) => ({ fields: { driver: d.driver, output: Number(d.output) }, ask: 'Put ' + d.driver + ' output ' + d.output + ' back as the site says? Deal with the other controller first, or it changes it again.', ok: 'Put back ' + d.driver + ' output ' + d.output }),
    drill_end: (d) => ({ fields: { member: d.member }, ask: 'End the fire drill of ' + d.member + ' now? The fault ends; if ' + d.member + ' is there and covered, it is failed back.', ok: 'End the drill of ' + d.member }),
    drill: (d) => ({
      fields: { member: d.member, fault: d.fault, dry_run: d.dry_run, revert_after: d.revert_after },
      ask: d.dry_run
        ? 'Dry-run fire drill: what if ' + d.member + ' were ' + d.fault + '? The coordinator simulates it; nothing is sent.'
        : 'REAL fire drill: ' + d.member + ' is held ' + d.fault + ' for ' + d.revert_after + '. The site fails over for real, then reverts.',
      ok: d.dry_run ? 'Run the dry run' : 'Start the fire drill',
      danger: !d.dry_run,
    }),
  };

  // ask shows the confirmation dialog; it resolves true for OK.
  function ask(text, okLabel, danger) {
    const dialog = $('#confirm-dialog');
    setText($('#confirm-text'), text);
    setText($('#confirm-ok'), okLabel);
    $('#confirm-ok').classList.toggle('danger', !!danger);
    return new Promise((resolve) => {
      const done = (answer) => {
        $('#confirm-ok').onclick = null;
        $('#confirm-cancel').onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      $('#confirm-ok').onclick = () => done(true);
      $('#confirm-cancel').onclick = () => done(false);
      dialog.onclose = () => done(false);
      dialog.showModal();
      $('#confirm-cancel').focus();
    });
  }

  async function act(verb, data) {
    if (!page.token) { askToken(); return; }
    const a = ACTIONS[verb](data);
    if (!(await ask(a.ask, a.ok, a.danger))) return;
    const result = el('li', { data: { verb, state: 'pending' } },
      el('time', {}, clockTime(new Date().toISOString())), ' ', el('strong', {}, a.ok), ' ', el('span', { class: 'outcome' }, 'sent…'));
    $('#results').prepend(result);
    showEmpty('results', false);
    try {
      showResult(result, await send(verb, a.fields));
    } catch (err) {
      showResult(result, { ok: false, error: 'not sent: ' + err.message });
    }
  }

  // send posts the command; it resolves to the reply (or an error reply).
  async function send(verb, fields) {
    const response = await fetch('/command/' + encodeURIComponent(verb), {
      method: 'POST',
      cache: 'no-store',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + page.token },
      body: JSON.stringify(fields),
    });
    if (response.status === 401) {
      setToken('');
      return { ok: false, error: 'the token was refused: unlock actions again' };
    }
    if ((response.headers.get('Content-Type') || '').startsWith('application/json')) return response.json();
    const text = (await response.text()).trim();
    return { ok: false, error: response.status + ' ' + response.statusText + (text ? ': ' + text : '') };
  }

  // showResult tells what became of a command: refused (and why), or done
  // with the records that followed; by the coordinator, when a member's
  // instance passed it on.
  function showResult(li, reply) {
    const followed = (reply.records || []).filter((r) => r.type !== 'command');
    setData(li, 'state', reply.ok ? 'ok' : 'refused');
    const outcome = $('.outcome', li);
    const by = reply.forwarded_to ? ' by the coordinator ' + reply.forwarded_to : '';
    if (!reply.ok) {
      setText(outcome, 'refused' + by + ': ' + (reply.error || 'no reason given'));
    } else {
      setText(outcome, followed.length ? 'done' + by + '; what followed:' : 'accepted' + by + '; the policy did nothing with it');
    }
    if (followed.length) {
      li.append(el('ul', { class: 'followed' }, ...followed.map((r) => el('li', { data: { type: r.type } }, recordWords(r), ...decisions(r)))));
    }
  }

  // --------------------------------------------------------------- wiring

  function wire() {
    document.addEventListener('click', (e) => {
      const button = e.target.closest('button[data-action]');
      if (!button || button.type === 'submit' || button.disabled) return;
      act(button.dataset.action, Object.assign({}, button.dataset));
    });
    $('#takeover-all-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const standby = $('#takeover-all-standby').value;
      if (standby) act('takeover_all', { standby });
    });
    $('#drill-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const member = $('#drill-member').value;
      if (!member) return;
      act('drill', {
        member,
        fault: $('#drill-fault').value,
        dry_run: $('#drill-dry-run').checked,
        revert_after: $('#drill-revert').value.trim(),
      });
    });
    $('#unlock').addEventListener('click', askToken);
    $('#lock').addEventListener('click', () => setToken(''));
    $('#token-cancel').addEventListener('click', () => $('#token-dialog').close());
    $('#token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const token = $('#token-input').value.trim();
      if (token) setToken(token);
      $('#token-dialog').close();
    });
  }

  function start() {
    takeToken();
    wire();
    listen();
    setInterval(tick, 1000);
  }

  start();
})();
