/* wsreactor test page: talks to examples/test-server with the libwebsockets
 * test-server protocols (dumb-increment-protocol, lws-mirror-protocol,
 * lws-status, echo). Plain JS, no dependencies, no build step. */
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }

  var hasWS = typeof window.WebSocket === "function" || typeof window.WebSocket === "object";

  /* ---------- URLs ---------- */

  function wsBase() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var host = location.host || "localhost:7681"; /* file:// fallback */
    return scheme + host + "/";
  }

  function mirrorRoom() {
    var m = null;
    try { m = new URLSearchParams(location.search).get("mirror"); } catch (e) { m = null; }
    return m ? m : "";
  }

  function mirrorUrl() {
    var room = mirrorRoom();
    return room ? wsBase() + "?mirror=" + encodeURIComponent(room) : wsBase();
  }

  /* ---------- browser line ---------- */

  function browserName() {
    var ua = navigator.userAgent || "";
    var rules = [
      [/Edg\/(\d+)/, "Edge"], [/OPR\/(\d+)/, "Opera"], [/HeadlessChrome\/(\d+)/, "Headless Chrome"],
      [/Chrom(?:e|ium)\/(\d+)/, "Chrome"], [/Firefox\/(\d+)/, "Firefox"],
      [/Version\/(\d+)[\d.]* .*Safari/, "Safari"]
    ];
    for (var i = 0; i < rules.length; i++) {
      var m = ua.match(rules[i][0]);
      if (m) return rules[i][1] + " " + m[1];
    }
    return ua || "unknown";
  }

  function showBrowser() {
    var el = $("brow");
    el.textContent = "";
    el.appendChild(document.createTextNode(browserName() + " \u2014 "));
    var s = document.createElement("span");
    s.className = hasWS ? "ok" : "bad";
    s.textContent = hasWS ? "WebSocket supported" : "WebSocket NOT supported";
    el.appendChild(s);
    el.title = navigator.userAgent || "";
  }

  /* ---------- per-protocol status ---------- */

  var channels = {
    wsdi: { proto: "dumb-increment-protocol", buttons: ["reset"] },
    wslm: { proto: "lws-mirror-protocol", buttons: ["circle"] },
    wsst: { proto: "lws-status", buttons: [] },
    wse: { proto: "echo", buttons: ["echo_send"] }
  };

  function setStatus(key, state, detail) {
    $(key + "_status").textContent = state;
    $(key + "_statustd").className = "badge " + state;
    $(key + "_statustd").title = detail || "";
    var dot = $("sum_" + key);
    if (dot) {
      dot.className = "dot " + state;
      $("sum_" + key + "_text").textContent = state + (detail ? " (" + detail + ")" : "");
    }
    var card = $(key + "_card");
    if (card) card.classList.toggle("is-closed", state === "closed");
    if (state === "closed") {
      var banner = $("closed_banner");
      if (banner) banner.hidden = false;
    }
    if (key === "wsst") renderStatus();
    channels[key].buttons.forEach(function (b) { $(b).disabled = state !== "connected"; });
  }

  function open(key, url, onmessage) {
    var ch = channels[key];
    if (!hasWS) { setStatus(key, "closed", "no WebSocket support"); return null; }
    var ws;
    try {
      ws = new WebSocket(url, ch.proto);
    } catch (e) {
      setStatus(key, "closed", String(e && e.message || e));
      return null;
    }
    setStatus(key, "connecting");
    ws.onopen = function () { setStatus(key, "connected"); };
    ws.onclose = function (ev) {
      setStatus(key, "closed", "code " + ev.code + (ev.reason ? ", " + ev.reason : ""));
    };
    ws.onmessage = function (ev) { if (typeof ev.data === "string") onmessage(ev.data); };
    ch.ws = ws;
    return ws;
  }

  function send(key, text) {
    var ws = channels[key].ws;
    if (ws && ws.readyState === 1) { ws.send(text); return true; }
    return false;
  }

  /* ---------- dumb-increment-protocol ---------- */

  function startCounter() {
    open("wsdi", wsBase(), function (data) { $("number").textContent = data; });
    $("reset").addEventListener("click", function () { send("wsdi", "reset\n"); });
  }

  /* ---------- lws-mirror-protocol ---------- */

  var COLOR_RE = /^#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})$/;
  var NUM_RE = /^[-+]?(?:\d+\.?\d*|\.\d+)$/;
  var LIMIT = 100000;

  function num(tok) {
    if (typeof tok !== "string" || !NUM_RE.test(tok)) return NaN;
    var v = parseFloat(tok);
    return Math.abs(v) <= LIMIT ? v : NaN;
  }

  /* Parse one mirror message into a list of valid commands; anything malformed is skipped. */
  function parseMirror(msg) {
    var out = [];
    if (typeof msg !== "string") return out;
    var parts = msg.split(";");
    for (var i = 0; i < parts.length && out.length < 10000; i++) {
      var t = parts[i].trim().split(/\s+/);
      if (!t[0]) continue;
      if (t[0] === "d" && t.length === 6 && COLOR_RE.test(t[1])) {
        var x1 = num(t[2]), y1 = num(t[3]), x2 = num(t[4]), y2 = num(t[5]);
        if (isFinite(x1) && isFinite(y1) && isFinite(x2) && isFinite(y2))
          out.push({ op: "d", color: t[1], x1: x1, y1: y1, x2: x2, y2: y2 });
      } else if (t[0] === "c" && t.length === 5 && COLOR_RE.test(t[1])) {
        var x = num(t[2]), y = num(t[3]), r = num(t[4]);
        if (isFinite(x) && isFinite(y) && isFinite(r) && r > 0)
          out.push({ op: "c", color: t[1], x: x, y: y, r: r });
      }
    }
    return out;
  }

  var canvas, ctx;

  function clearCanvas() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.restore();
  }

  function render(cmds) {
    for (var i = 0; i < cmds.length; i++) {
      var c = cmds[i];
      ctx.strokeStyle = c.color;
      ctx.beginPath();
      if (c.op === "d") {
        ctx.lineWidth = 3;
        ctx.moveTo(c.x1, c.y1);
        ctx.lineTo(c.x2, c.y2);
      } else {
        ctx.lineWidth = 2;
        ctx.arc(c.x, c.y, c.r, 0, 2 * Math.PI);
      }
      ctx.stroke();
    }
  }

  function color() { return $("color").value; }

  function radius() {
    var r = parseInt($("radius").value, 10);
    return isFinite(r) && r > 0 ? Math.min(r, 150) : 20;
  }

  function tool() { return $("tool_circle").checked ? "circle" : "line"; }

  function canvasPoint(ev) {
    var rect = canvas.getBoundingClientRect();
    var x = (ev.clientX - rect.left) * canvas.width / rect.width;
    var y = (ev.clientY - rect.top) * canvas.height / rect.height;
    return { x: Math.round(x), y: Math.round(y) };
  }

  function startMirror() {
    canvas = $("wslm_canvas");
    ctx = canvas.getContext("2d");
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    clearCanvas();

    var room = mirrorRoom();
    $("wslm_room").textContent = room ? "room: " + room : "default room";

    open("wslm", mirrorUrl(), function (data) { render(parseMirror(data)); });

    var last = null, pointer = null;

    canvas.addEventListener("pointerdown", function (ev) {
      if (ev.button !== undefined && ev.button !== 0) return;
      ev.preventDefault();
      var p = canvasPoint(ev);
      if (tool() === "circle") {
        send("wslm", "c " + color() + " " + p.x + " " + p.y + " " + radius() + ";");
        return;
      }
      last = p;
      pointer = ev.pointerId;
      try { canvas.setPointerCapture(ev.pointerId); } catch (e) { /* ignore */ }
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (last === null || ev.pointerId !== pointer) return;
      ev.preventDefault();
      var p = canvasPoint(ev);
      if (p.x === last.x && p.y === last.y) return;
      send("wslm", "d " + color() + " " + last.x + " " + last.y + " " + p.x + " " + p.y + ";");
      last = p;
    });
    function end(ev) {
      if (ev.pointerId !== pointer) return;
      last = null;
      pointer = null;
    }
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("lostpointercapture", end);

    $("circle").addEventListener("click", function () {
      var r = radius();
      var x = Math.round(r + Math.random() * Math.max(1, canvas.width - 2 * r));
      var y = Math.round(r + Math.random() * Math.max(1, canvas.height - 2 * r));
      send("wslm", "c " + color() + " " + x + " " + y + " " + r + ";");
    });
    $("clear").addEventListener("click", clearCanvas);

    function swatch() { $("swatch").style.background = color(); }
    $("color").addEventListener("change", swatch);
    swatch();
  }

  /* ---------- lws-status ---------- */

  var conns = [];

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function fmtTime(ms) {
    var d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function fmtAge(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function statusLive() {
    var ws = channels.wsst.ws;
    return !!ws && ws.readyState === 1;
  }

  function renderStatus() {
    var body = $("ws_status_body");
    var live = statusLive();
    body.textContent = "";
    $("ws_status_note").textContent = live
      ? conns.length + " connection(s) to this server right now"
      : (conns.length ? "last known list of " + conns.length + " connection(s) \u2014 status socket closed"
        : "status socket not connected");
    $("ws_status_list").classList.toggle("stale", !live);
    if (!conns.length) {
      var tr0 = document.createElement("tr");
      tr0.className = "empty";
      cell(tr0, live ? "no connections" : "no data").colSpan = 5;
      body.appendChild(tr0);
      return;
    }
    var now = Date.now();
    conns.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-protocol", c.protocol);
      tr.setAttribute("data-id", String(c.id));
      cell(tr, String(c.id), "mono");
      cell(tr, c.peer, "mono");
      var td = cell(tr, "");
      var tag = document.createElement("span");
      tag.className = "tag p-" + c.protocol.replace(/[^a-z0-9-]/gi, "");
      tag.textContent = c.protocol;
      td.appendChild(tag);
      cell(tr, isFinite(c.since) ? fmtTime(c.since) : "?", "mono");
      cell(tr, isFinite(c.since) ? fmtAge(now - c.since) : "?", "mono age");
      body.appendChild(tr);
    });
  }

  function toConn(c) {
    return {
      id: String(c.id),
      peer: String(c.peer === undefined ? "" : c.peer),
      protocol: String(c.protocol === undefined ? "" : c.protocol),
      since: Number(c.since)
    };
  }

  function isObj(c) { return c && typeof c === "object"; }

  function renderStats(st) {
    var lines = [];
    Object.keys(st).forEach(function (k) { lines.push(k + ": " + String(st[k])); });
    $("ws_stats").textContent = lines.join("\n");
  }

  /* The server sends the whole list once when this socket opens ({"connections": [...]}),
     then, at most a few times a second, what changed ({"added": [...], "removed": [ids]})
     and its statistics ({"stats": {...}}). */
  function onStatus(data) {
    var j;
    try { j = JSON.parse(data); } catch (e) { return; }
    if (!isObj(j)) return;
    if (Array.isArray(j.connections)) conns = j.connections.filter(isObj).map(toConn);
    if (Array.isArray(j.removed)) {
      var gone = {};
      j.removed.forEach(function (id) { gone[String(id)] = true; });
      conns = conns.filter(function (c) { return !gone[c.id]; });
    }
    /* The first update after the whole list can name again connections the list already
       had (they joined between the server's last update and this socket's): keep one. */
    if (Array.isArray(j.added)) {
      var seen = {};
      conns.concat(j.added.filter(isObj).map(toConn)).forEach(function (c) { seen[c.id] = c; });
      conns = Object.keys(seen).map(function (k) { return seen[k]; });
    }
    /* Ids are decimal strings (a 64-bit id does not fit a JS number): by length, then text. */
    conns.sort(function (a, b) {
      return a.id.length - b.id.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    });
    if (isObj(j.stats)) renderStats(j.stats);
    renderStatus();
  }

  function startStatus() {
    open("wsst", wsBase(), onStatus);
    setInterval(function () { if (conns.length && statusLive()) renderStatus(); }, 1000);
  }

  /* ---------- echo ---------- */

  function startEcho() {
    open("wse", wsBase(), function (data) { $("echo_reply").textContent = data; });
    $("echo_form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      send("wse", $("echo_text").value);
    });
  }

  /* ---------- go ---------- */

  $("origin").textContent = location.host || location.protocol;
  showBrowser();
  startCounter();
  startMirror();
  startStatus();
  startEcho();

  /* small hook for tests and debugging */
  window.wsreactorTest = { parseMirror: parseMirror, channels: channels, mirrorUrl: mirrorUrl };
})();
