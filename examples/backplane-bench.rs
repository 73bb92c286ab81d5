//! Cross-process publish through the Redis backplane against local publish, in one run.
//!
//! ```text
//! cargo run --release --features redis --example backplane-bench -- \
//!     --redis redis://127.0.0.1:6379/ [--processes] [--reps 3] [--messages 100000] \
//!     [--paced 10000] [--size 64] [--max-queued BYTES]
//! ```
//!
//! Two servers A and B serve protocol `room`: a subscriber connection joins topic `bench`,
//! a publisher connection (`/pub`) publishes there what it sends. A publisher and a local
//! subscriber connect to A, a remote subscriber to B. By default A and B are two contexts
//! on two threads of this process; with `--processes` they are two OS processes (this
//! program run again with `--serve`), the load generator staying here.
//!
//! Each repetition runs both configurations, interleaved: the servers without the
//! backplane (local publish only), then with it. Each configuration has a paced latency
//! phase (one message every 200 µs; p50/p99 from send to receipt at each subscriber) and
//! an unpaced flood (messages/s and messages received at each subscriber, messages the
//! topic's drop-oldest bound took from each subscriber, server CPU per message, and
//! redis-server's CPU per message from `INFO cpu`). Figures are the medians over the
//! repetitions with their range.
//!
//! With `--processes`, `BACKPLANE_BENCH_WRAP` gives a command to run each server under
//! (`valgrind --tool=callgrind --callgrind-out-file=/tmp/bp.%p`: instructions per message
//! of each server process, see BENCHMARKS.md).

use nix::sys::resource::{getrusage, UsageWho};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use wsreactor::backplane::{LinkConfig, RedisUrl};
use wsreactor::blocking::{BlockingClient, Message};
use wsreactor::{Close, Context, Protocol, Reason, TopicOptions, Wsi};

/// `room`: subscribers join `bench`; a publisher (`/pub`) publishes each message it sends
/// (pieces of a message split across reads gathered first).
struct Room {
    /// Messages the drop-oldest bound took from this server's subscribers.
    missed: Arc<AtomicU64>,
}

impl Protocol for Room {
    /// Whether the connection is the publisher, and a message's pieces so far.
    type Session = (bool, Vec<u8>);
    fn callback(
        &mut self,
        wsi: &mut Wsi<'_>,
        s: &mut (bool, Vec<u8>),
        reason: Reason<'_>,
    ) -> Result<(), Close> {
        match reason {
            Reason::Established => {
                s.0 = wsi.uri().is_some_and(|u| u.starts_with("/pub"));
                if !s.0 {
                    wsi.subscribe("bench");
                }
            }
            Reason::Receive {
                data,
                binary,
                first: true,
                last: true,
                ..
            } => {
                wsi.publish("bench", data, binary);
            }
            Reason::Receive {
                data, binary, last, ..
            } => {
                s.1.extend_from_slice(data);
                if last {
                    wsi.publish("bench", &s.1, binary);
                    s.1.clear();
                }
            }
            Reason::TopicMissed { missed, .. } => {
                self.missed.fetch_add(missed, Ordering::Relaxed);
            }
            _ => {}
        }
        Ok(())
    }
}

/// CPU seconds (user + system) of this thread or process.
fn cpu(who: UsageWho) -> f64 {
    getrusage(who).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// What a server reports at the end of a phase: cumulative figures.
#[derive(Clone, Copy, Default, Debug)]
struct Report {
    cpu: f64,
    missed: u64,
    /// The link's: published to Redis, delivered from Redis, dropped.
    published: u64,
    delivered: u64,
    dropped: u64,
}

impl Report {
    fn line(&self) -> String {
        format!(
            "report {} {} {} {} {}",
            self.cpu, self.missed, self.published, self.delivered, self.dropped
        )
    }

    fn parse(l: &str) -> Option<Report> {
        let f: Vec<&str> = l.strip_prefix("report ")?.split(' ').collect();
        Some(Report {
            cpu: f.first()?.parse().ok()?,
            missed: f.get(1)?.parse().ok()?,
            published: f.get(2)?.parse().ok()?,
            delivered: f.get(3)?.parse().ok()?,
            dropped: f.get(4)?.parse().ok()?,
        })
    }

    fn minus(&self, o: &Report) -> Report {
        Report {
            cpu: self.cpu - o.cpu,
            missed: self.missed - o.missed,
            published: self.published - o.published,
            delivered: self.delivered - o.delivered,
            dropped: self.dropped - o.dropped,
        }
    }
}

/// Builds a server's context and serves it until `stop`, answering each request on
/// `ask` with a report (CPU of `who`).
fn serve(
    redis: Option<&str>,
    max_queued: Option<usize>,
    who: UsageWho,
    port_tx: mpsc::Sender<u16>,
    ask: mpsc::Receiver<()>,
    answer: impl Fn(Report),
    stop: &AtomicBool,
) {
    let missed = Arc::new(AtomicU64::new(0));
    let mut b = Context::builder().port(0).interface("127.0.0.1").protocol(
        "room",
        Room {
            missed: missed.clone(),
        },
    );
    if let Some(m) = max_queued {
        b = b.topic_options(TopicOptions {
            max_queued: m,
            ..TopicOptions::default()
        });
    }
    if let Some(url) = redis {
        b = b.redis(url, LinkConfig::default());
    }
    let mut ctx = b.build().expect("context");
    port_tx.send(ctx.local_addr().unwrap().port()).unwrap();
    while !stop.load(Ordering::Relaxed) {
        ctx.service(Duration::from_millis(5)).expect("service");
        match ask.try_recv() {
            Ok(()) => {
                let link = ctx.backplane_stats().map(|(_, s)| s).unwrap_or_default();
                answer(Report {
                    cpu: cpu(who),
                    missed: missed.load(Ordering::Relaxed),
                    published: link.published,
                    delivered: link.delivered,
                    dropped: link.dropped,
                });
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => break,
        }
    }
}

/// A server: a thread of this process, or a child process.
enum Server {
    Thread {
        port: u16,
        stop: Arc<AtomicBool>,
        ask: mpsc::Sender<()>,
        reports: mpsc::Receiver<Report>,
    },
    Process {
        port: u16,
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: BufReader<ChildStdout>,
    },
}

impl Server {
    fn start(processes: bool, redis: Option<&str>, max_queued: Option<usize>) -> Server {
        if processes {
            let exe = std::env::current_exe().expect("own path");
            // BACKPLANE_BENCH_WRAP: a command to run each server under, e.g. valgrind
            let wrap = std::env::var("BACKPLANE_BENCH_WRAP").unwrap_or_default();
            let mut words = wrap.split_whitespace();
            let mut cmd = match words.next() {
                Some(w) => {
                    let mut c = Command::new(w);
                    c.args(words).arg(&exe);
                    c
                }
                None => Command::new(&exe),
            };
            cmd.arg("--serve");
            if let Some(url) = redis {
                cmd.args(["--redis", url]);
            }
            if let Some(m) = max_queued {
                cmd.args(["--max-queued", &m.to_string()]);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a server process");
            let stdin = child.stdin.take().unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut l = String::new();
            stdout.read_line(&mut l).expect("the server's port");
            let port = l
                .trim()
                .strip_prefix("port ")
                .and_then(|p| p.parse().ok())
                .expect("port N");
            return Server::Process {
                port,
                child,
                stdin: Some(stdin),
                stdout,
            };
        }
        let (port_tx, port_rx) = mpsc::channel();
        let (ask_tx, ask_rx) = mpsc::channel();
        let (rep_tx, rep_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let redis = redis.map(str::to_owned);
        std::thread::spawn(move || {
            serve(
                redis.as_deref(),
                max_queued,
                UsageWho::RUSAGE_THREAD,
                port_tx,
                ask_rx,
                |r| {
                    let _ = rep_tx.send(r);
                },
                &s2,
            )
        });
        Server::Thread {
            port: port_rx.recv().expect("server started"),
            stop,
            ask: ask_tx,
            reports: rep_rx,
        }
    }

    fn port(&self) -> u16 {
        match self {
            Server::Thread { port, .. } | Server::Process { port, .. } => *port,
        }
    }

    fn report(&mut self) -> Report {
        match self {
            Server::Thread { ask, reports, .. } => {
                ask.send(()).unwrap();
                reports.recv_timeout(Duration::from_secs(10)).expect("a report")
            }
            Server::Process { stdin, stdout, .. } => {
                writeln!(stdin.as_mut().unwrap(), "report").unwrap();
                let mut l = String::new();
                stdout.read_line(&mut l).unwrap();
                Report::parse(l.trim()).expect("report line")
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self {
            Server::Thread { stop, .. } => stop.store(true, Ordering::Relaxed),
            Server::Process { child, stdin, .. } => {
                // EOF on its stdin ends it (so that a profiler wrapping it writes its
                // figures); killed if it does not go within 60 s
                drop(stdin.take());
                let end = Instant::now() + Duration::from_secs(60);
                while Instant::now() < end && child.try_wait().ok().flatten().is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `--serve`: one server process; reports on each `report` line from stdin, exits at EOF.
fn serve_process(redis: Option<&str>, max_queued: Option<usize>) {
    let (port_tx, port_rx) = mpsc::channel();
    let (ask_tx, ask_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let port = port_rx.recv().unwrap();
        println!("port {port}");
        let _ = std::io::stdout().flush();
        for l in std::io::stdin().lock().lines() {
            match l {
                Ok(l) if l == "report" => {
                    if ask_tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });
    let stop = AtomicBool::new(false);
    serve(
        redis,
        max_queued,
        UsageWho::RUSAGE_SELF,
        port_tx,
        ask_rx,
        |r| {
            println!("{}", r.line());
            let _ = std::io::stdout().flush();
        },
        &stop,
    );
}

/// A subscriber on its own thread, returning (latencies in µs, messages received, time
/// from the first to the last) once it has `want`, or 3 s passed with nothing.
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

/// redis-server's CPU seconds (`INFO cpu`: used_cpu_user + used_cpu_sys), if reachable.
fn redis_cpu(url: &RedisUrl) -> Option<f64> {
    let mut s = std::net::TcpStream::connect((url.host.as_str(), url.port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    if let Some(p) = &url.password {
        let user = url.user.as_deref().unwrap_or("default");
        write!(s, "AUTH {user} {p}\r\n").ok()?;
    }
    s.write_all(b"INFO cpu\r\n").ok()?;
    // a bulk string (after +OK when authenticating); read until both fields are in
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(2);
    while !(text.contains("used_cpu_sys:") && text.contains("used_cpu_user:") && text.ends_with("\r\n\r\n"))
        && Instant::now() < end
    {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let field = |k: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(field("used_cpu_user:")? + field("used_cpu_sys:")?)
}

/// One phase's figures.
struct Phase {
    local: (Vec<f64>, usize, Duration),
    remote: (Vec<f64>, usize, Duration),
    a: Report,
    b: Report,
    redis: Option<f64>,
}

/// One phase: `n` messages of `size` bytes, paced `gap` apart (or unpaced).
fn run_phase(
    a: &mut Server,
    b: &mut Server,
    n: usize,
    size: usize,
    gap: Option<Duration>,
    redis: Option<&RedisUrl>,
) -> Phase {
    let epoch = Instant::now();
    let (rtx, rrx) = mpsc::channel();
    let local = subscriber(a.port(), n, epoch, rtx.clone());
    // without the backplane nothing reaches B
    let remote = redis.map(|_| subscriber(b.port(), n, epoch, rtx));
    rrx.recv().unwrap();
    if remote.is_some() {
        rrx.recv().unwrap();
    }
    let mut publisher = BlockingClient::options()
        .timeout(Duration::from_secs(3))
        .connect_url(&format!("ws://127.0.0.1:{}/pub", a.port()))
        .expect("publisher connects");
    // the remote subscription reaches Redis asynchronously: settle before measuring
    std::thread::sleep(Duration::from_millis(300));
    let (a0, b0) = (a.report(), b.report());
    let r0 = redis.and_then(redis_cpu);
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
    let remote = remote.map_or((Vec::new(), 0, Duration::ZERO), |r| r.join().unwrap());
    let (a1, b1) = (a.report(), b.report());
    let r1 = redis.and_then(redis_cpu);
    drop(publisher);
    Phase {
        local,
        remote,
        a: a1.minus(&a0),
        b: b1.minus(&b0),
        redis: r0.zip(r1).map(|(x, y)| y - x),
    }
}

/// Median and range of one figure over the repetitions.
fn stat(v: &[f64], digits: usize) -> String {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return "—".into();
    }
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    if v.len() == 1 {
        return format!("{med:.digits$}");
    }
    format!("{med:.digits$} [{:.digits$}–{:.digits$}]", v[0], v[v.len() - 1])
}

#[derive(Default)]
struct Figures {
    rows: Vec<(&'static str, Vec<f64>, usize)>,
}

impl Figures {
    fn add(&mut self, name: &'static str, v: f64, digits: usize) {
        match self.rows.iter_mut().find(|r| r.0 == name) {
            Some(r) => r.1.push(v),
            None => self.rows.push((name, vec![v], digits)),
        }
    }
}

fn main() {
    let mut url = None;
    let mut n = 100_000usize;
    let mut size = 64usize;
    let mut reps = 3usize;
    let mut processes = false;
    let mut serve_mode = false;
    let mut max_queued = None;
    let mut paced = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--redis" => url = args.next(),
            "--messages" => n = args.next().and_then(|v| v.parse().ok()).expect("--messages N"),
            "--size" => size = args.next().and_then(|v| v.parse().ok()).expect("--size BYTES"),
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            "--max-queued" => max_queued = args.next().and_then(|v| v.parse().ok()),
            "--paced" => paced = args.next().and_then(|v| v.parse().ok()),
            "--processes" => processes = true,
            "--serve" => serve_mode = true,
            _ => {
                eprintln!(
                    "usage: backplane-bench --redis URL [--processes] [--reps 3] [--messages N] [--paced N] [--size BYTES] [--max-queued BYTES]"
                );
                std::process::exit(2);
            }
        }
    }
    if serve_mode {
        serve_process(url.as_deref(), max_queued);
        return;
    }
    let url = url.expect("--redis URL");
    let paced = paced.unwrap_or(n / 10);
    let parsed = RedisUrl::parse(&url).expect("a redis:// URL");
    println!(
        "{} servers, {reps} interleaved repetitions; {n} messages of {size} B unpaced, {} paced 1 per 200 us{}",
        if processes { "process" } else { "thread" },
        paced,
        max_queued.map_or(String::new(), |m| format!("; topic bound {m} B"))
    );
    let mut figs = [Figures::default(), Figures::default()];
    for rep in 0..reps {
        for (i, redis) in [None, Some(url.as_str())].into_iter().enumerate() {
            let mut a = Server::start(processes, redis, max_queued);
            let mut b = Server::start(processes, redis, max_queued);
            let r = redis.map(|_| &parsed);
            let lat = run_phase(&mut a, &mut b, paced, size, Some(Duration::from_micros(200)), r);
            if n == 0 {
                // paced only (for a profiler)
                let (mut ll, mut rl) = (lat.local.0, lat.remote.0);
                println!(
                    "rep {} {}: paced p50 local {:.1} us remote {:.1} us, got {} / {}; A {:?} B {:?}",
                    rep + 1,
                    if redis.is_some() {
                        "through redis"
                    } else {
                        "local only"
                    },
                    pct(&mut ll, 0.5),
                    pct(&mut rl, 0.5),
                    lat.local.1,
                    lat.remote.1,
                    lat.a,
                    lat.b
                );
                continue;
            }
            let thr = run_phase(&mut a, &mut b, n, size, None, r);
            let f = &mut figs[i];
            let (mut ll, mut rl) = (lat.local.0, lat.remote.0);
            let rate = |r: &(Vec<f64>, usize, Duration)| r.1 as f64 / r.2.as_secs_f64().max(1e-9);
            f.add("local subscriber p50 (us)", pct(&mut ll, 0.5), 1);
            f.add("local subscriber p99 (us)", pct(&mut ll, 0.99), 1);
            if redis.is_some() {
                f.add("remote subscriber p50 (us)", pct(&mut rl, 0.5), 1);
                f.add("remote subscriber p99 (us)", pct(&mut rl, 0.99), 1);
                f.add(
                    "added p50, remote - local (us)",
                    pct(&mut rl, 0.5) - pct(&mut ll, 0.5),
                    1,
                );
                f.add(
                    "added p99, remote - local (us)",
                    pct(&mut rl, 0.99) - pct(&mut ll, 0.99),
                    1,
                );
            }
            f.add("flood: local subscriber got", thr.local.1 as f64, 0);
            f.add("flood: local subscriber msg/s", rate(&thr.local), 0);
            f.add("flood: dropped at A's subscriber", thr.a.missed as f64, 0);
            if redis.is_some() {
                f.add("flood: remote subscriber got", thr.remote.1 as f64, 0);
                f.add("flood: remote subscriber msg/s", rate(&thr.remote), 0);
                f.add("flood: dropped at B's subscriber", thr.b.missed as f64, 0);
                f.add("flood: dropped by A's link", thr.a.dropped as f64, 0);
            }
            f.add(
                "flood: A CPU per published message (us)",
                thr.a.cpu * 1e6 / n as f64,
                2,
            );
            if redis.is_some() {
                let from_redis = thr.b.delivered.max(1) as f64;
                f.add(
                    "flood: B CPU per message from Redis (us)",
                    thr.b.cpu * 1e6 / from_redis,
                    2,
                );
                if let Some(c) = thr.redis {
                    f.add("flood: redis-server CPU per message (us)", c * 1e6 / n as f64, 2);
                }
            }
            eprintln!(
                "rep {} {}: local got {} (dropped {}), remote got {} (dropped {}), A link published {} dropped {}",
                rep + 1,
                if redis.is_some() { "through redis" } else { "local only" },
                thr.local.1,
                thr.a.missed,
                thr.remote.1,
                thr.b.missed,
                thr.a.published,
                thr.a.dropped
            );
        }
    }
    for (label, f) in ["local only", "through redis"].iter().zip(&figs) {
        println!("{label}: median [min–max] of {reps}");
        for (name, v, d) in &f.rows {
            println!("  {name:44} {}", stat(v, *d));
        }
    }
}
