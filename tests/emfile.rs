//! `accept` at the process's descriptor limit (EMFILE): the loop does not spin, the
//! listener is not lost, and once descriptors free up the clients waiting in the backlog
//! are accepted without another client having to connect (the retry timer).
//!
//! The limit is per process and the tests of a binary run in threads, so the server runs
//! in a child process: this test binary again, with an environment variable saying so,
//! under a lowered `RLIMIT_NOFILE`. Bounded in time; the child is stopped by closing its
//! stdin, else killed by PID. Both readiness modes: wsreactor's own mio loop, and a
//! program's `poll(2)` loop (`external_poll`, the listener taken out of the program's poll
//! set while starved, and given back by the retry timer through `service_pending`).

#[path = "../examples/common/extpoll.rs"]
#[allow(dead_code)]
mod extpoll;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wsreactor::{Close, Context, Protocol, ProtocolContext, ProtocolEvent, Reason, Wsi};

/// Set in the child to the readiness mode it runs: "mio" or "external".
const CHILD: &str = "WSREACTOR_EMFILE_CHILD";
const MIO: &str = "accept_at_the_fd_limit_neither_spins_nor_loses_the_backlog";
const EXTERNAL: &str = "accept_at_the_fd_limit_in_an_external_poll_loop";
/// Descriptors the child may open beyond those open when it starts.
const SPARE: u64 = 8;
const CLIENTS: usize = 24;

/// Keeps the external loop's poll array (unused in the mio mode).
#[derive(Default)]
struct P(extpoll::PollArray);

impl Protocol for P {
    type Session = ();
    fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> {
        Ok(())
    }
    fn protocol_callback(&mut self, _: &mut ProtocolContext<'_>, event: ProtocolEvent) -> Result<(), Close> {
        extpoll::track(&self.0, event);
        Ok(())
    }
}

fn child(external: bool) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, open + SPARE, hard).unwrap();
    let fds = extpoll::PollArray::default();
    let mut b = Context::builder()
        .port(0)
        .interface("127.0.0.1")
        // Above the limit: this test is about accept failing, not the cap refusing.
        .max_connections(1000)
        .protocol("p", P(fds.clone()));
    if external {
        b = b.external_poll();
    }
    let mut ctx = b.build().unwrap();
    println!("PORT {}", ctx.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    let end = Instant::now() + Duration::from_secs(30);
    while rx.try_recv().is_err() && Instant::now() < end {
        if external {
            extpoll::round(&mut ctx, &fds, Duration::from_millis(500)).unwrap();
        } else {
            ctx.service(Duration::from_millis(500)).unwrap();
        }
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Whether the server answered this client's request within `wait`.
fn answered(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut head = [0u8; 12];
    match c.read_exact(&mut head) {
        Ok(()) => {
            assert_eq!(&head, b"HTTP/1.1 404");
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("client: {e}"),
    }
}

#[test]
fn accept_at_the_fd_limit_neither_spins_nor_loses_the_backlog() {
    if let Some(mode) = std::env::var_os(CHILD) {
        return child(mode == "external");
    }
    at_the_limit(MIO, "mio");
}

#[test]
fn accept_at_the_fd_limit_in_an_external_poll_loop() {
    if let Some(mode) = std::env::var_os(CHILD) {
        return child(mode == "external");
    }
    at_the_limit(EXTERNAL, "external");
}

/// Runs test `name` again as a child in readiness `mode`, and checks it from outside.
fn at_the_limit(name: &str, mode: &str) {
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = proc.id();
    let guard = KillOnDrop(pid);
    let mut out = BufReader::new(proc.stdout.take().unwrap());
    let port: u16 = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended without a port"
        );
        // The harness may have written "test NAME ... " before it on the same line.
        if let Some(i) = line.find("PORT ") {
            break line[i + 5..].trim().parse().unwrap();
        }
    };
    // More clients than the child has descriptors: the rest wait in the backlog.
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            c
        })
        .collect();
    let mut waiting: Vec<TcpStream> = Vec::new();
    let mut served: Vec<TcpStream> = Vec::new();
    for mut c in clients.drain(..) {
        if answered(&mut c, Duration::from_millis(100)) {
            served.push(c);
        } else {
            waiting.push(c);
        }
    }
    assert!(
        !served.is_empty() && !waiting.is_empty(),
        "{} served, {} waiting",
        served.len(),
        waiting.len()
    );
    assert!(served.len() as u64 <= SPARE);
    // Starved, the loop must sleep: a spinning one burns about 100 ticks a second.
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let burnt = cpu_ticks(pid) - t0;
    assert!(burnt < 30, "the starved loop used {burnt} ticks in 1 s");
    // Free descriptors by closing the served clients: the waiting ones are accepted by the
    // retry timer, no new client connecting. Repeat until all are through.
    let end = Instant::now() + Duration::from_secs(15);
    let mut rounds = 0;
    while !waiting.is_empty() {
        assert!(Instant::now() < end, "{} clients still waiting", waiting.len());
        served.clear();
        rounds += 1;
        let mut still = Vec::new();
        for mut c in waiting.drain(..) {
            if answered(&mut c, Duration::from_millis(100)) {
                served.push(c);
            } else {
                still.push(c);
            }
        }
        waiting = still;
    }
    assert!(rounds >= 2);
    drop(proc.stdin.take());
    let end = Instant::now() + Duration::from_secs(5);
    while proc.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "the child did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(proc.wait().unwrap().success());
    std::mem::forget(guard);
}

/// Kills the child by PID if the test fails before it ends.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
