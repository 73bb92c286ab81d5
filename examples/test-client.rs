//! The wsreactor test client, after libwebsockets' `libwebsockets-test-client`.
//!
//! ```text
//! cargo run --release --example test-client -- HOST [--port 7681] [--ssl] [-k] [--count N]
//!     [--path /] [-d LWS_LOG_MASK]
//! ```
//!
//! Opens two connections from one no-listen context to a test server (ours,
//! `examples/test-server`, or libwebsockets'):
//!
//! - `dumb-increment-protocol`: prints every counter value received; with `--count N` it
//!   exits 0 after N values;
//! - `lws-mirror-protocol`: draws circles, one line segment `d #rrggbb x1 y1 x2 y2;` per
//!   `CLIENT_WRITEABLE` (the mirror message format of `www/test.js`), and counts what the
//!   mirror sends back.
//!
//! `--ssl` connects with wss:// and verifies the server's certificate; `-k` (with or without
//! `--ssl`) accepts a self-signed one. A `CLIENT_CONNECTION_ERROR` prints its reason and
//! exits 1, as does the counter connection closing before `--count` values came. Without
//! `--count` it runs until interrupted: Ctrl-C (SIGINT or SIGTERM) ends it with status 0.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wsreactor::{ClientConnect, Close, Context, Protocol, Reason, SslMode, Wsi};

/// What the main loop watches.
#[derive(Default)]
struct State {
    counters: u64,
    mirror_sent: u64,
    mirror_received: u64,
    /// Exit with this status.
    exit: Option<i32>,
}

type Shared = Rc<RefCell<State>>;

fn connection_error(state: &Shared, protocol: &str, reason: &str) {
    eprintln!("test-client: {protocol}: CLIENT_CONNECTION_ERROR: {reason}");
    state.borrow_mut().exit = Some(1);
}

struct DumbIncrement {
    state: Shared,
    count: Option<u64>,
}

impl Protocol for DumbIncrement {
    type Session = ();
    fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ClientEstablished => println!("dumb-increment-protocol: established"),
            Reason::ClientConnectionError { reason } => {
                connection_error(&self.state, "dumb-increment-protocol", reason)
            }
            Reason::ClientReceive { data, .. } => {
                println!(
                    "dumb-increment-protocol: {}",
                    String::from_utf8_lossy(data).trim_end()
                );
                let mut s = self.state.borrow_mut();
                s.counters += 1;
                if self.count.is_some_and(|n| s.counters >= n) {
                    s.exit.get_or_insert(0);
                }
            }
            Reason::Closed { code, reason } => {
                println!(
                    "dumb-increment-protocol: closed ({code:?} {})",
                    String::from_utf8_lossy(reason)
                );
                let mut s = self.state.borrow_mut();
                let short = self.count.is_some_and(|n| s.counters < n);
                s.exit.get_or_insert(i32::from(short));
            }
            _ => {}
        }
        Ok(())
    }
}

/// The circle being drawn, one segment per `CLIENT_WRITEABLE`.
#[derive(Default)]
struct Circle {
    color: u32,
    cx: i32,
    cy: i32,
    r: i32,
    step: u32,
}

/// Segments per circle.
const STEPS: u32 = 24;

struct Mirror {
    state: Shared,
    rng: u64,
}

impl Mirror {
    /// xorshift64*: enough randomness for colours and positions.
    fn random(&mut self) -> u32 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    fn next_segment(&mut self, c: &mut Circle) -> String {
        if c.step % STEPS == 0 {
            // A new circle on the 600 × 300 canvas of the test page.
            c.color = self.random() & 0xff_ffff;
            c.r = 5 + (self.random() % 40) as i32;
            c.cx = c.r + (self.random() % (600 - 2 * c.r as u32)) as i32;
            c.cy = c.r + (self.random() % (300 - 2 * c.r as u32)) as i32;
            c.step = 0;
        }
        let point = |i: u32| {
            let a = f64::from(i) * std::f64::consts::TAU / f64::from(STEPS);
            (
                c.cx + (f64::from(c.r) * a.cos()).round() as i32,
                c.cy + (f64::from(c.r) * a.sin()).round() as i32,
            )
        };
        let (x1, y1) = point(c.step);
        let (x2, y2) = point(c.step + 1);
        c.step += 1;
        format!("d #{:06x} {x1} {y1} {x2} {y2};", c.color)
    }
}

impl Protocol for Mirror {
    type Session = Circle;
    fn callback(&mut self, wsi: &mut Wsi<'_>, c: &mut Circle, reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ClientEstablished => {
                println!("lws-mirror-protocol: established");
                wsi.callback_on_writable();
            }
            Reason::ClientConnectionError { reason } => {
                connection_error(&self.state, "lws-mirror-protocol", reason)
            }
            Reason::ClientWriteable => {
                let line = self.next_segment(c);
                match wsi.send_text(&line) {
                    Ok(()) => self.state.borrow_mut().mirror_sent += 1,
                    Err(wsreactor::WriteError::BackPressure) => {}
                    Err(e) => return Err(Close::new(1011, e.to_string())),
                }
                // As libwebsockets' test client: one message per WRITEABLE, then ask again.
                wsi.callback_on_writable();
            }
            Reason::ClientReceive { last: true, .. } => self.state.borrow_mut().mirror_received += 1,
            Reason::Closed { code, .. } => println!("lws-mirror-protocol: closed ({code:?})"),
            _ => {}
        }
        Ok(())
    }
}

fn usage() -> ! {
    eprintln!("usage: test-client HOST [--port 7681] [--ssl] [-k] [--count N] [--path /] [-d LWS_LOG_MASK]");
    std::process::exit(2);
}

fn main() {
    let mut host = None;
    let mut port = 7681u16;
    let mut ssl = false;
    let mut self_signed = false;
    let mut count = None;
    let mut path = String::from("/");
    let mut level = log::LevelFilter::Warn;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" | "-p" => port = value().parse().unwrap_or_else(|_| usage()),
            "--ssl" | "-s" => ssl = true,
            "-k" | "--insecure" => self_signed = true,
            "--count" | "-n" => count = Some(value().parse().unwrap_or_else(|_| usage())),
            "--path" => path = value(),
            "-d" => level = wsreactor::lws_log_level(value().parse().unwrap_or_else(|_| usage())),
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => usage(),
            _ if host.is_none() => host = Some(a),
            _ => usage(),
        }
    }
    let Some(host) = host else { usage() };
    env_logger::Builder::new().filter_level(level).init();
    let mode = match (ssl || self_signed, self_signed) {
        (false, _) => SslMode::Plain,
        (true, false) => SslMode::Verified,
        (true, true) => SslMode::AllowSelfSigned,
    };

    let state: Shared = Rc::default();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let built = Context::builder()
        .no_listen()
        .protocol(
            "dumb-increment-protocol",
            DumbIncrement {
                state: state.clone(),
                count,
            },
        )
        .protocol(
            "lws-mirror-protocol",
            Mirror {
                state: state.clone(),
                rng: seed,
            },
        )
        .build();
    let mut ctx = built.unwrap_or_else(|e| {
        eprintln!("test-client: {e}");
        std::process::exit(1);
    });
    for name in ["dumb-increment-protocol", "lws-mirror-protocol"] {
        let info = ClientConnect::new(&host, port)
            .ssl(mode)
            .with_path(&path)
            .protocols(name);
        if let Err(e) = ctx.connect(info) {
            eprintln!("test-client: {name}: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "test-client: connecting to {}://{host}:{port}{path}",
        if mode == SslMode::Plain { "ws" } else { "wss" }
    );
    // Ctrl-C: a flag and a wake-up of the loop (the handler runs on a thread of its own).
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (flag, wake) = (interrupted.clone(), ctx.cancel_handle());
        if let Err(e) = ctrlc::set_handler(move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            wake.cancel();
        }) {
            eprintln!("test-client: no Ctrl-C handler: {e}");
        }
    }
    let status = loop {
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            break 0;
        }
        if let Err(e) = ctx.service(Duration::from_millis(50)) {
            eprintln!("test-client: {e}");
            break 1;
        }
        if let Some(s) = state.borrow().exit {
            break s;
        }
    };
    let s = state.borrow();
    println!(
        "test-client: {} counter values, {} mirror messages sent, {} received",
        s.counters, s.mirror_sent, s.mirror_received
    );
    std::process::exit(status);
}
