//! Echoes every message back, text as text and binary as binary, fragmented or not, on
//! any sub-protocol or none. This is the server that the Autobahn conformance run and the
//! benchmarks use.
//!
//! ```text
//! cargo run --release --example echo-server -- [--port 9001] [--interface 127.0.0.1] [-d LEVEL]
//!     [--ssl [--cert FILE.pem --key FILE.pem] [--ca CA.pem]]
//!     [--ping-interval SECS] [--ping-timeout SECS] [--http-timeout SECS] [--threads N]
//!     [--extpoll]
//! ```
//!
//! `--extpoll` drives each context from a `poll(2)` loop of the program's own
//! (`external_poll()`, `service_fd`), as `test-server-extpoll` does; it is there to compare
//! that route's cost with wsreactor's own loop.
//!
//! `--threads N` runs N contexts, one per thread, on the same port (`SO_REUSEPORT`). On
//! SIGINT or SIGTERM each sends 1001 to its WebSockets, waits up to 5 s for them, and the
//! program exits 0.
//!
//! Messages are echoed piece by piece as they arrive (no reassembly), so memory stays flat
//! whatever the message size. A client that sends faster than it reads is slowed with rx
//! flow control once 1 MiB of echo is waiting for it.

#[path = "common/serve.rs"]
mod serve;
#[path = "common/tls.rs"]
mod tls;

#[path = "common/extpoll.rs"]
mod extpoll;

use std::time::Duration;
use wsreactor::proto::deflate::DeflateOptions;
use wsreactor::{Close, Context, Protocol, ProtocolContext, ProtocolEvent, Reason, WriteProtocol, Wsi};

const HIGH_WATER: usize = 1 << 20;

/// Echoes; with an external loop it also keeps the loop's poll array (it is the first
/// protocol).
#[derive(Default)]
struct Echo {
    poll: Option<extpoll::PollArray>,
}

impl Protocol for Echo {
    type Session = ();

    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::Receive {
                data,
                binary,
                first,
                last,
                ..
            } => {
                let wp = match (first, binary) {
                    (false, _) => WriteProtocol::Continuation,
                    (true, false) => WriteProtocol::Text,
                    (true, true) => WriteProtocol::Binary,
                };
                wsi.write_fragment(data, wp, last)?;
                if wsi.unsent_len() > HIGH_WATER {
                    wsi.rx_flow_control(false);
                    wsi.callback_on_writable();
                }
            }
            Reason::ServerWriteable => wsi.rx_flow_control(true),
            _ => {}
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

fn main() -> std::io::Result<()> {
    let mut port = 9001u16;
    let mut interface = None;
    let mut level = log::LevelFilter::Warn;
    let mut tls = tls::TlsArgs::default();
    let mut live = serve::LiveArgs::default();
    let mut external = false;
    // permessage-deflate: off unless asked for, so the plain benchmarks stay comparable.
    let mut deflate: Option<DeflateOptions> = None;
    let num = |v: Option<String>, what: &str| -> u8 {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what} N"))
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if tls.take(&a, &mut args) || live.take(&a, &mut args) {
            continue;
        }
        match a.as_str() {
            "--port" | "-p" => port = args.next().and_then(|v| v.parse().ok()).expect("--port N"),
            "--interface" | "-i" => interface = args.next(),
            "--extpoll" => external = true,
            "--deflate" => {
                deflate.get_or_insert_with(DeflateOptions::default);
            }
            "--deflate-shared" => {
                let d = deflate.get_or_insert_with(DeflateOptions::default);
                d.no_context_takeover = true;
                d.peer_no_context_takeover = true;
            }
            "--deflate-level" => {
                deflate.get_or_insert_with(DeflateOptions::default).level =
                    num(args.next(), "--deflate-level")
            }
            "--deflate-window" => {
                let d = deflate.get_or_insert_with(DeflateOptions::default);
                d.window_bits = num(args.next(), "--deflate-window");
                d.peer_window_bits = d.window_bits;
            }
            "--deflate-mem" => {
                deflate.get_or_insert_with(DeflateOptions::default).mem_level =
                    num(args.next(), "--deflate-mem")
            }
            "-d" => {
                level = wsreactor::lws_log_level(args.next().and_then(|v| v.parse().ok()).expect("-d MASK"))
            }
            "-h" | "--help" => {
                println!(
                    "usage: echo-server [--port 9001] [--interface ADDR|IFACE] [-d LWS_LOG_MASK] {} {} [--extpoll] \
                     [--deflate] [--deflate-shared] [--deflate-level 0-9] [--deflate-window 9-15] [--deflate-mem 1-9]",
                    tls::USAGE,
                    serve::USAGE
                );
                return Ok(());
            }
            other => {
                eprintln!("echo-server: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    env_logger::Builder::new().filter_level(level).init();
    let threads = live.threads();
    serve::run(threads, move |stop| {
        let fds = external.then(extpoll::PollArray::default);
        let mut b = Context::builder()
            .port(port)
            .protocol("echo", Echo { poll: fds.clone() })
            .accept_any_protocol(true);
        if external {
            b = b.external_poll();
        }
        if let Some(i) = &interface {
            b = b.interface(i);
        }
        if let Some(d) = deflate {
            b = b.permessage_deflate(d);
        }
        let mut ctx = tls.apply(live.apply(b)).build()?;
        stop.register(&ctx);
        eprintln!(
            "echo-server: listening on {} ({})",
            ctx.local_addr().expect("listening"),
            if tls.scheme() == "https" { "wss" } else { "ws" }
        );
        match fds {
            Some(fds) => {
                while !stop.stopped() {
                    extpoll::round(&mut ctx, &fds, Duration::from_secs(1))?;
                }
                extpoll::shutdown(&mut ctx, &fds, serve::GRACE)
            }
            None => {
                while !stop.stopped() {
                    ctx.service(Duration::from_secs(1))?;
                }
                ctx.graceful_shutdown(serve::GRACE)
            }
        }
    });
    Ok(())
}
