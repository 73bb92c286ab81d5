//! A panicking callback is reported by exactly one log line (through the `log` crate, at
//! error level, naming the connection and the panic's message), and closes only its own
//! connection, with 1011.
//!
//! A test binary of its own: it installs a logger that keeps every record, which must be
//! the process' first logger (the shared harness would install env_logger otherwise).

mod common;

use common::*;
use std::sync::Mutex;
use std::time::Duration;
use wsreactor::proto::OpCode;
use wsreactor::Reason;

/// Every record logged, with its level.
struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        self.0.lock().unwrap().push((r.level(), r.args().to_string()));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn a_panicking_callback_logs_one_line_and_closes_only_its_connection_with_1011() {
    log::set_logger(&CAPTURE).expect("the first logger of this process");
    log::set_max_level(log::LevelFilter::Trace);
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "p",
            Recorder::new("p", &l).hook(|wsi, r| {
                if let Reason::Receive { data: b"panic", .. } = r {
                    panic!("on purpose, from the panic_log test");
                }
                echo(wsi, r)
            }),
        )
    });
    let mut other = Client::open(s.port);
    other.send_text("before");
    other.expect_text("before");
    let mut bad = Client::open(s.port);
    bad.send_text("ping me");
    bad.expect_text("ping me");
    let bad_addr = bad.local_addr();
    let before = CAPTURE.0.lock().unwrap().len();

    bad.send_text("panic");
    let f = bad.read_frame();
    assert_eq!(f.opcode, OpCode::Close, "{f:?}");
    assert_eq!(f.close().0, Some(1011));
    bad.expect_eof();
    // the other connection goes on
    other.send_text("after");
    other.expect_text("after");
    std::thread::sleep(Duration::from_millis(100));

    let recs: Vec<_> = CAPTURE.0.lock().unwrap()[before..].to_vec();
    let loud: Vec<_> = recs.iter().filter(|(lv, _)| *lv <= log::Level::Info).collect();
    assert_eq!(
        loud.len(),
        1,
        "one line at info level or above for the panic: {loud:#?} (all: {recs:#?})"
    );
    let (level, line) = loud[0];
    assert_eq!(*level, log::Level::Error);
    assert!(line.contains("on purpose, from the panic_log test"), "{line}");
    assert!(
        line.contains(&bad_addr.to_string()),
        "the connection is named: {line}"
    );
    assert!(line.contains("1011"), "{line}");
    let panics = recs.iter().filter(|(_, m)| m.contains("panic")).count();
    assert_eq!(panics, 1, "the panic is told once at any level: {recs:#?}");
    assert_eq!(s.with_ctx(|ctx| ctx.stats().closed_panic), 1);
}
