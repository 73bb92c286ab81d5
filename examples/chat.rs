//! A chat server: the recipe for an application on wsreactor's topics.
//!
//! ```text
//! cargo run --release --example chat -- [--port 7682] [--interface ADDR]
//! cargo run --release --features redis --example chat -- --port 7683 --redis redis://127.0.0.1:6379/
//! ```
//!
//! Open http://localhost:7682/lobby (any room name instead of `lobby`) in two browser
//! windows. The page is served from memory; it opens `ws://HOST/ROOM?nick=NAME` with the
//! `chat` sub-protocol. Everything said in a room goes to everyone in it, through the room's
//! topic (framed once, shared by all members); the member count is pushed to the room on
//! every join and leave; `/nick NAME` renames. Each member's queue is bounded (64 KiB): a
//! member that does not read skips the oldest lines and is told how many it missed.
//!
//! Messages to the page are JSON: `{"type":"join"|"leave","nick":…,"users":N}`,
//! `{"type":"msg","nick":…,"text":…}`, `{"type":"nick","old":…,"new":…}`,
//! `{"type":"missed","count":N}`.
//!
//! With `--redis URL` (feature `redis`) the rooms span every chat server on that Redis:
//! what is said in a room reaches its members on all of them (room topics `room:NAME` go
//! through the backplane). **Member counts are per server**: a server knows its own
//! members only, so joins and leaves cross servers without a count
//! (`{"type":"join"|"leave","nick":…}`), and each server tells its own members the count
//! of members it has, `{"type":"users","users":N}`, on a topic of its own (`here:NAME`,
//! kept out of the backplane) after each join and leave there.

use std::time::Duration;
use wsreactor::{Close, Context, ContextBuilder, Protocol, Reason, SlowPolicy, TopicOptions, Wsi};

/// The page, served from memory for `/` and `/ROOM`.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>wsreactor chat</title>
<style>
body { font: 15px system-ui, sans-serif; margin: 2em auto; max-width: 42em; }
#log { border: 1px solid #ccc; height: 24em; overflow-y: auto; padding: .5em; }
#log p { margin: .2em 0; } .sys { color: #777; } #users { float: right; color: #555; }
form { display: flex; gap: .5em; margin-top: .5em; } #text { flex: 1; }
</style></head>
<body>
<h1>Room <span id="room"></span> <span id="users"></span></h1>
<div id="log"></div>
<form id="f"><input id="text" autocomplete="off" placeholder="say something, or /nick NAME"><button>send</button></form>
<script>
var room = decodeURIComponent(location.pathname.slice(1)) || "lobby";
var nick = sessionStorage.nick || (sessionStorage.nick = "guest" + Math.floor(Math.random() * 1000));
document.getElementById("room").textContent = room;
var log = document.getElementById("log");
function line(text, cls) {
  var p = document.createElement("p"); p.textContent = text; if (cls) p.className = cls;
  log.appendChild(p); log.scrollTop = log.scrollHeight;
}
var scheme = location.protocol === "https:" ? "wss://" : "ws://";
var ws = new WebSocket(scheme + location.host + "/" + encodeURIComponent(room) +
                       "?nick=" + encodeURIComponent(nick), "chat");
ws.onmessage = function (e) {
  var m = JSON.parse(e.data);
  if (m.users !== undefined) document.getElementById("users").textContent = m.users + " here";
  if (m.type === "msg") line(m.nick + ": " + m.text);
  else if (m.type === "join") line(m.nick + " joined", "sys");
  else if (m.type === "leave") line(m.nick + " left", "sys");
  else if (m.type === "nick") { line(m.old + " is now " + m["new"], "sys"); }
  else if (m.type === "missed") line("(" + m.count + " lines missed)", "sys");
};
ws.onclose = function () { line("disconnected", "sys"); };
document.getElementById("f").onsubmit = function (e) {
  e.preventDefault();
  var t = document.getElementById("text");
  if (t.value) {
    var nn = /^\/nick (.+)$/.exec(t.value);
    if (nn) sessionStorage.nick = nn[1];
    ws.send(t.value);
  }
  t.value = "";
};
</script></body></html>
"#;

/// Longest line a member may send.
const MAX_LINE: usize = 4096;
/// Longest nickname.
const MAX_NICK: usize = 32;

/// A room's topic: a member's queue holds at most 64 KiB of it; beyond, the oldest lines
/// are skipped for that member (and it is told).
const ROOM_TOPIC: TopicOptions = TopicOptions {
    max_queued: 64 << 10,
    policy: SlowPolicy::DropOldest,
};

/// The first protocol: HTTP. Serves the page for `/` and any `/ROOM`; 404 for anything
/// else (a path with a dot or a second slash).
struct Page;

impl Protocol for Page {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        if let Reason::Http { uri } = reason {
            let path = uri.split('?').next().unwrap_or("");
            if room_name(path).is_some() {
                // `respond` handles HEAD, Content-Length and keep-alive
                wsi.respond(200, "text/html; charset=utf-8", PAGE.as_bytes(), &[])?;
            } else {
                wsi.respond(404, "text/plain", b"no such page\n", &[])?;
            }
        }
        Ok(())
    }
}

/// The room a path names: `/` is `lobby`; `/NAME` with 1 to 32 letters, digits, `-`, `_`.
fn room_name(path: &str) -> Option<String> {
    let name = path.strip_prefix('/')?;
    let name = if name.is_empty() { "lobby" } else { name };
    (name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| name.to_owned())
}

/// A member of a room.
#[derive(Default)]
pub struct Member {
    topic: String,
    nick: String,
}

/// `chat`: rooms as topics.
pub struct Chat {
    guests: u64,
    /// The rooms span servers (`--redis`): counts go on the per-server topic.
    spanning: bool,
}

impl Chat {
    /// Publishes a join or leave, with the member count as the protocol has it.
    fn announce(&self, wsi: &mut Wsi<'_>, m: &Member, kind: &str) {
        let users = wsi.num_subscribers(&m.topic);
        let nick = json(&m.nick);
        if self.spanning {
            let msg = format!(r#"{{"type":"{kind}","nick":{nick}}}"#);
            wsi.publish(&m.topic, msg.as_bytes(), false);
            let count = format!(r#"{{"type":"users","users":{users}}}"#);
            wsi.publish(&here_topic(&m.topic), count.as_bytes(), false);
        } else {
            let msg = format!(r#"{{"type":"{kind}","nick":{nick},"users":{users}}}"#);
            wsi.publish(&m.topic, msg.as_bytes(), false);
        }
    }
}

/// The per-server topic of a room (`room:NAME` → `here:NAME`): member counts.
fn here_topic(room_topic: &str) -> String {
    format!("here:{}", room_topic.strip_prefix("room:").unwrap_or(room_topic))
}

/// JSON string literal of `s`.
fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn clean_nick(n: &str) -> Option<String> {
    let n = n.trim();
    (!n.is_empty() && n.len() <= MAX_NICK && !n.chars().any(char::is_control)).then(|| n.to_owned())
}

impl Protocol for Chat {
    type Session = Member;
    fn callback(&mut self, wsi: &mut Wsi<'_>, m: &mut Member, reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::FilterProtocolConnection => {
                let path = wsi.uri().unwrap_or("").split('?').next().unwrap_or("");
                let Some(room) = room_name(path) else {
                    return Err(Close::http_status(
                        400,
                        "room names are 1 to 32 letters, digits, - or _",
                    ));
                };
                m.topic = format!("room:{room}");
                m.nick = match wsi.urlarg("nick") {
                    Some(n) => clean_nick(&n).ok_or_else(|| Close::http_status(400, "bad nickname"))?,
                    None => {
                        self.guests += 1;
                        format!("guest{}", self.guests)
                    }
                };
            }
            Reason::Established => {
                wsi.subscribe_with(&m.topic, ROOM_TOPIC);
                if self.spanning {
                    wsi.subscribe_with(&here_topic(&m.topic), ROOM_TOPIC);
                }
                self.announce(wsi, m, "join");
            }
            Reason::Receive {
                data,
                binary: false,
                first: true,
                last: true,
                ..
            } => {
                if data.len() > MAX_LINE {
                    return Err(Close::new(1009, "line too long"));
                }
                let text = std::str::from_utf8(data)?;
                let msg = match text.strip_prefix("/nick ") {
                    Some(new) => {
                        let Some(new) = clean_nick(new) else {
                            return Ok(());
                        };
                        let old = std::mem::replace(&mut m.nick, new);
                        format!(
                            r#"{{"type":"nick","old":{},"new":{}}}"#,
                            json(&old),
                            json(&m.nick)
                        )
                    }
                    None => format!(
                        r#"{{"type":"msg","nick":{},"text":{}}}"#,
                        json(&m.nick),
                        json(text)
                    ),
                };
                wsi.publish(&m.topic, msg.as_bytes(), false);
            }
            Reason::Receive { .. } => return Err(Close::new(1003, "one text line per message")),
            Reason::TopicMissed { missed, .. } => {
                wsi.send_text(&format!(r#"{{"type":"missed","count":{missed}}}"#))?;
            }
            // leaving the topic first, so that the count is of those who stay
            Reason::Closed { .. } if wsi.unsubscribe(&m.topic) => {
                if self.spanning {
                    wsi.unsubscribe(&here_topic(&m.topic));
                }
                self.announce(wsi, m, "leave");
            }
            _ => {}
        }
        Ok(())
    }
}

/// The chat server's protocols on `b`.
pub fn configure(b: ContextBuilder) -> ContextBuilder {
    b.protocol("http", Page).protocol(
        "chat",
        Chat {
            guests: 0,
            spanning: false,
        },
    )
}

/// The chat server's protocols on `b`, its rooms spanning every chat server on the Redis
/// at `url`; member counts stay per server (see the module's documentation).
#[cfg(feature = "redis")]
pub fn configure_redis(b: ContextBuilder, url: &str) -> ContextBuilder {
    let cfg = wsreactor::backplane::LinkConfig {
        bridged: |topic| topic.starts_with("room:"),
        ..Default::default()
    };
    b.protocol("http", Page)
        .protocol(
            "chat",
            Chat {
                guests: 0,
                spanning: true,
            },
        )
        .redis(url, cfg)
}

fn main() -> std::io::Result<()> {
    let mut port = 7682u16;
    let mut interface = None;
    let mut redis: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" | "-p" => port = args.next().and_then(|v| v.parse().ok()).expect("--port N"),
            "--interface" | "-i" => interface = args.next(),
            "--redis" => redis = Some(args.next().expect("--redis redis://HOST:PORT/")),
            "-h" | "--help" => {
                println!("usage: chat [--port 7682] [--interface ADDR] [--redis URL]");
                return Ok(());
            }
            other => {
                eprintln!("chat: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .init();
    let mut b = Context::builder().port(port);
    b = match &redis {
        None => configure(b),
        #[cfg(feature = "redis")]
        Some(url) => {
            log::info!("rooms shared through {url}; member counts are per server");
            configure_redis(b, url)
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            eprintln!("chat: --redis needs the redis feature (cargo run --features redis --example chat)");
            std::process::exit(2);
        }
    };
    if let Some(i) = &interface {
        b = b.interface(i);
    }
    let mut ctx = b.build()?;
    log::info!(
        "chat on http://{}/lobby (any /ROOM)",
        ctx.local_addr().expect("listening")
    );
    loop {
        ctx.service(Duration::from_secs(1))?;
    }
}
