//! Cross-process publish through the Redis backplane against local publish, in one run.
//!
//! ```text
//! cargo run --release --features redis --example backplane-bench -- \
//!     --redis redis://127.0.0.1:6379/ [--redis-pid PID] [--messages 20000] [--size 64]
//! ```
//!
//! Two contexts ("processes" A and B, a thread each) serve protocol `room` (every
//! connection subscribes to topic `bench`; what one sends is published there). A publisher
//! and a local subscriber connect to A, a remote subscriber to B. Each phase is run twice,
//! first with the contexts built without the backplane (local publish only), then with
//! it: a paced latency phase (one message every 200 µs; p50/p99 from send to receipt at
//! each subscriber) and an unpaced throughput phase (messages/s at each subscriber). It
//! prints the server CPU per delivered message of each context (its thread's CPU time)
//! and, with `--redis-pid`, redis-server's CPU per message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use wsreactor::backplane::LinkConfig;
use wsreactor::blocking::{BlockingClient, Message};
use wsreactor::{Close, Context, Protocol, Reason, Wsi};

#[derive(Default)]
struct Room;

impl Protocol for Room {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::Established => {
                wsi.subscribe("bench");
            }
            Reason::Receive { data, binary, .. } => {
                wsi.publish("bench", data, binary);
            }
            _ => {}
        }
        Ok(())
    }
}

/// This thread's CPU seconds (utime + stime, 100 Hz ticks) from /proc/thread-self/stat.
fn thread_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    proc_ticks(&s)
}

fn proc_ticks(stat: &str) -> f64 {
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    t / 100.0
}

struct ServerThread {
    port: u16,
    stop: Arc<AtomicBool>,
    cpu: mpsc::Receiver<f64>,
    reset: mpsc::Sender<()>,
}

fn server(redis: Option<String>) -> ServerThread {
    let (tx, rx) = mpsc::channel();
    let (cpu_tx, cpu_rx) = mpsc::channel();
    let (reset_tx, reset_rx) = mpsc::channel::<()>();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        let mut b = Context::builder()
            .port(0)
            .interface("127.0.0.1")
            .protocol("room", Room);
        if let Some(url) = &redis {
            b = b.redis(url, LinkConfig::default());
        }
        let mut ctx = b.build().expect("context");
        tx.send(ctx.local_addr().unwrap().port()).unwrap();
        let mut base = thread_cpu();
        while !s2.load(Ordering::Relaxed) {
            ctx.service(Duration::from_millis(5)).expect("service");
            if reset_rx.try_recv().is_ok() {
                // a phase starts: CPU from here; the previous phase's figure is sent
                let now = thread_cpu();
                let _ = cpu_tx.send(now - base);
                base = now;
            }
        }
        let _ = cpu_tx.send(thread_cpu() - base);
    });
    let port = rx.recv().expect("server started");
    ServerThread {
        port,
        stop,
        cpu: cpu_rx,
        reset: reset_tx,
    }
}

impl ServerThread {
    /// Starts a measurement phase; returns the CPU seconds of the one before.
    fn phase(&self) -> f64 {
        self.reset.send(()).unwrap();
        self.cpu.recv_timeout(Duration::from_secs(5)).unwrap_or(0.0)
    }
}

/// A subscriber on its own thread, returning (receipt latencies in µs of messages with
/// a send time, messages received) once it has `want` or `quiet` passes with nothing.
fn subscriber(
    port: u16,
    want: usize,
    epoch: Instant,
    ready: mpsc::Sender<()>,
) -> std::thread::JoinHandle<(Vec<f64>, usize, Duration)> {
    std::thread::spawn(move || {
        let mut c = BlockingClient::options()
            .timeout(Duration::from_secs(3))
            .connect_url(&format!("ws://127.0.0.1:{port}/"))
            .expect("subscriber connects");
        ready.send(()).unwrap();
        let mut lat = Vec::with_capacity(want);
        let mut n = 0;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        while n < want {
            match c.receive() {
                Ok(Some(Message::Binary(b))) if b.len() >= 16 && &b[..8] == b"benchmsg" => {
                    let sent = u64::from_le_bytes(b[8..16].try_into().unwrap());
                    let now = epoch.elapsed().as_nanos() as u64;
                    lat.push(now.saturating_sub(sent) as f64 / 1000.0);
                    n += 1;
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break, // closed, or 3 s without a message
            }
        }
        let span = first.map_or(Duration::ZERO, |f| last - f);
        (lat, n, span)
    })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn redis_cpu(pid: Option<u32>) -> f64 {
    pid.map_or(0.0, |p| {
        proc_ticks(&std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
    })
}

struct Phase {
    local: (Vec<f64>, usize, Duration),
    remote: (Vec<f64>, usize, Duration),
    cpu_a: f64,
    cpu_b: f64,
    redis: f64,
}

/// One phase: `n` messages of `size` bytes, paced `gap` apart (or unpaced).
fn run_phase(
    a: &ServerThread,
    b: &ServerThread,
    n: usize,
    size: usize,
    gap: Option<Duration>,
    redis_pid: Option<u32>,
) -> Phase {
    let epoch = Instant::now();
    let (rtx, rrx) = mpsc::channel();
    let local = subscriber(a.port, n, epoch, rtx.clone());
    let remote = subscriber(b.port, n, epoch, rtx);
    rrx.recv().unwrap();
    rrx.recv().unwrap();
    let mut publisher = BlockingClient::options()
        .timeout(Duration::from_secs(3))
        .connect_url(&format!("ws://127.0.0.1:{}/", a.port))
        .expect("publisher connects");
    // the remote subscription reaches Redis asynchronously: settle before measuring
    std::thread::sleep(Duration::from_millis(300));
    a.phase();
    b.phase();
    let r0 = redis_cpu(redis_pid);
    let mut msg = vec![b'x'; size.max(16)];
    msg[..8].copy_from_slice(b"benchmsg");
    let start = Instant::now();
    for i in 0..n {
        if let Some(g) = gap {
            let due = start + g * i as u32;
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        msg[8..16].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
        publisher.send_binary(&msg).expect("publish");
    }
    let local = local.join().unwrap();
    let remote = remote.join().unwrap();
    let cpu_a = a.phase();
    let cpu_b = b.phase();
    let redis = redis_cpu(redis_pid) - r0;
    drop(publisher);
    Phase {
        local,
        remote,
        cpu_a,
        cpu_b,
        redis,
    }
}

fn main() {
    let mut url = None;
    let mut pid = None;
    let mut n = 20_000usize;
    let mut size = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--redis" => url = args.next(),
            "--redis-pid" => pid = args.next().and_then(|v| v.parse().ok()),
            "--messages" => n = args.next().and_then(|v| v.parse().ok()).expect("--messages N"),
            "--size" => size = args.next().and_then(|v| v.parse().ok()).expect("--size BYTES"),
            _ => {
                eprintln!(
                    "usage: backplane-bench --redis URL [--redis-pid PID] [--messages N] [--size BYTES]"
                );
                std::process::exit(2);
            }
        }
    }
    let url = url.expect("--redis URL");
    println!(
        "messages {n}, {size} B; latency phase paced 1 per 200 us ({} messages)",
        n / 10
    );
    for (label, redis) in [("local only", None), ("through redis", Some(url.clone()))] {
        let (a, b) = (server(redis.clone()), server(redis.clone()));
        let lat = run_phase(
            &a,
            &b,
            n / 10,
            size,
            Some(Duration::from_micros(200)),
            pid.filter(|_| redis.is_some()),
        );
        let thr = run_phase(&a, &b, n, size, None, pid.filter(|_| redis.is_some()));
        let (mut ll, mut rl) = (lat.local.0, lat.remote.0);
        let rate = |r: &(Vec<f64>, usize, Duration)| r.1 as f64 / r.2.as_secs_f64().max(1e-9);
        println!(
            "{label:14} local sub:  p50 {:7.1} us  p99 {:7.1} us | {:9.0} msg/s ({} of {n})",
            pct(&mut ll, 0.5),
            pct(&mut ll, 0.99),
            rate(&thr.local),
            thr.local.1
        );
        if redis.is_some() {
            println!(
                "{:14} remote sub: p50 {:7.1} us  p99 {:7.1} us | {:9.0} msg/s ({} of {n})",
                "",
                pct(&mut rl, 0.5),
                pct(&mut rl, 0.99),
                rate(&thr.remote),
                thr.remote.1
            );
        }
        let per = |cpu: f64, msgs: usize| cpu * 1e6 / msgs.max(1) as f64;
        // A delivers to its two subscribers (the publisher hears itself too) and, with
        // redis, PUBLISHes; B delivers what comes from Redis to its one subscriber.
        let b_cpu = if redis.is_some() {
            format!("{:.2} us per message from Redis", per(thr.cpu_b, thr.remote.1))
        } else {
            format!("{:.3} s idle", thr.cpu_b)
        };
        println!(
            "{:14} server CPU, throughput phase: A {:.2} us per published message, B {b_cpu}{}",
            "",
            per(thr.cpu_a, n),
            if redis.is_some() && pid.is_some() {
                format!(", redis-server {:.2} us per message", per(thr.redis, n))
            } else {
                String::new()
            }
        );
        a.stop.store(true, Ordering::Relaxed);
        b.stop.store(true, Ordering::Relaxed);
    }
}
