//! The test server's own protocols, against the example binary (`examples/test-server`,
//! built beside this test by `cargo test --all-targets`), over loopback:
//!
//! * `lws-status`: a watcher gets the whole list once, then updates at most every 500 ms
//!   carrying only what changed, however fast connections come and go;
//! * `lws-mirror-protocol`: a member that never reads is skipped (oldest dropped) while
//!   the room flows on for the others.

mod common;

use common::*;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `test-server` on a free loopback port, killed (by its PID) when dropped.
struct TestServer {
    child: Child,
    port: u16,
}

impl TestServer {
    fn start() -> TestServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let www = concat!(env!("CARGO_MANIFEST_DIR"), "/www");
        let child = Command::new(example("test-server"))
            .args([
                "--port",
                &port.to_string(),
                "--interface",
                "127.0.0.1",
                "--no-deflate",
            ])
            .args(["--resource-path", www])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "test-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TestServer { child, port }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The numbers of `"id":N` in `json`.
fn ids(json: &str) -> Vec<u64> {
    ids_of(json, "")
}

/// The numbers of `"id":N` in `json` whose entry names `protocol` ("": any).
fn ids_of(json: &str, protocol: &str) -> Vec<u64> {
    json.split("{\"id\":")
        .skip(1)
        .filter(|e| protocol.is_empty() || e.contains(&format!("\"protocol\":\"{protocol}\"")))
        .map(|s| {
            // ids are decimal strings (they pass 2^53)
            s.trim_start_matches('"')
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// The list of `"key":[...]` in `json` (its raw text).
fn list<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":["))? + key.len() + 4;
    Some(&json[at..at + json[at..].find(']')?])
}

#[test]
fn lws_status_updates_are_rate_limited_and_carry_changes_only() {
    let s = TestServer::start();
    // Connections that stay: the whole list would carry them in every update.
    let idle: Vec<Client> = (0..30).map(|_| Client::open_proto(s.port, "echo")).collect();
    // Past one update time: with nobody watching, their arrival is forgotten (the list a
    // watcher gets on joining has them).
    std::thread::sleep(Duration::from_millis(600));
    let mut watcher = Client::open_proto(s.port, "lws-status");
    let Msg::Text(first) = watcher.read_msg() else { panic!("no list first") };
    assert!(first.starts_with("{\"connections\":["), "{first}");
    assert_eq!(ids(&first).len(), 31, "the 30 and the watcher: {first}");
    // The watcher's own arrival may be news in the first update, for the other watchers.
    let listed = ids_of(&first, "echo");
    assert_eq!(listed.len(), 30, "{first}");

    // Updates read as they arrive, timestamped, until 2.5 s after the churn: every change
    // is out by then.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Instant>();
    let reader = std::thread::spawn(move || {
        let mut updates = Vec::new();
        let mut end = None;
        loop {
            if let Ok(t) = done_rx.try_recv() {
                end = Some(t + Duration::from_millis(2500));
            }
            if end.is_some_and(|e| Instant::now() > e) {
                return updates;
            }
            if watcher.quiet_for(Duration::from_millis(20)) {
                continue;
            }
            match watcher.read_msg() {
                Msg::Text(t) => updates.push((Instant::now(), t)),
                other => panic!("{other:?}"),
            }
        }
    });
    // Churn: 60 connections opened and closed one after another, as fast as they go, in
    // two waves with a pause between so that some changes are reported.
    let t0 = Instant::now();
    let mut churned = 0;
    for wave in 0..2 {
        let mut held = Vec::new();
        for _ in 0..30 {
            held.push(Client::open_proto(s.port, "echo"));
            churned += 1;
        }
        if wave == 0 {
            // Long enough for one update to report them as added.
            std::thread::sleep(Duration::from_millis(700));
        }
        for c in held {
            c.finish();
        }
    }
    let churn = t0.elapsed();
    done_tx.send(Instant::now()).unwrap();
    let updates = reader.join().unwrap();
    let window = t0.elapsed();
    eprintln!(
        "{churned} connections churned in {churn:?}; {} updates in {window:?}",
        updates.len()
    );

    // Rate: at most one per 500 ms (one more for the edges of the window), and apart.
    assert!(
        updates.len() as u128 <= window.as_millis() / 500 + 1,
        "{} updates in {window:?}",
        updates.len()
    );
    for w in updates.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(gap >= Duration::from_millis(350), "two updates {gap:?} apart");
    }
    // Shape: changes and stats, never the whole list again; none lists a connection that
    // stayed.
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (_, u) in &updates {
        assert!(!u.contains("\"connections\""), "the whole list again: {u}");
        let (Some(a), Some(r)) = (list(u, "added"), list(u, "removed")) else {
            panic!("not a change: {u}")
        };
        assert!(u.contains("\"stats\":{"), "{u}");
        added.extend(ids_of(a, "echo"));
        removed.extend(
            r.split(',')
                .filter(|x| !x.is_empty())
                .map(|x| x.trim_matches('"').parse::<u64>().unwrap()),
        );
    }
    for id in added.iter().chain(&removed) {
        assert!(
            !listed.contains(id),
            "connection {id} did not change: {updates:?}"
        );
    }
    // The first wave was seen (added, then removed); the second came and went between two
    // updates, so it is no news at all.
    assert!(added.len() >= 30, "added: {added:?}");
    added.sort_unstable();
    removed.sort_unstable();
    assert_eq!(added, removed, "everything added was removed");
    assert!(added.len() < churned, "the second wave was reported: {added:?}");
    drop(idle);
}

/// A mirror member: `?mirror=room`.
fn member(port: u16, rcvbuf: Option<usize>) -> Client {
    let req = Req::upgrade(port)
        .path("/?mirror=room")
        .set("Sec-WebSocket-Protocol", "lws-mirror-protocol");
    match rcvbuf {
        None => Client::open_with(port, req).0,
        Some(n) => {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.set_recv_buffer_size(n).unwrap();
            let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
            sock.connect(&addr.into()).unwrap();
            let mut c = Client::from_stream(sock.into());
            c.send(&req.bytes());
            assert_eq!(c.read_response().expect("a response").status, 101);
            c
        }
    }
}

#[test]
fn a_mirror_member_that_never_reads_is_skipped_and_the_room_flows_on() {
    let s = TestServer::start();
    // Never reads a byte, with a small receive buffer so the kernel soaks up little.
    let stuck = member(s.port, Some(16 << 10));
    let mut sender = member(s.port, None);
    let mut other = member(s.port, None);
    // 24 MiB through the room: 24 times the room's 1 MiB bound per member, far more than
    // the stuck member's socket buffers hold.
    const N: usize = 96;
    let msg = |i: usize| {
        let mut m = vec![(i % 251) as u8; 256 << 10];
        m[..4].copy_from_slice(&(i as u32).to_be_bytes());
        m
    };
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < N {
            match other.read_msg() {
                Msg::Binary(b) => got.push(u32::from_be_bytes(b[..4].try_into().unwrap()) as usize),
                m => panic!("{m:?}"),
            }
        }
        got
    });
    let t0 = Instant::now();
    for i in 0..N {
        sender.send_binary(&msg(i));
        // The sender is a member too: its copy comes back, in order, so the room is not
        // frozen by the stuck member (a push-back room would stop reading the sender).
        match sender.read_msg() {
            Msg::Binary(b) => {
                assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()) as usize, i);
                assert_eq!(b, msg(i));
            }
            m => panic!("{m:?}"),
        }
    }
    let got = reader.join().unwrap();
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "the reading member got all, in order"
    );
    eprintln!("{N} messages of 256 KiB through the room in {:?}", t0.elapsed());
    // The stuck member is still a member (skipped, not closed); a member joining now
    // gets what is said next.
    let mut late = member(s.port, None);
    sender.send_text("after");
    assert_eq!(sender.read_msg(), Msg::Text("after".into()));
    assert_eq!(late.read_msg(), Msg::Text("after".into()));
    // When it reads at last: some of the first messages (what its sockets held), a gap
    // (the oldest were dropped to keep its queue within the room's 1 MiB bound), the
    // newest, in order, and the text after them.
    let mut stuck = stuck;
    let mut got = Vec::new();
    let last = loop {
        match stuck.read_msg() {
            Msg::Binary(b) => got.push(u32::from_be_bytes(b[..4].try_into().unwrap()) as usize),
            m => break m,
        }
    };
    eprintln!("the stuck member got {} of {N}: {got:?}", got.len());
    assert_eq!(last, Msg::Text("after".into()));
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    assert!(got.len() < N / 2, "not skipped: {} of {N}", got.len());
    assert_eq!(got.last(), Some(&(N - 1)), "the newest is kept");
}
