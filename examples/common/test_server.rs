//! The test server's protocols and command line, shared by `test-server` (wsreactor's own
//! loop) and `test-server-extpoll` (a `poll(2)` loop of the program's own).
//!
//! | protocol | what |
//! | --- | --- |
//! | `http-only` | the first protocol: HTTP requests, left to the built-in file server (and, with an external loop, the poll array) |
//! | `dumb-increment-protocol` | a text counter every 50 ms, from 0 per connection; `reset\n` sets it to 0 |
//! | `lws-mirror-protocol` | every message goes to every client of the same room (`?mirror=NAME`), through a bounded ring with rx flow control for slow clients |
//! | `lws-status` | a JSON list of the live WebSocket connections, sent whenever it changes |
//! | `echo` | echoes each message |

use crate::extpoll::{self, PollArray};
use crate::serve;
use crate::tls;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};
use wsreactor::{
    Close, ConnId, Context, Protocol, ProtocolContext, ProtocolEvent, ProtocolId, Reason, WriteProtocol, Wsi,
};

/// What `lws-status` reports: the live WebSocket connections, shared by all protocols.
#[derive(Default)]
struct Registry {
    live: BTreeMap<ConnId, (String, &'static str, u128)>,
    version: u64,
    status: Option<ProtocolId>,
}

type Shared = Rc<RefCell<Registry>>;

/// Keeps the registry up to date from any protocol's callback.
fn track(reg: &Shared, wsi: &mut Wsi<'_>, reason: &Reason<'_>, name: &'static str) {
    let changed = {
        let mut r = reg.borrow_mut();
        match reason {
            Reason::Established => {
                let since = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                r.live
                    .insert(wsi.id(), (wsi.peer_addr().to_string(), name, since));
                true
            }
            Reason::Closed { .. } => r.live.remove(&wsi.id()).is_some(),
            _ => false,
        }
    };
    if changed {
        let mut r = reg.borrow_mut();
        r.version += 1;
        if let Some(s) = r.status {
            wsi.callback_on_writable_all_protocol(s);
        }
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
    reg: Shared,
    close_test: bool,
}

impl Protocol for DumbIncrement {
    type Session = u32;
    fn callback(&mut self, wsi: &mut Wsi<'_>, number: &mut u32, reason: Reason<'_>) -> Result<(), Close> {
        track(&self.reg, wsi, &reason, "dumb-increment-protocol");
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

/// Messages kept per mirror room (libwebsockets' `MAX_MESSAGE_QUEUE`).
const RING: u64 = 256;
/// Largest mirrored message.
const MAX_MIRROR_MESSAGE: usize = 4 << 20;

struct Room {
    /// Sequence number of `msgs[0]`.
    base: u64,
    msgs: VecDeque<(Rc<[u8]>, bool)>,
    /// Each member's next sequence number to send.
    members: HashMap<ConnId, u64>,
}

impl Room {
    fn head(&self) -> u64 {
        self.base + self.msgs.len() as u64
    }

    /// Drops messages every member has been sent.
    fn trim(&mut self) {
        let low = self.members.values().copied().min().unwrap_or(self.head());
        while self.base < low && !self.msgs.is_empty() {
            self.msgs.pop_front();
            self.base += 1;
        }
    }
}

#[derive(Default)]
struct MirrorSession {
    room: String,
    partial: Vec<u8>,
    paused: bool,
}

/// `lws-mirror-protocol`: relays each whole message to every client of its room.
struct Mirror {
    reg: Shared,
    rooms: HashMap<String, Room>,
}

impl Protocol for Mirror {
    type Session = MirrorSession;
    fn callback(
        &mut self,
        wsi: &mut Wsi<'_>,
        s: &mut MirrorSession,
        reason: Reason<'_>,
    ) -> Result<(), Close> {
        track(&self.reg, wsi, &reason, "lws-mirror-protocol");
        match reason {
            Reason::Established => {
                s.room = wsi
                    .uri()
                    .and_then(|u| u.split_once('?'))
                    .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("mirror=")))
                    .unwrap_or("")
                    .to_owned();
                let room = self.rooms.entry(s.room.clone()).or_insert_with(|| Room {
                    base: 0,
                    msgs: VecDeque::new(),
                    members: HashMap::new(),
                });
                // A newcomer starts with what arrives from now on.
                room.members.insert(wsi.id(), room.head());
            }
            Reason::Receive {
                data, binary, last, ..
            } => {
                if s.partial.len() + data.len() > MAX_MIRROR_MESSAGE {
                    return Err(Close::new(1009, "mirror message too big"));
                }
                s.partial.extend_from_slice(data);
                if !last {
                    return Ok(());
                }
                let msg: Rc<[u8]> = std::mem::take(&mut s.partial).into();
                let Some(room) = self.rooms.get_mut(&s.room) else {
                    return Ok(());
                };
                room.msgs.push_back((msg, binary));
                let low = room.members.values().copied().min().unwrap_or(0);
                // Slow readers hold the ring: stop reading from senders when it nears full,
                // as libwebsockets' mirror does, until the readers catch up.
                if room.head() - low > RING - 16 {
                    wsi.rx_flow_control(false);
                    s.paused = true;
                }
                wsi.callback_on_writable_all_protocol(wsi.protocol());
            }
            Reason::ServerWriteable => {
                let id = wsi.id();
                let Some(room) = self.rooms.get_mut(&s.room) else {
                    return Ok(());
                };
                let Some(&next) = room.members.get(&id) else {
                    return Ok(());
                };
                let mut seq = next.max(room.base);
                // Several messages per WRITEABLE while they are small; then ask again.
                while seq < room.head() && wsi.unsent_len() < 64 << 10 {
                    let (msg, binary) = &room.msgs[(seq - room.base) as usize];
                    let wp = if *binary {
                        WriteProtocol::Binary
                    } else {
                        WriteProtocol::Text
                    };
                    if wsi.write(msg, wp).is_err() {
                        break;
                    }
                    seq += 1;
                }
                room.members.insert(id, seq);
                if seq < room.head() {
                    wsi.callback_on_writable();
                }
                room.trim();
                if room.head() - room.base < RING / 2 {
                    wsi.rx_flow_allow_all_protocol(wsi.protocol());
                }
            }
            Reason::Closed { .. } => {
                if let Some(room) = self.rooms.get_mut(&s.room) {
                    room.members.remove(&wsi.id());
                    room.trim();
                    if room.members.is_empty() {
                        self.rooms.remove(&s.room);
                    } else {
                        wsi.rx_flow_allow_all_protocol(wsi.protocol());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `lws-status`: the live connections as JSON, whenever they change.
struct Status {
    reg: Shared,
}

impl Protocol for Status {
    /// The registry version last sent.
    type Session = u64;
    fn callback(&mut self, wsi: &mut Wsi<'_>, sent: &mut u64, reason: Reason<'_>) -> Result<(), Close> {
        track(&self.reg, wsi, &reason, "lws-status");
        if let Reason::ServerWriteable = reason {
            let r = self.reg.borrow();
            if *sent == r.version {
                return Ok(());
            }
            let mut json = String::from("{\"connections\":[");
            for (i, (id, (peer, proto, since))) in r.live.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                json.push_str(&format!(
                    "{{\"id\":{},\"peer\":\"{peer}\",\"protocol\":\"{proto}\",\"since\":{since}}}",
                    id.as_u64()
                ));
            }
            json.push_str("]}");
            wsi.send_text(&json)?;
            *sent = r.version;
        }
        Ok(())
    }
}

/// `echo`.
struct Echo {
    reg: Shared,
}

impl Protocol for Echo {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        track(&self.reg, wsi, &reason, "echo");
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
                "-d" | "--debug" => {
                    a.level =
                        wsreactor::lws_log_level(args.next().and_then(|v| v.parse().ok()).expect("-d MASK"))
                }
                "-h" | "--help" => {
                    println!(
                        "usage: {name} [--port 7681] [--interface ADDR|IFACE] [--resource-path www] [--closetest] [--no-deflate] [-d LWS_LOG_MASK] {} {}",
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
        let reg: Shared = Rc::default();
        let mut b = Context::builder()
            .port(args.port)
            .resource_path(&args.resource_path)
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
                    reg: reg.clone(),
                    close_test: args.close_test,
                },
            )
            .protocol(
                "lws-mirror-protocol",
                Mirror {
                    reg: reg.clone(),
                    rooms: HashMap::new(),
                },
            )
            .protocol("lws-status", Status { reg: reg.clone() })
            .protocol("echo", Echo { reg: reg.clone() });
        if let Some(i) = &args.interface {
            b = b.interface(i);
        }
        if poll.is_some() {
            b = b.external_poll();
        }
        if args.deflate {
            b = b.permessage_deflate(wsreactor::proto::deflate::DeflateOptions::default());
        }
        let ctx = args.tls.apply(args.live.apply(b)).build()?;
        reg.borrow_mut().status = ctx.protocol_by_name("lws-status");
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
