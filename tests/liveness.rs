//! Timers, keep-alive and liveness over real loopback sockets, with short timeouts set by
//! each test (each bounded, a few seconds at most):
//!
//! * an idle WebSocket is pinged; a peer that never pongs is dropped, one that does stays;
//! * TCP keepalive options reach the accepted sockets (read back with getsockopt);
//! * a request body trickled one byte at a time is dropped by the request's deadline;
//! * a peer that stops reading what we send is dropped by the send-stall timeout;
//! * the connection cap refuses the rest by closing them, and serves again below it;
//! * `set_timeout` closes, cancelling keeps; stale ids are refused;
//! * scheduled timers (connection, protocol, closure) fire in order, cancelled ones not;
//! * graceful shutdown sends 1001 to every WebSocket and finishes, lets a download in flight
//!   complete, and closes what is left at its deadline;
//! * two contexts share one port with `reuse_port`;
//! * `echo-server --threads 2` sends 1001 to its clients on SIGTERM and exits 0.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsreactor::proto::OpCode;
use wsreactor::{Context, PendingTimeout, Reason, WriteProtocol};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Reads until EOF (or reset); panics on data or timeout. Returns when it came.
fn wait_eof(s: &mut TcpStream, within: Duration) -> Instant {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Instant::now(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Instant::now(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("no EOF within {within:?}: {e}"),
        }
    }
}

fn closed(log: &Log) -> Vec<Option<u16>> {
    log.snapshot()
        .into_iter()
        .filter_map(|r| match r.ev {
            Ev::Closed { code, .. } => Some(code),
            _ => None,
        })
        .collect()
}

#[test]
fn an_idle_websocket_is_pinged_and_a_peer_that_never_pongs_is_dropped() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.ping_interval(MS(300))
            .ping_timeout(MS(300))
            .protocol("echo", Recorder::echo("echo", &l))
    });
    let mut c = Client::open(s.port);
    let t0 = Instant::now();
    let f = c.read_frame();
    let pinged = t0.elapsed();
    assert_eq!(f.opcode, OpCode::Ping);
    assert!(
        pinged >= MS(250) && pinged < Duration::from_secs(3),
        "pinged after {pinged:?}"
    );
    // No pong: the connection is dropped once the ping timeout passes.
    let t1 = Instant::now();
    assert!(
        c.try_read_frame().unwrap().is_none(),
        "expected the connection to close"
    );
    let dropped = t1.elapsed();
    assert!(
        dropped >= MS(200) && dropped < Duration::from_secs(3),
        "dropped after {dropped:?}"
    );
    log.wait_count(1, Duration::from_secs(2), |r| matches!(r.ev, Ev::Closed { .. }));
    assert_eq!(
        closed(&log),
        vec![None],
        "a dead peer closes without a close code"
    );
}

#[test]
fn a_websocket_that_pongs_or_talks_stays_open() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.ping_interval(MS(400))
            .ping_timeout(MS(400))
            .protocol("echo", Recorder::echo("echo", &l))
    });
    let mut ponger = Client::open(s.port);
    let mut talker = Client::open(s.port);
    let end = Instant::now() + Duration::from_millis(2500);
    let mut pings = 0;
    // The ponger answers pings; the talker sends a message about every 100 ms and so is
    // never idle long enough to be pinged.
    talker.stream.set_read_timeout(Some(MS(100))).unwrap();
    ponger.stream.set_read_timeout(Some(MS(20))).unwrap();
    while Instant::now() < end {
        talker.send_text("hi");
        match talker.try_read_frame() {
            Ok(Some(f)) => assert_eq!(f.opcode, OpCode::Text, "the talker was pinged"),
            Ok(None) => panic!("talker dropped"),
            Err(e) => panic!("talker: {e}"),
        }
        match ponger.try_read_frame() {
            Ok(Some(f)) if f.opcode == OpCode::Ping => {
                pings += 1;
                ponger.send_frame(OpCode::Pong, true, &f.payload);
            }
            Ok(Some(f)) => panic!("unexpected {f:?}"),
            Ok(None) => panic!("ponger dropped"),
            Err(_) => {}
        }
        std::thread::sleep(MS(80));
    }
    assert!(pings >= 3, "only {pings} pings in 2.5 s at a 400 ms interval");
    ponger.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    ponger.send_text("still here");
    // A ping may come before the echo: answer it and read on.
    loop {
        match ponger.read_msg() {
            Msg::Ping(p) => ponger.send_frame(OpCode::Pong, true, &p),
            m => {
                assert_eq!(m, Msg::Text("still here".into()));
                break;
            }
        }
    }
    assert!(closed(&log).is_empty());
}

#[test]
fn tcp_keepalive_options_reach_accepted_sockets() {
    let log = Log::new();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.tcp_keepalive(Some((Duration::from_secs(7), 3, Duration::from_secs(2))))
            .protocol(
                "p",
                Recorder::new("p", &l).hook(move |wsi, r| {
                    if let Reason::Established = r {
                        // SAFETY: the descriptor is the connection's socket, open for the
                        // whole callback; it is only borrowed for these getsockopt calls.
                        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(wsi.socket_fd()) };
                        let sock = socket2::SockRef::from(&fd);
                        *seen2.lock().unwrap() = Some((
                            sock.keepalive().unwrap(),
                            sock.tcp_keepalive_time().unwrap(),
                            sock.tcp_keepalive_interval().unwrap(),
                            sock.tcp_keepalive_retries().unwrap(),
                        ));
                    }
                    Ok(())
                }),
            )
    });
    let _c = Client::open(s.port);
    let end = Instant::now() + Duration::from_secs(3);
    while seen.lock().unwrap().is_none() && Instant::now() < end {
        std::thread::sleep(MS(10));
    }
    let got = seen.lock().unwrap().take().expect("ESTABLISHED ran");
    assert_eq!(got, (true, Duration::from_secs(7), Duration::from_secs(2), 3));
}

#[test]
fn a_trickled_request_body_is_dropped_by_the_request_deadline() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.handshake_timeout(MS(500))
            .http_timeout(Duration::from_secs(1))
            .protocol("p", Recorder::new("p", &l))
    });
    let mut slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let t0 = Instant::now();
    slow.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let mut w = slow.try_clone().unwrap();
    // One body byte every 50 ms: each byte comes long before any per-byte timeout would
    // pass, but the request as a whole is late.
    let trickle = std::thread::spawn(move || {
        for _ in 0..100 {
            if w.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(MS(50));
        }
    });
    // Others are served meanwhile.
    let mut other = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    other.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    other.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    other.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");
    let at = wait_eof(&mut slow, Duration::from_secs(4));
    let took = at - t0;
    assert!(
        took >= MS(900) && took < Duration::from_millis(2500),
        "dropped after {took:?}"
    );
    trickle.join().unwrap();
}

#[test]
fn a_peer_that_stops_reading_is_dropped_by_the_send_timeout() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.send_timeout(MS(500)).protocol(
            "p",
            Recorder::new("p", &l).hook(|wsi, r| {
                if let Reason::Established | Reason::ServerWriteable = r {
                    // Keep the output full whatever the sockets hold: it soon waits on
                    // the peer alone.
                    let chunk = vec![7u8; 256 << 10];
                    while wsi.write(&chunk, WriteProtocol::Binary).is_ok() {}
                    wsi.callback_on_writable();
                }
                Ok(())
            }),
        )
    });
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 << 10).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], s.port).into();
    sock.connect(&addr.into()).unwrap();
    let mut c = Client::from_stream(sock.into());
    c.send(&Req::upgrade(s.port).bytes());
    let t0 = Instant::now();
    // Read nothing more: the server's output stalls.
    log.wait_count(1, Duration::from_secs(5), |r| matches!(r.ev, Ev::Closed { .. }));
    let took = t0.elapsed();
    assert!(
        took >= MS(400) && took < Duration::from_secs(4),
        "dropped after {took:?}"
    );
    assert_eq!(closed(&log), vec![None]);
}

#[test]
fn the_connection_cap_refuses_the_rest_and_serves_again_below_it() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.max_connections(2).protocol("echo", Recorder::echo("echo", &l))
    });
    let mut a = Client::open(s.port);
    let b = Client::open(s.port);
    // The third is closed at once, without a response.
    let mut third = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let t0 = Instant::now();
    let _ = third.write_all(&Req::upgrade(s.port).bytes());
    wait_eof(&mut third, Duration::from_secs(3));
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(s.with_ctx(|ctx| ctx.refused_connections()), 1);
    // The two served are untouched.
    a.send_text("one");
    assert_eq!(a.read_msg(), Msg::Text("one".into()));
    // One leaves: a new client is served again.
    drop(b);
    log.wait_count(1, Duration::from_secs(3), |r| matches!(r.ev, Ev::Closed { .. }));
    let mut d = Client::open(s.port);
    d.send_text("two");
    assert_eq!(d.read_msg(), Msg::Text("two".into()));
}

#[test]
fn set_timeout_closes_and_cancel_keeps_open() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "p",
            Recorder::new("p", &l).hook(|wsi, r| {
                match r {
                    Reason::Established => {
                        wsi.set_timeout(PendingTimeout::User, 1);
                        assert_eq!(wsi.pending_timeout(), PendingTimeout::User);
                    }
                    Reason::Receive { data, .. } if data == b"cancel" => {
                        wsi.cancel_timeout();
                        // Back on the idle ping timer.
                        assert_eq!(wsi.pending_timeout(), PendingTimeout::WsIdle);
                        wsi.write(b"cancelled", WriteProtocol::Text)?;
                    }
                    _ => {}
                }
                Ok(())
            }),
        )
    });
    let mut doomed = Client::open(s.port);
    let t0 = Instant::now();
    let mut kept = Client::open(s.port);
    kept.send_text("cancel");
    assert_eq!(kept.read_msg(), Msg::Text("cancelled".into()));
    assert!(doomed.try_read_frame().unwrap().is_none());
    let took = t0.elapsed();
    assert!(
        took >= MS(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    std::thread::sleep(MS(300));
    kept.send_text("x");
    assert!(
        kept.try_read_frame().is_err(),
        "nothing echoes, and the connection is open"
    );
    // From the context, by id: a stale id is refused, a live one gets its deadline.
    let ids: Vec<_> = log
        .snapshot()
        .iter()
        .filter(|r| matches!(r.ev, Ev::Established { .. }))
        .filter_map(|r| r.conn)
        .collect();
    let (stale, live) = (ids[0], ids[1]);
    let (a, b, p) = s.with_ctx(move |ctx| {
        (
            ctx.set_timeout(stale, PendingTimeout::User, 1),
            ctx.set_timeout(live, PendingTimeout::CloseAck, 1),
            ctx.pending_timeout(live),
        )
    });
    assert!(!a, "a closed connection's id is refused");
    assert!(b);
    assert_eq!(p, Some(PendingTimeout::CloseAck));
    kept.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert!(
        kept.try_read_frame().unwrap().is_none(),
        "closed by the context's set_timeout"
    );
}

#[test]
fn scheduled_timers_fire_in_order_and_cancelled_ones_do_not() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "p",
            Recorder::new("p", &l).hook(|wsi, r| {
                if let Reason::Established = r {
                    wsi.schedule_timer(MS(300), 2);
                    wsi.schedule_timer(MS(100), 1);
                    let h = wsi.schedule_timer(MS(200), 99);
                    assert!(wsi.cancel_timer(h));
                    assert!(!wsi.cancel_timer(h));
                }
                if let Reason::Timer { id } = r {
                    wsi.write(format!("timer {id}").as_bytes(), WriteProtocol::Text)?;
                }
                Ok(())
            }),
        )
    });
    let t0 = Instant::now();
    let mut c = Client::open(s.port);
    assert_eq!(c.read_msg(), Msg::Text("timer 1".into()));
    let t1 = t0.elapsed();
    assert_eq!(c.read_msg(), Msg::Text("timer 2".into()));
    let t2 = t0.elapsed();
    assert!(
        t1 >= MS(100) && t2 >= MS(300) && t2 < Duration::from_secs(3),
        "{t1:?} {t2:?}"
    );
    // A protocol timer and a closure, from the context.
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f2 = fired.clone();
    s.with_ctx(move |ctx| {
        let p = ctx.protocol_by_name("p").unwrap();
        ctx.schedule_protocol_timer(p, MS(50), 5);
        let f3 = f2.clone();
        ctx.schedule(MS(100), move |_| f3.lock().unwrap().push("closure"));
        let h = ctx.schedule(MS(10), move |_| f2.lock().unwrap().push("cancelled"));
        assert!(ctx.cancel_timer(h));
    });
    log.wait_count(1, Duration::from_secs(3), |r| {
        r.conn.is_none() && r.ev == Ev::Other("Timer { id: 5 }".into())
    });
    let end = Instant::now() + Duration::from_secs(3);
    while fired.lock().unwrap().is_empty() && Instant::now() < end {
        std::thread::sleep(MS(10));
    }
    std::thread::sleep(MS(50));
    assert_eq!(*fired.lock().unwrap(), vec!["closure"]);
    // Nothing more arrives on the connection (the cancelled timer stayed cancelled).
    c.stream.set_read_timeout(Some(MS(200))).unwrap();
    assert!(c.try_read_frame().is_err());
}

#[test]
fn graceful_shutdown_sends_1001_to_every_websocket_and_finishes() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("echo", Recorder::echo("echo", &l)));
    let mut clients: Vec<Client> = (0..5).map(|_| Client::open(s.port)).collect();
    let mut idle_http = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    log.wait_count(6, Duration::from_secs(3), |r| r.ev == Ev::WsiCreate);
    s.with_ctx(|ctx| ctx.shutdown(Duration::from_secs(3)));
    for c in &mut clients {
        match c.read_msg() {
            Msg::Close(code, _) => assert_eq!(code, Some(1001)),
            m => panic!("expected a close frame, got {m:?}"),
        }
        c.send_close(1001, "");
    }
    wait_eof(&mut idle_http, Duration::from_secs(3));
    let end = Instant::now() + Duration::from_secs(3);
    while !s.with_ctx(|ctx| ctx.is_shut_down()) {
        assert!(Instant::now() < end, "not shut down in time");
        std::thread::sleep(MS(20));
    }
    assert_eq!(closed(&log).len(), 5);
    // The listener is closed: nobody new gets in.
    assert!(TcpStream::connect(("127.0.0.1", s.port)).is_err());
}

#[test]
fn graceful_shutdown_closes_what_is_left_at_its_deadline() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("echo", Recorder::echo("echo", &l)));
    let mut c = Client::open(s.port);
    let t0 = Instant::now();
    s.with_ctx(|ctx| ctx.shutdown(MS(300)));
    assert!(matches!(c.read_msg(), Msg::Close(Some(1001), _)));
    // No close reply: the deadline ends it.
    assert!(c.try_read_frame().unwrap().is_none());
    let took = t0.elapsed();
    assert!(took >= MS(250) && took < Duration::from_secs(3), "{took:?}");
    assert!(s.with_ctx(|ctx| ctx.is_shut_down()));
}

#[test]
fn two_contexts_share_a_port_with_reuse_port() {
    let build = |port: u16, reuse: bool| {
        Context::builder()
            .port(port)
            .interface("127.0.0.1")
            .reuse_port(reuse)
            .protocol("p", Recorder::new("p", &Log::new()))
            .build()
    };
    let mut a = build(0, true).unwrap();
    let port = a.local_addr().unwrap().port();
    let mut b = build(port, true).expect("a second context on the same port");
    assert!(
        build(port, false).is_err(),
        "without reuse_port the port is taken"
    );
    let mut clients = Vec::new();
    for _ in 0..32 {
        clients.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let end = Instant::now() + Duration::from_secs(3);
    while a.connection_count() + b.connection_count() < 32 && Instant::now() < end {
        a.service(MS(5)).unwrap();
        b.service(MS(5)).unwrap();
    }
    let (na, nb) = (a.connection_count(), b.connection_count());
    assert_eq!(na + nb, 32);
    // The kernel spreads connections by hash: all 32 on one socket is a 2^-31 chance.
    assert!(na > 0 && nb > 0, "{na} and {nb}");
}

#[test]
fn echo_server_with_two_threads_shuts_down_gracefully_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(example("echo-server"))
        .args([
            "--port",
            &port.to_string(),
            "--interface",
            "127.0.0.1",
            "--threads",
            "2",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "echo-server did not start");
        std::thread::sleep(MS(20));
    }
    let mut clients: Vec<Client> = (0..6).map(|_| Client::open(port)).collect();
    for c in &mut clients {
        c.send_text("hello");
        assert_eq!(c.read_msg(), Msg::Text("hello".into()));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    for c in &mut clients {
        assert_eq!(c.read_msg(), Msg::Close(Some(1001), String::new()));
        c.send_close(1001, "");
    }
    let end = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("echo-server did not exit after SIGTERM");
        }
        std::thread::sleep(MS(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn graceful_shutdown_finishes_a_download_in_flight() {
    let dir = std::env::temp_dir().join(format!("wsreactor-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), &body).unwrap();
    let log = Log::new();
    let l = log.clone();
    let root = dir.clone();
    let s = Server::start(&log, move |b| {
        b.resource_path(root).protocol("p", Recorder::new("p", &l))
    });
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 << 10).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], s.port).into();
    sock.connect(&addr.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = vec![0u8; 16 << 10];
    c.read_exact(&mut got).unwrap();
    // Most of the file is still to come when the shutdown starts.
    s.with_ctx(|ctx| ctx.shutdown(Duration::from_secs(5)));
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("the response ends with a clean EOF");
    got.extend_from_slice(&rest);
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert_eq!(got.len() - head_end, body.len(), "the whole file arrived");
    assert!(got[head_end..] == body[..]);
    // The server drains until our EOF (so that its last bytes are not lost to a reset).
    drop(c);
    let end = Instant::now() + Duration::from_secs(3);
    while !s.with_ctx(|ctx| ctx.is_shut_down()) {
        assert!(Instant::now() < end, "not shut down after the download");
        std::thread::sleep(MS(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pipelined_request_gets_its_own_deadline_not_the_keepalive_idle_one() {
    let dir = std::env::temp_dir().join(format!("wsreactor-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body: Vec<u8> = (0..(12u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("big.bin"), &body).unwrap();
    std::fs::write(dir.join("a.txt"), b"a").unwrap();
    let log = Log::new();
    let l = log.clone();
    let root = dir.clone();
    let s = Server::start(&log, move |b| {
        b.resource_path(root)
            .keepalive_timeout(MS(300))
            .protocol("p", Recorder::new("p", &l))
    });
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 << 10).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], s.port).into();
    sock.connect(&addr.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // Both requests in one write: the second is read from the stash once the first
    // response is out, with no read of its own.
    c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Read slowly: the download takes well past the 300 ms keep-alive idle timeout.
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    let t0 = Instant::now();
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}"),
        }
        if t0.elapsed() < MS(900) {
            std::thread::sleep(MS(30));
        }
    }
    assert!(
        t0.elapsed() > MS(400),
        "the download was not slow enough to test this"
    );
    let second = got.windows(12).rposition(|w| w == b"HTTP/1.1 200").unwrap();
    let head_end = second + got[second..].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        got.len() - head_end,
        body.len(),
        "the second response was cut short"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
