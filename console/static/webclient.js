// Aerie console web client: a minimal MQTT 5 client over WebSocket
// (subprotocol "mqtt"), written for this page: CONNECT with a device token,
// SUBSCRIBE (at most QoS 1), PUBLISH QoS 0/1, incoming PUBLISH (QoS 0/1),
// PINGREQ. Refusals
// are shown with their MQTT 5 reason code and name.
(function () {
  var root = document.querySelector("[data-webclient]");
  if (!root) return;
  var $ = function (n) { return root.querySelector('[data-wc="' + n + '"]'); };
  var enc = new TextEncoder(), dec = new TextDecoder();
  var REASONS = { 0: "success", 1: "granted QoS 1", 2: "granted QoS 2", 0x80: "unspecified error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8a: "banned", 0x8c: "bad authentication method",
    0x8f: "topic filter invalid", 0x90: "topic name invalid", 0x91: "packet identifier in use", 0x97: "quota exceeded",
    0x98: "administrative action", 0x99: "payload format invalid", 0x9e: "shared subscriptions not supported", 0x10: "no matching subscribers" };
  var reason = function (c) { return "0x" + ("0" + c.toString(16)).slice(-2) + " " + (REASONS[c] || "refused"); };
  var ws = null, nextID = 1, pending = {}, ping = null, buf = new Uint8Array(0);

  function log(text, cls) {
    var li = document.createElement("li");
    li.textContent = new Date().toISOString().slice(11, 19) + "  " + text;
    if (cls) li.className = cls;
    var l = $("log"); l.insertBefore(li, l.firstChild);
    while (l.children.length > 200) l.removeChild(l.lastChild);
  }
  function state(s) {
    $("state").textContent = s;
    $("connect").disabled = s !== "disconnected";
    $("disconnect").disabled = s === "disconnected";
  }
  // Encoding.
  function varint(n) { var out = []; do { var b = n % 128; n = Math.floor(n / 128); if (n > 0) b |= 128; out.push(b); } while (n > 0); return out; }
  function str(s) { var b = enc.encode(s); return [b.length >> 8, b.length & 255].concat(Array.from(b)); }
  function packet(type, flags, body) { return new Uint8Array([(type << 4) | flags].concat(varint(body.length), body)); }
  function send(p) { if (ws && ws.readyState === 1) ws.send(p); }
  function id() { var i = nextID; nextID = nextID % 65535 + 1; return i; }

  function connect() {
    state("connecting");
    var csrf = root.getAttribute("data-csrf");
    fetch(root.getAttribute("data-webclient"), { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } })
      .then(function (r) { if (!r.ok) throw new Error("token refused (" + r.status + ")"); return r.json(); })
      .then(function (t) {
        ws = new WebSocket(t.url, "mqtt");
        ws.binaryType = "arraybuffer";
        ws.onopen = function () {
          // CONNECT: "MQTT", v5, flags user+password+clean start, keepalive 30 s, no properties.
          var body = str("MQTT").concat([5, 0xc2, 0, 30, 0], str(t.client_id), str(t.username), str(t.password));
          send(packet(1, 0, body));
        };
        ws.onmessage = function (e) { read(new Uint8Array(e.data)); };
        ws.onclose = function () { closed("connection closed"); };
        ws.onerror = function () { log("WebSocket error", "err"); };
      })
      .catch(function (err) { log(String(err.message || err), "err"); state("disconnected"); });
  }
  function closed(why) {
    if (ping) clearInterval(ping);
    ping = null; ws = null; pending = {};
    if ($("state").textContent !== "disconnected") log(why);
    state("disconnected");
  }
  // Decoding: packets may span or share WebSocket messages.
  function read(chunk) {
    var b = new Uint8Array(buf.length + chunk.length); b.set(buf); b.set(chunk, buf.length); buf = b;
    for (;;) {
      if (buf.length < 2) return;
      var len = 0, mul = 1, i = 1, byte;
      do { if (i >= buf.length) return; byte = buf[i++]; len += (byte & 127) * mul; mul *= 128; } while (byte & 128);
      if (buf.length < i + len) return;
      handle(buf[0] >> 4, buf[0] & 15, buf.subarray(i, i + len));
      buf = buf.slice(i + len);
    }
  }
  function u16(b, o) { return (b[o] << 8) | b[o + 1]; }
  function skipProps(b, o) { var len = 0, mul = 1, byte; do { byte = b[o++]; len += (byte & 127) * mul; mul *= 128; } while (byte & 128); return o + len; }
  function handle(type, flags, b) {
    switch (type) {
      case 2: // CONNACK
        if (b[1] === 0) {
          state("connected"); log("connected");
          ping = setInterval(function () { send(new Uint8Array([0xc0, 0])); }, 25000);
        } else { log("connection refused: " + reason(b[1]), "err"); }
        break;
      case 3: { // PUBLISH
        var qos = (flags >> 1) & 3, tl = u16(b, 0), topic = dec.decode(b.subarray(2, 2 + tl)), o = 2 + tl, pid = 0;
        if (qos > 0) { pid = u16(b, o); o += 2; }
        o = skipProps(b, o);
        log(topic + "  " + dec.decode(b.subarray(o)) + ((flags & 1) ? "  (retained)" : ""), "msg");
        if (qos === 1) send(packet(4, 0, [pid >> 8, pid & 255]));
        break;
      }
      case 4: { // PUBACK
        var p = pending[u16(b, 0)]; delete pending[u16(b, 0)];
        var rc = b.length > 2 ? b[2] : 0;
        if (rc >= 0x80) log("publish to " + p + " refused: " + reason(rc), "err");
        else log("published to " + p + (rc === 0x10 ? " (no subscriber)" : ""));
        break;
      }
      case 9: { // SUBACK
        var f = pending[u16(b, 0)]; delete pending[u16(b, 0)];
        var codes = b.subarray(skipProps(b, 2));
        codes.forEach(function (c) {
          if (c >= 0x80) log("subscription to " + f + " refused: " + reason(c), "err");
          else log("subscribed to " + f + " (QoS " + c + ")");
        });
        break;
      }
      case 14: { // DISCONNECT from the server
        closed("disconnected by the server: " + reason(b.length ? b[0] : 0));
        break;
      }
    }
  }

  $("connect").addEventListener("click", connect);
  $("disconnect").addEventListener("click", function () { send(new Uint8Array([0xe0, 0])); if (ws) ws.close(); closed("disconnected"); });
  $("subscribe-form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (!ws) { log("connect first", "err"); return; }
    var f = e.target.filter.value.trim(), i = id();
    pending[i] = f;
    send(packet(8, 2, [i >> 8, i & 255, 0].concat(str(f), [1])));
  });
  $("publish-form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (!ws) { log("connect first", "err"); return; }
    var t = e.target.topic.value.trim(), qos = parseInt(e.target.qos.value, 10), body = str(t);
    if (qos > 0) { var i = id(); pending[i] = t; body = body.concat([i >> 8, i & 255]); }
    body = body.concat([0], Array.from(enc.encode(e.target.payload.value)));
    send(packet(3, (qos << 1) | (e.target.retain.checked ? 1 : 0), body));
    if (qos === 0) log("published to " + t + " (QoS 0)");
  });
})();
