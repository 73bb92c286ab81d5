//! Hostile input over real loopback sockets: regression tests for what a hostile-input
//! battery found. Each test is bounded in time (socket timeouts, deadlines), well under
//! 10 s.
//!
//! * non-minimal payload length encodings fail the connection with 1002;
//! * a pong flood from a client that never reads is held by `max_unsent` (the server stops
//!   reading), the connection stays healthy and other connections are served;
//! * an echo of messages larger than `max_unsent` to a client that does not read is never
//!   refused with back-pressure (pieces are cut to fit), the server stops reading, and
//!   every echo arrives intact once the client reads;
//! * request heads with bare LF line ends are answered at once, not at the handshake
//!   timeout;
//! * a slowloris head is cut by the handshake timeout while others are served;
//! * a panicking callback closes only its own connection, with 1011;
//! * a frame announcing an enormous length is refused at its header.

mod common;

use common::*;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsreactor::proto::{encoder, OpCode};
use wsreactor::{Close, Protocol, Reason, WriteProtocol, Wsi};

const MIB: usize = 1 << 20;

/// A masked client frame with an explicit length form: `form` is 126 (16-bit) or 127
/// (64-bit), whatever the payload's length.
fn frame_with_form(op: OpCode, form: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut v = vec![0x80 | op.as_u8(), 0x80 | form];
    if form == 126 {
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Reads a sysctl holding "min default max"; its max.
fn sysctl_max(path: &str) -> Option<usize> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// A client socket with small fixed buffers (which turns off the kernel's autotuning of
/// them), upgraded.
fn small_buffer_client(port: u16) -> Client {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(128 << 10).unwrap();
    sock.set_send_buffer_size(128 << 10).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    sock.connect(&addr.into()).unwrap();
    let mut c = Client::from_stream(sock.into());
    c.send(&Req::upgrade(port).bytes());
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 101, "upgrade refused: {}", r.raw);
    c
}

/// The most a non-reading client can get written into a server that stops reading once its
/// out buffer is over `max_unsent`: what the sockets hold (the client's small buffers, the
/// server's receive buffer for the requests and send buffer for the replies, both
/// autotuned up to the kernel maxima: `tcp_rmem`/`tcp_wmem`, 6 MiB and 4 MiB by default, 32
/// MiB receive on some hosts), plus `max_unsent`, the server's receive buffer, and a
/// replies/requests size ratio (a 127-byte pong per 131-byte ping, 16 KiB echo per 16 KiB
/// message) covered by a factor 2. On a default kernel this is about 25 MiB; 64 MiB at the
/// least keeps it clear of any noise. A server that reads on regardless passes it within a
/// few seconds (one such took 496 MB).
fn written_bound(max_unsent: usize) -> usize {
    let rmem = sysctl_max("/proc/sys/net/ipv4/tcp_rmem").unwrap_or(6 * MIB);
    let wmem = sysctl_max("/proc/sys/net/ipv4/tcp_wmem").unwrap_or(4 * MIB);
    (2 * (rmem + wmem + max_unsent + MIB)).max(64 * MIB)
}

// ---- a. non-minimal lengths ---------------------------------------------------------------

#[test]
fn non_minimal_length_fails_with_1002_then_tcp_closes() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| b.protocol("echo", Recorder::echo("echo", &l)));
    let cases: [(&str, OpCode, u8, Vec<u8>); 3] = [
        ("5 bytes in the 64-bit form", OpCode::Binary, 127, vec![7; 5]),
        ("100 bytes in the 16-bit form", OpCode::Binary, 126, vec![7; 100]),
        (
            "a 4-byte ping in the 16-bit form",
            OpCode::Ping,
            126,
            b"ping".to_vec(),
        ),
    ];
    for (what, op, form, payload) in cases {
        let mut c = Client::open(s.port);
        let key = c.next_mask();
        c.send(&frame_with_form(op, form, &payload, key));
        let f = c.read_frame();
        assert_eq!(
            f.opcode,
            OpCode::Close,
            "{what}: the server answered {f:?} instead of a close frame"
        );
        assert_eq!(f.close().0, Some(1002), "{what}: {f:?}");
        let t = c.expect_eof();
        assert!(t < Duration::from_secs(2), "{what}: TCP closed only after {t:?}");
    }
    // nothing of it reached the protocol
    assert_eq!(log.count(|r| r.ev.kind() == "RECEIVE"), 0, "{:?}", log.kinds());
    // the same lengths in their minimal forms are fine
    let mut c = Client::open(s.port);
    c.send_binary(&[7; 5]);
    assert_eq!(c.read_msg(), Msg::Binary(vec![7; 5]));
    c.send_binary(&[7; 126]);
    assert_eq!(c.read_msg(), Msg::Binary(vec![7; 126]));
}

// ---- b. pong flood ------------------------------------------------------------------------

#[test]
fn pong_flood_is_bounded_by_max_unsent_and_the_connection_survives() {
    const MAX_UNSENT: usize = 64 << 10;
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.max_unsent(MAX_UNSENT)
            .protocol("echo", Recorder::echo("echo", &l))
    });
    let mut other = Client::open(s.port);
    let mut c = small_buffer_client(s.port);

    // 500 masked 125-byte pings per write
    let ping_payload: Vec<u8> = (0..125u8).collect();
    let one = c.frame(OpCode::Ping, true, &ping_payload);
    let flen = one.len();
    let batch: Vec<u8> = one.iter().copied().cycle().take(flen * 500).collect();

    let bound = written_bound(MAX_UNSENT);
    c.stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let t0 = Instant::now();
    let mut written = 0usize;
    let mut blocked = false;
    while written < bound && t0.elapsed() < Duration::from_secs(5) {
        let off = written % batch.len();
        match c.stream.write(&batch[off..]) {
            Ok(n) => written += n,
            Err(e) if is_timeout(&e) => {
                blocked = true;
                break;
            }
            Err(e) => panic!("write failed after {written} bytes: {e}"),
        }
    }
    eprintln!(
        "pong flood: {:.1} MiB written in {:?}, blocked: {blocked} (bound {} MiB)",
        written as f64 / MIB as f64,
        t0.elapsed(),
        bound / MIB
    );
    assert!(
        blocked && written < bound,
        "the server kept reading pings from a client that reads no pongs: {:.1} MiB written in \
         {:?} without the writes blocking (bound {} MiB)",
        written as f64 / MIB as f64,
        t0.elapsed(),
        bound / MIB
    );

    // other connections go on while this one is held
    let t = Instant::now();
    other.send_text("meanwhile");
    other.expect_text("meanwhile");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "echo took {:?}",
        t.elapsed()
    );

    // Part two: the client reads. Every whole ping gets its pong, in order, then the echo
    // of a text sent after the last ping.
    let pings = written / flen;
    let mut reader = Client::from_stream(c.stream.try_clone().unwrap());
    let want = ping_payload.clone();
    let read_thread = std::thread::spawn(move || {
        let mut pongs = 0usize;
        loop {
            match reader.read_msg() {
                Msg::Pong(p) => {
                    assert_eq!(p, want, "pong {pongs} carries the wrong payload");
                    pongs += 1;
                }
                Msg::Text(t) if t == "done" => return pongs,
                other => panic!("after {pongs} pongs: unexpected {other:?}"),
            }
        }
    });
    c.stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    // finish the ping cut by the last write, then the marker
    let rest = flen - written % flen;
    if rest != flen {
        let off = written % batch.len();
        c.send(&batch[off..off + rest]);
    }
    let pings = pings + usize::from(rest != flen);
    let t = Instant::now();
    other.send_text("during the drain");
    other.expect_text("during the drain");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "echo took {:?}",
        t.elapsed()
    );
    c.send_text("done");
    let pongs = read_thread.join().expect("reader thread");
    assert_eq!(pongs, pings, "every ping answered with one pong");
    assert!(t0.elapsed() < Duration::from_secs(9), "{:?}", t0.elapsed());
}

// ---- c. back-pressure on an echo ---------------------------------------------------------

/// Echoes with `?`, and records whether a write was ever refused.
struct BackPressureEcho {
    received: Arc<AtomicUsize>,
    refused: Arc<AtomicBool>,
}

impl Protocol for BackPressureEcho {
    type Session = ();

    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        if let Reason::Receive {
            data,
            binary,
            first,
            last,
            ..
        } = reason
        {
            self.received.fetch_add(data.len(), Ordering::SeqCst);
            let wp = match (first, binary) {
                (false, _) => WriteProtocol::Continuation,
                (true, false) => WriteProtocol::Text,
                (true, true) => WriteProtocol::Binary,
            };
            if let Err(e) = wsi.write_fragment(data, wp, last) {
                self.refused.store(true, Ordering::SeqCst);
                return Err(e.into());
            }
        }
        Ok(())
    }
}

#[test]
fn echo_of_messages_over_max_unsent_to_a_non_reader_is_held_not_refused() {
    const MAX_UNSENT: usize = 64 << 10;
    // Twice the bound: before pieces were cut to fit in half of it, the echo of such a
    // piece overran the bound and the write failed (and `?` closed with 1011).
    const MSG: usize = 128 << 10;
    let received = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicBool::new(false));
    let (r2, c2) = (received.clone(), refused.clone());
    let log = Log::new();
    let s = Server::start(&log, move |b| {
        b.max_unsent(MAX_UNSENT).protocol(
            "bp",
            BackPressureEcho {
                received: r2,
                refused: c2,
            },
        )
    });
    let mut c = small_buffer_client(s.port);
    let payload: Vec<u8> = (0..MSG).map(|i| (i * 7 + i / 251) as u8).collect();
    let frame = c.frame(OpCode::Binary, true, &payload);
    let batch: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 16).collect();

    // flood without reading, until writes block (at least a second, at most 8 s)
    let bound = written_bound(MAX_UNSENT);
    c.stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let t0 = Instant::now();
    let mut written = 0usize;
    let mut last_blocked = false;
    while written < bound
        && t0.elapsed() < Duration::from_secs(8)
        && !(last_blocked && t0.elapsed() >= Duration::from_secs(1))
    {
        let off = written % batch.len();
        match c.stream.write(&batch[off..]) {
            Ok(n) => {
                written += n;
                last_blocked = false;
            }
            Err(e) if is_timeout(&e) => last_blocked = true,
            Err(e) => panic!("write failed after {written} bytes: {e}"),
        }
    }
    let flood = t0.elapsed();
    eprintln!(
        "echo flood: {:.1} MiB written in {flood:?}, blocked at the end: {last_blocked}, \
         server received {:.1} MiB (bound {} MiB)",
        written as f64 / MIB as f64,
        received.load(Ordering::SeqCst) as f64 / MIB as f64,
        bound / MIB
    );
    assert!(
        last_blocked && written < bound,
        "the server did not stop reading: {:.1} MiB written in {flood:?}",
        written as f64 / MIB as f64
    );
    assert!(
        !refused.load(Ordering::SeqCst),
        "an echo write was refused with back-pressure"
    );

    // read: every complete message written comes back intact, then the connection still
    // echoes (the rest of the cut frame, and one more message)
    c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let complete = written / frame.len();
    let mut echoed = 0usize;
    let mut cur: Option<Vec<u8>> = None;
    let mut read_echo = |c: &mut Client, echoed: &mut usize| loop {
        let f = match c.try_read_frame() {
            Ok(Some(f)) => f,
            other => panic!("after {echoed} echoes: {other:?}"),
        };
        assert!(
            matches!(f.opcode, OpCode::Binary | OpCode::Continuation),
            "unexpected {:?} after {echoed} echoes",
            f.opcode
        );
        assert_eq!(
            cur.is_some(),
            f.opcode == OpCode::Continuation,
            "echo {echoed}: bad fragmentation"
        );
        let m = cur.get_or_insert_with(Vec::new);
        m.extend_from_slice(&f.payload);
        if f.fin {
            assert!(m == &payload, "echo {echoed} differs");
            cur = None;
            *echoed += 1;
            return;
        }
    };
    while echoed < complete {
        read_echo(&mut c, &mut echoed);
    }
    let off = written % frame.len();
    c.send(&frame[off..]);
    read_echo(&mut c, &mut echoed);
    let again = c.frame(OpCode::Binary, true, &payload);
    c.send(&again);
    read_echo(&mut c, &mut echoed);
    assert_eq!(echoed, complete + 2);
    assert!(!refused.load(Ordering::SeqCst));
}

// ---- d. bare-LF request heads ----------------------------------------------------------------

/// Sends `req` on a fresh connection and reads the response head (until an empty line or
/// EOF), giving up after `within`. Returns the head and the time it took.
fn raw_exchange(port: u16, req: &[u8], within: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let t = Instant::now();
    s.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && !got.windows(2).any(|w| w == b"\n\n") {
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if is_timeout(&e) => panic!(
                "no response within {within:?} to {:?} (got {:?})",
                String::from_utf8_lossy(req),
                String::from_utf8_lossy(&got)
            ),
            Err(e) => panic!("read: {e}"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), t.elapsed())
}

fn status_of(head: &str) -> Option<u16> {
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn lf_only_request_heads_are_answered_promptly() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.handshake_timeout(Duration::from_secs(10))
            .protocol("echo", Recorder::echo("echo", &l))
    });
    let within = Duration::from_secs(2);
    let (head, t) = raw_exchange(s.port, b"GET / HTTP/1.1\nHost: x\n\n", within);
    let status = status_of(&head);
    assert!(
        matches!(status, Some(200 | 404 | 400)),
        "plain GET with bare LFs: {head:?} after {t:?}"
    );
    let upgrade = format!(
        "GET / HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\n\
         Sec-WebSocket-Key: {RFC_KEY}\nSec-WebSocket-Version: 13\n\n"
    );
    let (head, t) = raw_exchange(s.port, upgrade.as_bytes(), within);
    let status = status_of(&head);
    assert!(
        matches!(status, Some(101 | 400)),
        "upgrade with bare LFs: {head:?} after {t:?}"
    );
}

// ---- e. more hostile cases -----------------------------------------------------------------

#[test]
fn slowloris_head_is_cut_by_the_handshake_timeout_while_others_are_served() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.handshake_timeout(Duration::from_secs(1))
            .protocol("echo", Recorder::echo("echo", &l))
    });
    let mut slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    slow.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut reader = slow.try_clone().unwrap();
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // one byte every 100 ms, a head that never ends (a header value growing forever)
    let trickle = std::thread::spawn(move || {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut i = 0usize;
        while !stop2.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(6) {
            let b = head.get(i).copied().unwrap_or(b'a');
            if slow.write_all(&[b]).is_err() {
                return i;
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        i
    });
    // meanwhile, a WebSocket client and an HTTP client are served at once
    let t = Instant::now();
    let mut c = Client::open(s.port);
    c.send_text("meanwhile");
    c.expect_text("meanwhile");
    let (head, _) = raw_exchange(
        s.port,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(status_of(&head).is_some(), "{head:?}");
    assert!(t.elapsed() < Duration::from_millis(800), "{:?}", t.elapsed());

    // the slow head is cut about 1 s after the connection
    reader.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let mut tmp = [0u8; 1024];
    let cut = loop {
        match reader.read(&mut tmp) {
            // a 408 or similar is allowed before the close
            Ok(n) if n > 0 => continue,
            Ok(_) => break t0.elapsed(),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break t0.elapsed(),
            Err(e) => panic!("slowloris connection still open after {:?}: {e}", t0.elapsed()),
        }
    };
    stop.store(true, Ordering::SeqCst);
    let sent = trickle.join().unwrap();
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_millis(2500),
        "slowloris cut after {cut:?} ({sent} bytes trickled)"
    );
    // and the server still serves
    c.send_text("after");
    c.expect_text("after");
}

#[test]
fn panicking_callback_closes_only_its_own_connection() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "p",
            Recorder::new("p", &l).hook(|wsi, r| {
                if let Reason::Receive { data: b"panic", .. } = r {
                    panic!("callback panics on purpose (hostile test)");
                }
                echo(wsi, r)
            }),
        )
    });
    let mut other = Client::open(s.port);
    other.send_text("before");
    other.expect_text("before");

    let mut bad = Client::open(s.port);
    bad.send_text("panic");
    // the panicking connection is closed with 1011, then the TCP connection ends
    bad.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut code = None;
    let end = loop {
        match bad.try_read_frame() {
            Ok(Some(f)) if f.opcode == OpCode::Close => {
                code = f.close().0;
                continue;
            }
            Ok(Some(f)) => panic!("unexpected frame from the panicking connection: {f:?}"),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(end.is_ok(), "the panicking connection was not closed: {end:?}");
    assert_eq!(code, Some(1011), "the panicking connection's close code");

    // the other connection goes on, and new ones are accepted
    other
        .stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let f = other.frame(OpCode::Text, true, b"after");
    let _ = other.stream.write_all(&f);
    let reply = other.try_read_frame();
    assert!(
        matches!(&reply, Ok(Some(f)) if f.opcode == OpCode::Text && f.payload == b"after"),
        "a panic in another connection's callback broke this one: {reply:?}; the server's \
         service() loop {}",
        if eventually(Duration::from_millis(500), || {
            TcpStream::connect(("127.0.0.1", s.port)).is_err()
        }) {
            "is gone (the listener refuses connections)"
        } else {
            "still accepts connections"
        }
    );
    blocking_echo(s.port, "fresh");
}

#[test]
fn enormous_announced_length_is_refused_at_the_header() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.max_message_size(1 << 20)
            .max_frame_size(1 << 20)
            .protocol("echo", Recorder::echo("echo", &l))
    });
    let mut c = Client::open(s.port);
    // 2^62 bytes announced, then only a few sent: the refusal must not wait for them
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&(1u64 << 62).to_be_bytes());
    h.extend_from_slice(&c.next_mask());
    h.extend_from_slice(&[0; 16]);
    let t = Instant::now();
    c.send(&h);
    let f = c.read_frame();
    assert_eq!(f.opcode, OpCode::Close, "{f:?}");
    assert_eq!(f.close().0, Some(1009));
    c.expect_eof();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // a fragmented message growing past the limit is refused too, at the header that
    // crosses it
    let mut c = Client::open(s.port);
    let key = c.next_mask();
    let mut w = Vec::new();
    encoder::encode_frame(&mut w, OpCode::Binary, false, Some(key), &[1; 600 << 10]);
    c.send(&w);
    let mut h = vec![0x00, 0x80 | 127];
    h.extend_from_slice(&((600u64) << 10).to_be_bytes());
    h.extend_from_slice(&key);
    c.send(&h);
    assert_eq!(c.expect_close().0, Some(1009));
    c.expect_eof();
}
