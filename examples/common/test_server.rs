//! The test server's protocols and command line, shared by `test-server` (wsreactor's own
//! loop) and `test-server-extpoll` (a `poll(2)` loop of the program's own).
//!
//! | protocol | what |
//! | --- | --- |
//! | `http-only` | the first protocol: HTTP requests, left to the built-in file server (and, with an external loop, the poll array) |
//! | `dumb-increment-protocol` | a text counter every 50 ms, from 0 per connection; `reset\n` sets it to 0 |
//! | `lws-mirror-protocol` | every message goes to every client of the same room (`?mirror=NAME`), through the room's topic: each member's queue bounded (1 MiB), the oldest skipped for a member that does not read |
//! | `lws-status` | a JSON list of the live WebSocket connections when a watcher joins, then at most every 500 ms what changed (`added`, `removed`) and the server's `stats` |
//! | `echo` | echoes each message |

use crate::extpoll::{self, PollArray};
use crate::serve;
use crate::tls;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wsreactor::{
    Close, ConnId, Context, Protocol, ProtocolContext, ProtocolEvent, ProtocolId, Reason, SlowPolicy,
    TopicOptions, WriteProtocol, Wsi,
};

/// The topic lws-status watchers subscribe to.
const STATUS_TOPIC: &str = "lws-status";
/// Status updates go out at most this often, carrying what changed since the last one.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// The whole list a new watcher gets is cut at this many entries.
const STATUS_MAX_LIST: usize = 1000;

/// What `lws-status` reports: the live WebSocket connections, shared by all protocols as
/// the context's user value. Changes are collected between updates.
#[derive(Default)]
struct Registry {
    live: BTreeMap<ConnId, (String, &'static str, u128)>,
    added: Vec<ConnId>,
    removed: Vec<ConnId>,
    /// 50 ms ticks since the last status update.
    ticks: u32,
}

impl Registry {
    fn entry_json(out: &mut String, id: ConnId, (peer, proto, since): &(String, &'static str, u128)) {
        let _ = write!(
            out,
            "{{\"id\":\"{}\",\"peer\":\"{peer}\",\"protocol\":\"{proto}\",\"since\":{since}}}",
            id.as_u64()
        );
    }

    /// The whole list, for a watcher that just joined.
    fn full_json(&self) -> String {
        let mut json = String::from("{\"connections\":[");
        for (i, (id, e)) in self.live.iter().take(STATUS_MAX_LIST).enumerate() {
            if i > 0 {
                json.push(',');
            }
            Self::entry_json(&mut json, *id, e);
        }
        let _ = write!(json, "],\"total\":{}}}", self.live.len());
        json
    }

    /// What changed since the last call, and the server's statistics; clears the changes.
    fn delta_json(&mut self, stats: &wsreactor::Stats) -> String {
        let mut json = String::from("{\"added\":[");
        let mut first = true;
        for id in self.added.drain(..) {
            if let Some(e) = self.live.get(&id) {
                if !first {
                    json.push(',');
                }
                first = false;
                Self::entry_json(&mut json, id, e);
            }
        }
        json.push_str("],\"removed\":[");
        for (i, id) in self.removed.drain(..).enumerate() {
            if i > 0 {
                json.push(',');
            }
            let _ = write!(json, "\"{}\"", id.as_u64());
        }
        let _ = write!(json, "],\"stats\":{}}}", stats_json(stats));
        json
    }
}

fn stats_json(s: &wsreactor::Stats) -> String {
    format!(
        "{{\"http\":{},\"websocket\":{},\"closing\":{},\"topics\":{},\"accepted\":{},\"handshakes\":{},\
         \"refused\":{},\"bytes_in\":{},\"bytes_out\":{},\"messages_in\":{},\"messages_out\":{},\
         \"closed_by_peer\":{},\"closed_by_us\":{},\"closed_protocol_error\":{},\"closed_panic\":{},\
         \"closed_slow\":{},\"dropped\":{},\"timeouts\":{}}}",
        s.http,
        s.websocket,
        s.closing,
        s.topics,
        s.accepted,
        s.handshakes,
        s.refused,
        s.bytes_in,
        s.bytes_out,
        s.messages_in,
        s.messages_out,
        s.closed_by_peer,
        s.closed_by_us,
        s.closed_protocol_error,
        s.closed_panic,
        s.closed_slow,
        s.dropped,
        s.timeouts
    )
}

/// Keeps the registry up to date from any protocol's callback.
fn track(wsi: &mut Wsi<'_>, reason: &Reason<'_>, name: &'static str) {
    let id = wsi.id();
    let peer = matches!(reason, Reason::Established).then(|| wsi.peer_addr().to_string());
    let Some(r) = wsi.user_mut::<Registry>() else {
        return;
    };
    match reason {
        Reason::Established => {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            r.live.insert(id, (peer.unwrap_or_default(), name, since));
            r.added.push(id);
        }
        Reason::Closed { .. } if r.live.remove(&id).is_some() => {
            // One that came and went between two updates is no news.
            match r.added.iter().position(|&a| a == id) {
                Some(i) => {
                    r.added.swap_remove(i);
                }
                None => r.removed.push(id),
            }
        }
        _ => {}
    }
}

/// The first protocol: plain HTTP. `/` is answered here with `test.html`, as in
/// libwebsockets' test server; doing nothing leaves a request to the built-in file server.
/// With an external poll loop it also keeps the loop's poll array.
struct HttpOnly {
    root: std::path::PathBuf,
    poll: Option<PollArray>,
}

impl Protocol for HttpOnly {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        if let Reason::Http { uri } = reason {
            log::info!("{}: {uri}", wsi.peer_addr());
            if uri == "/" || uri.starts_with("/?") {
                wsi.serve_http_file(self.root.join("test.html"), "text/html; charset=utf-8", &[])?;
            }
        }
        Ok(())
    }

    fn protocol_callback(&mut self, _: &mut ProtocolContext<'_>, event: ProtocolEvent) -> Result<(), Close> {
        if let Some(fds) = &self.poll {
            extpoll::track(fds, event);
        }
        Ok(())
    }
}

/// `dumb-increment-protocol`.
struct DumbIncrement {
    close_test: bool,
}

impl Protocol for DumbIncrement {
    type Session = u32;
    fn callback(&mut self, wsi: &mut Wsi<'_>, number: &mut u32, reason: Reason<'_>) -> Result<(), Close> {
        track(wsi, &reason, "dumb-increment-protocol");
        match reason {
            Reason::Established => *number = 0,
            Reason::ServerWriteable => {
                if self.close_test && *number == 50 {
                    log::info!("close test: closing after 50 messages");
                    return Err(Close::new(1001, "seeya"));
                }
                wsi.send_text(&number.to_string())?;
                *number += 1;
            }
            Reason::Receive { data, .. } if data == b"reset\n" => *number = 0,
            _ => {}
        }
        Ok(())
    }
}

/// Largest mirrored message.
const MAX_MIRROR_MESSAGE: usize = 4 << 20;

/// Each mirror room is a topic: a member's queue holds at most this much of it (besides a
/// message larger than that, alone); past it the oldest are skipped for that member, so a
/// member that does not read holds neither the room nor more memory than this.
const MIRROR_TOPIC: TopicOptions = TopicOptions {
    max_queued: 1 << 20,
    policy: SlowPolicy::DropOldest,
};

#[derive(Default)]
struct MirrorSession {
    topic: String,
    partial: Vec<u8>,
}

/// `lws-mirror-protocol`: relays each whole message to every client of its room
/// (`?mirror=NAME`, the sender included), through the room's topic.
struct Mirror;

impl Protocol for Mirror {
    type Session = MirrorSession;
    fn callback(
        &mut self,
        wsi: &mut Wsi<'_>,
        s: &mut MirrorSession,
        reason: Reason<'_>,
    ) -> Result<(), Close> {
        track(wsi, &reason, "lws-mirror-protocol");
        match reason {
            Reason::Established => {
                s.topic = format!("mirror:{}", wsi.urlarg("mirror").unwrap_or_default());
                wsi.subscribe_with(&s.topic, MIRROR_TOPIC);
            }
            Reason::Receive {
                data, binary, last, ..
            } => {
                if s.partial.len() + data.len() > MAX_MIRROR_MESSAGE {
                    return Err(Close::new(1009, "mirror message too big"));
                }
                s.partial.extend_from_slice(data);
                if last {
                    let msg = std::mem::take(&mut s.partial);
                    wsi.publish(&s.topic, &msg, binary);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `lws-status`: the live connections as JSON: the whole list to a watcher when it
/// joins, then (from the main loop, through a topic) what changed, at most every
/// `STATUS_EVERY`, with the server's statistics.
struct Status;

impl Protocol for Status {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        track(wsi, &reason, "lws-status");
        if let Reason::Established = reason {
            let full = wsi
                .user::<Registry>()
                .map(Registry::full_json)
                .unwrap_or_default();
            wsi.send_text(&full)?;
            wsi.subscribe(STATUS_TOPIC);
        }
        Ok(())
    }
}

/// `echo`.
struct Echo;

impl Protocol for Echo {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        track(wsi, &reason, "echo");
        if let Reason::Receive {
            data,
            binary,
            first,
            last,
            ..
        } = reason
        {
            let wp = match (first, binary) {
                (false, _) => WriteProtocol::Continuation,
                (true, false) => WriteProtocol::Text,
                (true, true) => WriteProtocol::Binary,
            };
            wsi.write_fragment(data, wp, last)?;
        }
        Ok(())
    }
}

/// The command line of the test servers.
pub struct Args {
    pub port: u16,
    pub interface: Option<String>,
    pub resource_path: String,
    pub close_test: bool,
    /// Offer permessage-deflate (default, as libwebsockets' test server); `--no-deflate`.
    pub deflate: bool,
    pub level: log::LevelFilter,
    pub tls: tls::TlsArgs,
    pub live: serve::LiveArgs,
    /// `--redis URL`: mirror rooms span every test server on that Redis (feature `redis`).
    pub redis: Option<String>,
}

impl Args {
    /// Parses the command line of the program `name`; prints the usage and exits for
    /// `--help` or a wrong argument.
    pub fn parse(name: &str) -> Args {
        let mut a = Args {
            port: 7681,
            interface: None,
            resource_path: String::from("www"),
            close_test: false,
            deflate: true,
            level: log::LevelFilter::Info,
            tls: tls::TlsArgs::default(),
            live: serve::LiveArgs::default(),
            redis: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if a.tls.take(&arg, &mut args) || a.live.take(&arg, &mut args) {
                continue;
            }
            match arg.as_str() {
                "--port" | "-p" => a.port = args.next().and_then(|v| v.parse().ok()).expect("--port N"),
                "--interface" | "-i" => a.interface = args.next(),
                "--resource-path" | "-r" => a.resource_path = args.next().expect("--resource-path DIR"),
                "--closetest" | "-c" => a.close_test = true,
                "--no-deflate" => a.deflate = false,
                "--redis" => a.redis = Some(args.next().expect("--redis redis://HOST:PORT/")),
                "-d" | "--debug" => {
                    a.level =
                        wsreactor::lws_log_level(args.next().and_then(|v| v.parse().ok()).expect("-d MASK"))
                }
                "-h" | "--help" => {
                    println!(
                        "usage: {name} [--port 7681] [--interface ADDR|IFACE] [--resource-path www] [--closetest] [--no-deflate] [--redis URL] [-d LWS_LOG_MASK] {} {}",
                        tls::USAGE,
                        serve::USAGE
                    );
                    std::process::exit(0);
                }
                other => {
                    eprintln!("{name}: unknown argument {other}");
                    std::process::exit(2);
                }
            }
        }
        env_logger::Builder::new().filter_level(a.level).init();
        a
    }
}

/// A test server's context: the five protocols on the port of `args`; with `poll`, built
/// for that external loop's array.
pub struct TestServer {
    pub ctx: Context,
    /// `dumb-increment-protocol`, for the main loop's 50 ms tick.
    pub dumb: ProtocolId,
}

impl TestServer {
    pub fn build(args: &Args, poll: Option<PollArray>) -> std::io::Result<TestServer> {
        let mut b = Context::builder()
            .port(args.port)
            .resource_path(&args.resource_path)
            .user(Registry::default())
            .protocol(
                "http-only",
                HttpOnly {
                    root: args.resource_path.clone().into(),
                    poll: poll.clone(),
                },
            )
            .protocol(
                "dumb-increment-protocol",
                DumbIncrement {
                    close_test: args.close_test,
                },
            )
            .protocol("lws-mirror-protocol", Mirror)
            .protocol("lws-status", Status)
            .protocol("echo", Echo);
        if let Some(i) = &args.interface {
            b = b.interface(i);
        }
        if poll.is_some() {
            b = b.external_poll();
        }
        if args.deflate {
            b = b.permessage_deflate(wsreactor::proto::deflate::DeflateOptions::default());
        }
        if let Some(url) = &args.redis {
            b = with_redis(b, url)?;
        }
        let ctx = args.tls.apply(args.live.apply(b)).build()?;
        let dumb = ctx
            .protocol_by_name("dumb-increment-protocol")
            .expect("registered");
        log::info!(
            "wsreactor {} test server on {}://{} serving {}",
            wsreactor::version(),
            args.tls.scheme(),
            ctx.local_addr().expect("listening"),
            args.resource_path
        );
        Ok(TestServer { ctx, dumb })
    }
}

/// Mirror rooms across processes through Redis; lws-status stays per process (it lists
/// this server's connections).
#[cfg(feature = "redis")]
fn with_redis(b: wsreactor::ContextBuilder, url: &str) -> std::io::Result<wsreactor::ContextBuilder> {
    let cfg = wsreactor::backplane::LinkConfig {
        bridged: |topic| topic.starts_with("mirror:"),
        ..Default::default()
    };
    log::info!("mirror rooms shared through {url}");
    Ok(b.redis(url, cfg))
}

#[cfg(not(feature = "redis"))]
fn with_redis(_: wsreactor::ContextBuilder, _: &str) -> std::io::Result<wsreactor::ContextBuilder> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "--redis: built without the redis feature (cargo build --features redis)",
    ))
}

/// The main loop's 50 ms tick: the dumb-increment counters, and every `STATUS_EVERY` the
/// lws-status update (what changed, and the statistics) to the watchers' topic.
pub fn tick(ctx: &mut Context, dumb: ProtocolId) {
    ctx.callback_on_writable_all_protocol(dumb);
    let stats = ctx.stats();
    let watched = ctx.num_subscribers(STATUS_TOPIC) > 0;
    let reg = ctx.user_mut::<Registry>().expect("set at build");
    reg.ticks += 1;
    if u128::from(reg.ticks) * 50 < STATUS_EVERY.as_millis() {
        return;
    }
    reg.ticks = 0;
    if watched {
        let delta = reg.delta_json(&stats);
        ctx.publish(STATUS_TOPIC, delta.as_bytes(), false);
    } else {
        // Nobody to tell: a watcher that joins gets the whole list anyway.
        reg.added.clear();
        reg.removed.clear();
    }
}
