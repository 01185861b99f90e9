"use strict";
// The management console's page: the tree, a property sheet, commands
// and the live counters, all from the service's JSON API. Every change
// carries the session's CSRF token.

const csrf = document.querySelector('meta[name="csrf-token"]').content;

async function api(path, body) {
  const options = body === undefined
    ? { credentials: "same-origin" }
    : {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
      };
  const response = await fetch(path, options);
  if (response.status === 401) {
    location.href = "/login";
    throw new Error("the session ended");
  }
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// Runs a call and says what it did (its `done`), or why it was refused,
// in `message`.
async function tell(message, call, base = "") {
  try {
    const answer = await call();
    message.className = base;
    message.textContent = answer.done;
    return answer;
  } catch (e) {
    message.className = `${base} refused`.trim();
    message.textContent = e.message;
    return null;
  }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

let selected = null;

// IIS 6's property sheets: the tabs of each kind of key, each a list of
// [property, label], on the key itself or on a key below it ("/ROOT": a
// site's home directory). "All properties" follows them.
const SECURITY = ["Directory Security", "", [
  ["AuthAnonymous", "Anonymous access"], ["AnonymousUserName", "Anonymous user"],
  ["AuthBasic", "Basic authentication (password sent in clear text)"],
  ["AuthNTLM", "Integrated Windows authentication"], ["DefaultLogonDomain", "Default domain"],
  ["IPSecurity", "IP address restrictions"], ["AccessSSL", "Require secure channel (SSL)"],
  ["AccessSSLRequireCert", "Require client certificates"],
]];
const HEADERS = ["HTTP Headers", "", [
  ["HttpExpires", "Content expiration (D, 0xSECONDS or S, date)"],
  ["HttpCustomHeaders", "Custom HTTP headers (one a line)"],
  ["HttpRedirect", "Redirect to (URL[, flags])"],
]];
const ERRORS = ["Custom Errors", "", [["HttpErrors", "Errors (code,subcode,FILE|URL,target; one a line)"]]];
const documents = (at) => ["Documents", at, [
  ["EnableDefaultDoc", "Enable default content page"], ["DefaultDoc", "Default pages (comma-separated)"],
  ["EnableDocFooter", "Enable document footer"], ["DefaultDocFooter", "Footer"],
]];
const directory = (title, at) => [title, at, [
  ["Path", "Local path"], ["AccessRead", "Read"], ["AccessWrite", "Write"],
  ["AccessScript", "Scripts"], ["AccessExecute", "Scripts and executables"],
  ["AccessSource", "Script source access"], ["EnableDirBrowsing", "Directory browsing"],
  ["DontLog", "Do not log visits"], ["AppPoolId", "Application pool"],
]];
const TABS = {
  IIsWebServer: [
    ["Web Site", "", [
      ["ServerComment", "Description"], ["ServerBindings", "Bindings (IP:port:host, one a line)"],
      ["SecureBindings", "SSL bindings"], ["ServerAutoStart", "Start with the service"],
      ["ConnectionTimeout", "Connection timeout (seconds)"], ["LogType", "Enable logging (1)"],
      ["LogFileDirectory", "Log file directory"],
      ["LogFilePeriod", "New log file (0 by size, 1 daily, 2 weekly, 3 monthly, 4 hourly)"],
    ]],
    ["Performance", "", [
      ["MaxBandwidth", "Bandwidth limit (bytes a second)"], ["MaxConnections", "Connection limit"],
    ]],
    directory("Home Directory", "/ROOT"), documents("/ROOT"), SECURITY, HEADERS, ERRORS,
  ],
  IIsWebVirtualDir: [directory("Virtual Directory", ""), documents(""), SECURITY, HEADERS, ERRORS],
  IIsApplicationPool: [
    ["Recycling", "", [
      ["PeriodicRestartTime", "Recycle worker processes (minutes; 0 never)"],
      ["PeriodicRestartRequests", "Recycle after this many requests (0 never)"],
      ["PeriodicRestartSchedule", "Recycle at these times (hh:mm, one a line)"],
      ["PeriodicRestartMemory", "Maximum virtual memory (KB)"],
      ["PeriodicRestartPrivateMemory", "Maximum used memory (KB)"],
    ]],
    ["Performance", "", [
      ["IdleTimeout", "Shut down worker processes after idle (minutes)"],
      ["AppPoolQueueLength", "Request queue limit"], ["MaxProcesses", "Web garden: worker processes"],
      ["CPULimit", "CPU limit (1/1000 %)"], ["CPUAction", "When it is reached (0 log, 1 shut down)"],
    ]],
    ["Health", "", [
      ["PingingEnabled", "Enable pinging"], ["PingInterval", "Ping every (seconds)"],
      ["RapidFailProtection", "Enable rapid-fail protection"],
      ["RapidFailProtectionMaxCrashes", "Failures"], ["RapidFailProtectionInterval", "Time period (minutes)"],
      ["StartupTimeLimit", "Start-up time limit (seconds)"], ["ShutdownTimeLimit", "Shutdown time limit (seconds)"],
    ]],
    ["Identity", "", [
      ["AppPoolIdentityType", "Identity (0 LocalSystem, 1 LocalService, 2 NetworkService, 3 configurable)"],
      ["WAMUserName", "User name"], ["WAMUserPass", "Password"],
    ]],
  ],
};

function node(label, path, what) {
  const b = el("button", { type: "button", "data-path": path, text: label });
  b.addEventListener("click", () => select(path, what, label));
  if (selected === path) b.setAttribute("aria-current", "true");
  return b;
}

async function loadTree() {
  const tree = await api("/api/tree");
  const nav = document.getElementById("tree");
  const add = el("button", { type: "button", id: "new-site", text: "New site…" });
  add.addEventListener("click", newSiteForm);
  nav.replaceChildren(el("h2", { text: "Web Sites" }), add);
  const sites = el("ul");
  for (const s of tree.sites) {
    const li = el("li", { "data-site": String(s.id) });
    li.append(node(s.comment || `Site ${s.id}`, s.path, { kind: "site", id: s.id }),
      el("span", { class: "state", text: s.state }));
    const vdirs = el("ul");
    for (const v of s.vdirs) {
      const label = v.slice(s.path.length + "/ROOT".length) || "/";
      vdirs.append(el("li", {}, node(label, v, { kind: "vdir", site: s.id, alias: label })));
    }
    li.append(vdirs);
    sites.append(li);
  }
  const addPool = el("button", { type: "button", id: "new-pool", text: "New pool…" });
  addPool.addEventListener("click", newPoolForm);
  const backups = el("button", { type: "button", id: "backups", text: "Backup and restore…" });
  backups.addEventListener("click", backupPanel);
  nav.append(sites, el("h2", { text: "Application Pools" }), addPool);
  const pools = el("ul");
  for (const p of tree.pools) {
    const li = el("li", { "data-pool": p.name });
    li.append(node(p.name, p.path, { kind: "pool", name: p.name }),
      el("span", { class: "state", text: p.state }));
    pools.append(li);
  }
  const extensions = el("button", { type: "button", id: "webext", text: "Web Service Extensions" });
  extensions.addEventListener("click", webExtensions);
  nav.append(pools, el("h2", { text: "Configuration" }), extensions, backups);
}

async function select(path, what, label) {
  selected = path;
  for (const b of document.querySelectorAll("nav button")) {
    b.setAttribute("aria-current", String(b.dataset.path === path));
  }
  const details = document.getElementById("details");
  const key = await api("/api/key?path=" + encodeURIComponent(path));
  details.replaceChildren(el("h2", { text: `${label} (${key.key_type})` }));
  const actions = el("div", { class: "actions" });
  const verbs = what.kind === "site" ? ["start", "stop", "pause", "continue"]
    : what.kind === "pool" ? ["start", "stop", "recycle"] : [];
  for (const verb of verbs) {
    const b = el("button", { type: "button", "data-command": verb, text: verb[0].toUpperCase() + verb.slice(1) });
    b.addEventListener("click", () => command(what, verb));
    actions.append(b);
  }
  if (what.kind === "site" || what.kind === "pool") {
    const b = el("button", { type: "button", "data-command": "delete", text: "Delete" });
    b.addEventListener("click", () => (what.kind === "site" ? deleteSite(what, label) : deletePool(what)));
    actions.append(b);
  }
  if (what.kind === "vdir" && what.alias !== "/") {
    const b = el("button", { type: "button", "data-command": "delete", text: "Delete" });
    b.addEventListener("click", () => deleteVdir(what));
    actions.append(b);
  }
  const message = el("p", { role: "status", id: "message" });
  details.append(actions, message);
  // This site's requests or this pool's arrivals, a second a point.
  const series = what.kind === "site" ? `site:${what.id}` : what.kind === "pool" ? `pool:${what.name}` : null;
  if (series) {
    const what_ = what.kind === "site" ? "Requests per second to this site" : "Requests per second into this pool's queue";
    details.append(el("canvas", { id: "node-graph", width: "640", height: "90", role: "img",
      "data-series": series, "aria-label": what_ }));
    drawNode();
  }
  const tabs = (TABS[key.key_type] || []).concat([["All properties", null, null]]);
  const list = el("div", { role: "tablist", "aria-label": "Property sheet" });
  const panel = el("div", { role: "tabpanel", id: "sheet" });
  const show = async (index) => {
    list.querySelectorAll("[role=tab]").forEach((t, i) => {
      t.setAttribute("aria-selected", String(i === index));
      t.tabIndex = i === index ? 0 : -1;
    });
    const [title, at, fields] = tabs[index];
    panel.setAttribute("aria-label", title);
    panel.replaceChildren(await sheetTable(path, at, fields, key, message));
  };
  tabs.forEach(([title], i) => {
    const tab = el("button", { type: "button", role: "tab", "data-tab": title, text: title });
    tab.addEventListener("click", () => show(i));
    // Arrow keys move between the tabs, as a tab list's do.
    tab.addEventListener("keydown", (event) => {
      const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = (i + step + tabs.length) % tabs.length;
      list.querySelectorAll("[role=tab]")[next].focus();
      show(next);
    });
    list.append(tab);
  });
  details.append(list, panel);
  if (what.kind === "site") details.append(newVdirForm(what.id), logsPanel(what.id));
  await show(0);
}

// One tab's table: its fields read from the key (or one below it), or
// every property of the key for "All properties".
async function sheetTable(path, at, fields, key, message) {
  const table = el("table", { id: "properties" });
  table.append(el("caption", { text: "Grey: inherited from a key above; empty: not set (the default applies)" }));
  const head = el("tr");
  for (const h of ["Property", "Value", ""]) head.append(el("th", { text: h }));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  if (fields === null) {
    for (const p of key.properties) body.append(row(path, p, message));
  } else {
    const target = path + at;
    const names = fields.map(([name]) => name).join(",");
    const sheet = await api(`/api/sheet?path=${encodeURIComponent(target)}&names=${encodeURIComponent(names)}`);
    sheet.properties.forEach((p, i) => {
      if (p.kind !== "unknown") body.append(row(target, p, message, fields[i][1]));
    });
  }
  table.append(body);
  return table;
}

function row(path, p, message, label) {
  const tr = el("tr", p.inherited ? { class: "inherited", "data-name": p.name } : { "data-name": p.name });
  tr.append(el("th", { scope: "row", text: label || p.name, title: p.name }));
  const cell = el("td");
  let input = null;
  if (p.kind === "binary") cell.textContent = p.value === null ? "" : p.value;
  else if (p.kind === "secret") {
    // Never shown; a new one may be typed.
    input = el("input", { type: "password", "aria-label": label || p.name, placeholder: "(unchanged)", autocomplete: "new-password" });
  } else if (p.kind === "list") {
    const items = p.value || [];
    input = el("textarea", { rows: String(Math.min(6, items.length + 1)), "aria-label": label || p.name });
    input.value = items.join("\n");
  } else if (p.kind === "bool") {
    input = el("input", { type: "checkbox", "aria-label": label || p.name });
    input.checked = p.value === true;
  } else {
    input = el("input", { type: "text", "aria-label": label || p.name });
    input.value = p.value === null ? "" : String(p.value);
    if (p.value === null && p.default) input.placeholder = `default: ${p.default}`;
  }
  if (input) cell.append(input);
  if (p.inherited && p.defined_at) cell.append(el("div", { class: "inherited", text: "from " + p.defined_at }));
  tr.append(cell);
  const save = el("td");
  if (input && p.writable) {
    const b = el("button", { type: "button", text: "Save" });
    b.addEventListener("click", async () => {
      if (p.kind === "secret" && input.value === "") {
        message.className = "refused";
        message.textContent = `type the new ${label || p.name} first`;
        return;
      }
      const values = p.kind === "list" ? input.value.split("\n").filter((l) => l !== "")
        : p.kind === "bool" ? [input.checked ? "true" : "false"] : [input.value];
      await tell(message, async () => {
        await api("/api/set", { path, name: p.name, values });
        return { done: `${p.name} saved` };
      });
    });
    save.append(b);
  }
  tr.append(save);
  return tr;
}

function field(label, name, attrs) {
  const id = "field-" + name;
  return el("p", {}, el("label", { for: id, text: label }), " ",
    el("input", Object.assign({ id, name }, attrs || {})));
}

function formMessage(form) {
  const m = el("p", { role: "status", class: "form-message" });
  form.append(m);
  return m;
}

// A form whose answer (or refusal) shows below it; `done` runs after a
// success.
function answered(form, call, done) {
  const message = formMessage(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await tell(message, () => call(new FormData(form)), "form-message");
    if (answer && done) await done();
  });
}

function newSiteForm() {
  const details = document.getElementById("details");
  const form = el("form", { id: "site-form" },
    el("h2", { text: "New web site" }),
    field("Description", "name", { required: "" }),
    field("TCP port", "port", { type: "number", min: "1", max: "65535", required: "" }),
    field("Host header (optional)", "host"),
    field("Home directory (absolute path)", "path", { required: "" }),
    el("button", { type: "submit", text: "Create" }));
  answered(form, (data) => api("/api/site", Object.fromEntries(data)), loadTree);
  details.replaceChildren(form);
  form.querySelector("input").focus();
}

function newVdirForm(site) {
  const form = el("form", { id: "vdir-form" },
    el("h3", { text: "New virtual directory" }),
    field("Alias", "alias", { required: "" }),
    field("Directory (absolute path)", "path", { required: "" }),
    el("p", {}, el("label", {}, el("input", { type: "checkbox", name: "app" }), " An application")),
    el("button", { type: "submit", text: "Create" }));
  answered(form, (data) => api("/api/vdir", {
    site, alias: data.get("alias"), path: data.get("path"), app: data.get("app") === "on",
  }), loadTree);
  return form;
}

function logsPanel(site) {
  const request = el("pre", { id: "request-log", tabindex: "0" });
  const httperr = el("pre", { id: "httperr-log", tabindex: "0" });
  const again = el("button", { type: "button", text: "Refresh logs" });
  const load = async () => {
    for (const [target, query] of [[request, `site=${site}`], [httperr, "httperr=1"]]) {
      try {
        const answer = await api(`/api/log?${query}&lines=30`);
        target.textContent = answer.lines.length ? answer.lines.join("\n") : "(nothing logged yet)";
        target.dataset.file = answer.file || "";
      } catch (e) {
        target.textContent = e.message;
      }
    }
  };
  again.addEventListener("click", load);
  load();
  return el("section", { id: "logs" },
    el("h3", { text: "Request log (the last 30 lines)" }), request,
    el("h3", { text: "HTTPERR" }), httperr, again);
}

function newPoolForm() {
  const form = el("form", { id: "pool-form" },
    el("h2", { text: "New application pool" }),
    field("Name", "name", { required: "" }),
    el("button", { type: "submit", text: "Create" }));
  answered(form, (data) => api("/api/pool", { name: data.get("name") }), loadTree);
  document.getElementById("details").replaceChildren(form);
  form.querySelector("input").focus();
}

async function backupPanel() {
  const details = document.getElementById("details");
  const form = el("form", { id: "backup-form" },
    el("h2", { text: "Backup and restore" }),
    field("Backup name", "name", { required: "" }),
    field("Password (optional: encrypts the secrets)", "password", { type: "password", autocomplete: "new-password" }),
    el("button", { type: "submit", text: "Back up now" }));
  const table = el("table", { id: "backup-list" });
  const list = async () => {
    const answer = await api("/api/backups");
    const body = el("tbody");
    for (const b of answer.backups) {
      const restore = el("button", { type: "button", text: "Restore" });
      restore.addEventListener("click", async () => {
        if (!confirm(`Replace the whole configuration with backup ${b.name} version ${b.version}?`)) return;
        const message = form.querySelector(".form-message");
        const answer = await tell(message,
          () => api("/api/restore", { name: b.name, version: b.version }), "form-message");
        if (answer) await loadTree();
      });
      const when = b.modified ? new Date(b.modified * 1000).toLocaleString() : "";
      const tr = el("tr", { "data-backup": `${b.name}.${b.version}` });
      for (const v of [b.name, b.version, when, b.password_protected ? "yes" : "no"]) tr.append(el("td", { text: String(v) }));
      tr.append(el("td", {}, restore));
      body.append(tr);
    }
    const head = el("tr");
    for (const h of ["Name", "Version", "Made", "Password", ""]) head.append(el("th", { text: h }));
    table.replaceChildren(el("caption", { text: "Backups" }), el("thead", {}, head), body);
  };
  answered(form, (data) => api("/api/backup", { name: data.get("name"), password: data.get("password") }), list);
  details.replaceChildren(form, table);
  await list();
}

async function webExtensions() {
  const details = document.getElementById("details");
  const answer = await api("/api/webext");
  const message = el("p", { role: "status", id: "message" });
  const table = el("table", { id: "webext-list" });
  const head = el("tr");
  for (const h of ["Web Service Extension", "Status", "Files", ""]) head.append(el("th", { text: h }));
  const body = el("tbody");
  for (const x of answer.extensions) {
    const tr = el("tr", { "data-extension": x.name });
    tr.append(el("td", { text: x.description ? `${x.name} (${x.description})` : x.name }),
      el("td", { text: x.state }), el("td", { text: x.files.join(", ") }));
    const allow = x.state !== "allowed";
    const b = el("button", { type: "button", text: allow ? "Allow" : "Prohibit" });
    b.addEventListener("click", async () => {
      const answer = await tell(message, () => api("/api/webext", { name: x.name, allow }));
      if (!answer) return;
      await webExtensions();
      document.getElementById("message").textContent = answer.done;
    });
    tr.append(el("td", {}, b));
    body.append(tr);
  }
  table.append(el("caption", { text: "Which ISAPI modules and CGI programs may run (others answer 404.2)" }),
    el("thead", {}, head), body);
  details.replaceChildren(el("h2", { text: "Web Service Extensions" }), message, table);
}

async function deletePool(what) {
  if (!confirm(`Delete the application pool ${what.name}?`)) return;
  await removed(() => api("/api/pool/delete", { name: what.name }));
}

// A deletion from the details panel: its answer replaces the panel.
async function removed(call) {
  const answer = await tell(document.getElementById("message"), call);
  if (!answer) return;
  document.getElementById("details").replaceChildren(el("h2", { text: answer.done }));
  selected = null;
  await loadTree();
}

async function deleteSite(what, label) {
  if (!confirm(`Delete the site ${label}, with its virtual directories and settings?`)) return;
  await removed(() => api("/api/site/delete", { id: what.id }));
}

async function deleteVdir(what) {
  const answer = await tell(document.getElementById("message"),
    () => api("/api/vdir/delete", { site: what.site, alias: what.alias }));
  if (answer) await loadTree();
}

async function command(what, verb) {
  const target = String(what.kind === "site" ? what.id : what.name);
  await tell(document.getElementById("message"),
    () => api("/api/command", { kind: what.kind, target, command: verb }));
  await loadTree();
  await refresh();
}

const points = [];
let last = null;
// Per site ("site:ID") and per pool ("pool:NAME"): the rates drawn for
// the selected one.
const history = new Map();

function record(key, rate) {
  const list = history.get(key) || [];
  list.push(rate);
  if (list.length > 60) list.shift();
  history.set(key, list);
}

function drawNode() {
  const canvas = document.getElementById("node-graph");
  if (canvas) draw(canvas, history.get(canvas.dataset.series) || []);
}
// Each worker's CPU seconds at the last refresh, for its CPU %.
let cpuBefore = new Map();

async function refresh() {
  const s = await api("/api/stats");
  const now = performance.now();
  if (last) {
    const dt = Math.max(0.001, (now - last.t) / 1000);
    const rps = Math.max(0, (s.requests - last.s.requests) / dt);
    const sent = Math.max(0, (s.bytes_sent - last.s.bytes_sent) / dt / 1024);
    points.push(rps);
    if (points.length > 60) points.shift();
    const rate = (now_, before_) => Math.max(0, (now_ - before_) / dt);
    for (const site of s.sites) {
      const was = last.s.sites.find((x) => x.id === site.id);
      if (was) record(`site:${site.id}`, rate(site.requests, was.requests));
    }
    for (const pool of s.pools) {
      const was = last.s.pools.find((x) => x.name === pool.name);
      if (was) record(`pool:${pool.name}`, rate(pool.arrivals, was.arrivals));
    }
    drawNode();
    document.getElementById("rates").textContent =
      `${rps.toFixed(1)} requests/s · ${sent.toFixed(1)} KB/s sent · ${s.connections} connections · ${s.rejected} rejected (503)`;
    draw(document.getElementById("graph"), points);
  }
  last = { t: now, s };
  const tbody = document.querySelector("#workers tbody");
  tbody.replaceChildren();
  const cpuNow = new Map();
  for (const p of s.pools) {
    for (const w of p.workers) {
      const tr = el("tr", { "data-pool": p.name, "data-pid": String(w.pid) });
      let cpu = "";
      if (w.cpu_seconds !== null) {
        cpuNow.set(w.pid, { seconds: w.cpu_seconds, t: now });
        const before = cpuBefore.get(w.pid);
        if (before) {
          const share = (w.cpu_seconds - before.seconds) / Math.max(0.001, (now - before.t) / 1000);
          cpu = `${Math.max(0, share * 100).toFixed(1)} %`;
        }
      }
      const memory = w.memory_bytes === null ? "" : `${(w.memory_bytes / 1048576).toFixed(1)} MB`;
      for (const v of [p.name, w.pid, w.active, w.requests, cpu, memory]) tr.append(el("td", { text: String(v) }));
      tbody.append(tr);
    }
  }
  cpuBefore = cpuNow;
  const queues = document.querySelector("#queues tbody");
  queues.replaceChildren();
  for (const p of s.pools) {
    const tr = el("tr", { "data-pool": p.name });
    for (const v of [p.name, p.state, p.queue, p.rejected]) tr.append(el("td", { text: String(v) }));
    queues.append(tr);
  }
}

function draw(c, points) {
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...points);
  g.strokeStyle = "#1f5fa8";
  g.lineWidth = 2;
  g.beginPath();
  points.forEach((v, i) => {
    const x = (i * c.width) / 59;
    const y = c.height - 10 - (v / max) * (c.height - 20);
    if (i) g.lineTo(x, y);
    else g.moveTo(x, y);
  });
  g.stroke();
  g.fillStyle = "#555";
  g.font = "12px system-ui, sans-serif";
  g.fillText(`most: ${max.toFixed(1)}/s`, 6, 14);
  // The latest value, for whoever reads the page without seeing it.
  c.dataset.latest = points.length ? points[points.length - 1].toFixed(1) : "0";
  const what = c.dataset.series ? "This one's requests per second" : "Requests per second";
  c.setAttribute("aria-label", `${what}, the last two minutes; now ${c.dataset.latest}`);
}

loadTree();
refresh();
setInterval(refresh, 2000);
