//! The Autobahn|Testsuite "fuzzingserver" client, on the in-loop client role.
//!
//! ```text
//! cargo run --release --example autobahn-client -- URL [AGENT] [--insecure | --cafile CERT] [-d MASK]
//! ```
//!
//! `URL` is the fuzzing server, `ws://127.0.0.1:9001` or `wss://…` (then `--insecure`
//! accepts any certificate, `--cafile CERT` trusts exactly that one; without either the
//! web PKI roots are used). It reads `/getCaseCount`, runs each case with
//! `/runCase?case=N&agent=AGENT`, echoing every message whole (text as text, binary as
//! binary, fragments reassembled), and ends with `/updateReports?agent=AGENT`. One
//! connection at a time, all in one no-listen context. Exit 0 when all of that ran, 1 when
//! the count could not be read or a connection failed before its handshake.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;
use wsreactor::{ClientConnect, Close, Context, Protocol, Reason, SslMode, WriteError, WriteProtocol, Wsi};

/// Largest message echoed (Autobahn's 9.* go up to 16 MiB).
const MAX_MESSAGE: u64 = 64 << 20;

/// What the driver learns from the connection it runs.
#[derive(Default)]
struct Driver {
    /// The current connection ended (closed, or failed with the reason).
    done: bool,
    error: Option<String>,
    /// The text of the first message (the case count, for `/getCaseCount`).
    first_text: Option<String>,
    /// Echo messages (a `/runCase` connection; the others are only read).
    echo: bool,
}

#[derive(Default)]
struct Session {
    partial: Vec<u8>,
    binary: bool,
    /// Whole messages waiting for room in the out buffer.
    pending: VecDeque<(WriteProtocol, Vec<u8>)>,
}

struct Echo(Rc<RefCell<Driver>>);

impl Echo {
    fn flush(wsi: &mut Wsi<'_>, s: &mut Session) -> Result<(), Close> {
        while let Some((wp, msg)) = s.pending.pop_front() {
            match wsi.write(&msg, wp) {
                Ok(()) => {}
                Err(WriteError::BackPressure) => {
                    s.pending.push_front((wp, msg));
                    // Stop reading until the echoes drain.
                    wsi.rx_flow_control(false);
                    wsi.callback_on_writable();
                    return Ok(());
                }
                // The closing handshake began: nothing more to echo.
                Err(WriteError::Closed) => {
                    s.pending.clear();
                    return Ok(());
                }
                Err(e) => return Err(Close::new(1011, e.to_string())),
            }
        }
        wsi.rx_flow_control(true);
        Ok(())
    }
}

impl Protocol for Echo {
    type Session = Session;

    fn callback(&mut self, wsi: &mut Wsi<'_>, s: &mut Session, reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ClientReceive {
                data,
                binary,
                first,
                last,
                ..
            } => {
                if first {
                    s.partial.clear();
                    s.binary = binary;
                }
                s.partial.extend_from_slice(data);
                if last {
                    let msg = std::mem::take(&mut s.partial);
                    let mut d = self.0.borrow_mut();
                    if d.first_text.is_none() && !s.binary {
                        d.first_text = Some(String::from_utf8_lossy(&msg).into_owned());
                    }
                    if !d.echo {
                        return Ok(());
                    }
                    let wp = if s.binary {
                        WriteProtocol::Binary
                    } else {
                        WriteProtocol::Text
                    };
                    s.pending.push_back((wp, msg));
                    if s.pending.len() == 1 {
                        Self::flush(wsi, s)?;
                    }
                }
            }
            Reason::ClientWriteable => Self::flush(wsi, s)?,
            Reason::ClientConnectionError { reason } => {
                let mut d = self.0.borrow_mut();
                d.error = Some(reason.to_owned());
                d.done = true;
            }
            Reason::Closed { .. } => self.0.borrow_mut().done = true,
            _ => {}
        }
        Ok(())
    }
}

struct Client {
    ctx: Context,
    driver: Rc<RefCell<Driver>>,
    base: String,
    ssl: Option<SslMode>,
}

impl Client {
    /// Opens `path` on the server and runs the loop until that connection ends.
    fn run(&mut self, path: &str, echo: bool) -> Result<Option<String>, String> {
        *self.driver.borrow_mut() = Driver {
            echo,
            ..Driver::default()
        };
        let url = format!("{}{path}", self.base);
        let mut info = ClientConnect::url(&url).map_err(|e| e.to_string())?;
        if let Some(m) = self.ssl {
            info = info.ssl(m);
        }
        self.ctx.connect(info).map_err(|e| format!("{url}: {e}"))?;
        while !self.driver.borrow().done {
            self.ctx
                .service(Duration::from_millis(200))
                .map_err(|e| format!("service: {e}"))?;
        }
        // Let the connection finish closing before the next one opens.
        for _ in 0..100 {
            if self.ctx.connection_count() == 0 {
                break;
            }
            self.ctx
                .service(Duration::from_millis(20))
                .map_err(|e| format!("service: {e}"))?;
        }
        let mut d = self.driver.borrow_mut();
        match d.error.take() {
            Some(e) => Err(format!("{url}: {e}")),
            None => Ok(d.first_text.take()),
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: autobahn-client URL [AGENT] [--insecure | --cafile CERT] [--no-deflate] [-d LWS_LOG_MASK]"
    );
    std::process::exit(2);
}

fn main() {
    let mut positional = Vec::new();
    let mut ssl = None;
    let mut cafile = None;
    let mut level = log::LevelFilter::Warn;
    let mut deflate = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--insecure" | "-k" => ssl = Some(SslMode::AllowSelfSigned),
            "--no-deflate" => deflate = false,
            "--cafile" => cafile = Some(args.next().unwrap_or_else(|| usage())),
            "-d" => {
                level = wsreactor::lws_log_level(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => usage(),
            _ => positional.push(a),
        }
    }
    env_logger::Builder::new().filter_level(level).init();
    let (base, agent) = match positional.as_slice() {
        [u] => (u.clone(), "wsreactor".to_owned()),
        [u, a] => (u.clone(), a.clone()),
        _ => usage(),
    };
    let base = base.trim_end_matches('/').to_owned();
    let driver = Rc::new(RefCell::new(Driver::default()));
    let mut b = Context::builder()
        .no_listen()
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .max_unsent(2 * MAX_MESSAGE as usize)
        .protocol("autobahn", Echo(driver.clone()));
    if let Some(ca) = &cafile {
        b = b.ssl_ca_filepath(ca);
    }
    if deflate {
        b = b.permessage_deflate(wsreactor::proto::deflate::DeflateOptions::default());
    }
    let ctx = match b.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("autobahn-client: {e}");
            std::process::exit(1);
        }
    };
    let mut c = Client {
        ctx,
        driver,
        base,
        ssl,
    };
    let fail = |e: String| -> ! {
        eprintln!("autobahn-client: {e}");
        std::process::exit(1);
    };
    let count: u32 = match c.run("/getCaseCount", false) {
        Ok(Some(t)) => t
            .trim()
            .parse()
            .unwrap_or_else(|_| fail(format!("bad case count {t:?}"))),
        Ok(None) => fail("no case count received".into()),
        Err(e) => fail(e),
    };
    println!("autobahn-client: {count} cases");
    let mut errors = 0;
    for i in 1..=count {
        if let Err(e) = c.run(&format!("/runCase?case={i}&agent={agent}"), true) {
            eprintln!("autobahn-client: case {i}: {e}");
            errors += 1;
        }
    }
    if let Err(e) = c.run(&format!("/updateReports?agent={agent}"), false) {
        fail(e);
    }
    println!("autobahn-client: {count} cases run, {errors} connection errors; reports updated");
    std::process::exit(i32::from(errors > 0));
}
