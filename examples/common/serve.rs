//! What the example servers share for running in production: the liveness flags
//! (`--ping-interval`, `--ping-timeout`, `--http-timeout`, `--threads`), one context per
//! thread on one port (`SO_REUSEPORT`), and a graceful shutdown on SIGINT/SIGTERM.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsreactor::{CancelHandle, Context, ContextBuilder};

/// How long a graceful shutdown waits for close handshakes and responses in flight.
pub const GRACE: Duration = Duration::from_secs(5);

pub const USAGE: &str =
    "[--ping-interval SECS] [--ping-timeout SECS] [--http-timeout SECS] [--threads N] (0 s = off)";

/// The liveness flags; `None` keeps the library's default.
#[derive(Debug, Clone, Default)]
pub struct LiveArgs {
    pub ping_interval: Option<u64>,
    pub ping_timeout: Option<u64>,
    pub http_timeout: Option<u64>,
    pub threads: usize,
}

impl LiveArgs {
    /// Takes `arg` (and its value) if it is one of these flags.
    pub fn take(&mut self, arg: &str, rest: &mut impl Iterator<Item = String>) -> bool {
        let mut num = |name: &str| -> u64 {
            rest.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} SECS"))
        };
        match arg {
            "--ping-interval" => self.ping_interval = Some(num(arg)),
            "--ping-timeout" => self.ping_timeout = Some(num(arg)),
            "--http-timeout" => self.http_timeout = Some(num(arg)),
            "--threads" => self.threads = num(arg).max(1) as usize,
            _ => return false,
        }
        true
    }

    pub fn threads(&self) -> usize {
        self.threads.max(1)
    }

    /// The settings on a builder: the timeouts given, and `SO_REUSEPORT` for more than one
    /// thread.
    pub fn apply(&self, mut b: ContextBuilder) -> ContextBuilder {
        let s = Duration::from_secs;
        if let Some(v) = self.ping_interval {
            b = b.ping_interval(s(v));
        }
        if let Some(v) = self.ping_timeout {
            b = b.ping_timeout(s(v));
        }
        if let Some(v) = self.http_timeout {
            // The whole request, and its head on its own.
            b = b.http_timeout(s(v)).handshake_timeout(s(v));
        }
        b.reuse_port(self.threads() > 1)
    }
}

/// Set by SIGINT or SIGTERM; wakes every registered context.
#[derive(Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    wake: Arc<Mutex<Vec<CancelHandle>>>,
}

impl Stop {
    fn install() -> Stop {
        let stop = Stop {
            flag: Arc::default(),
            wake: Arc::default(),
        };
        let s = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || {
            s.flag.store(true, Ordering::SeqCst);
            for h in s.wake.lock().unwrap().iter() {
                h.cancel();
            }
        }) {
            eprintln!("no SIGINT/SIGTERM handler: {e}");
        }
        stop
    }

    /// A context to wake when the signal comes.
    pub fn register(&self, ctx: &Context) {
        self.wake.lock().unwrap().push(ctx.cancel_handle());
    }

    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Runs `serve` on `threads` threads (each builds and services its own context; they
/// share the port through `SO_REUSEPORT`), until SIGINT or SIGTERM; `serve` is expected to
/// end with a graceful shutdown. Exits 1 if a thread fails.
pub fn run(threads: usize, serve: impl Fn(Stop) -> std::io::Result<()> + Send + Sync + 'static) {
    let stop = Stop::install();
    let serve = Arc::new(serve);
    let joins: Vec<_> = (0..threads)
        .map(|i| {
            let (serve, stop) = (serve.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("ctx-{i}"))
                .spawn(move || serve(stop))
                .expect("thread")
        })
        .collect();
    let mut failed = false;
    for j in joins {
        match j.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("{e}");
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    std::process::exit(i32::from(failed));
}
