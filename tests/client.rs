//! Outgoing connections over loopback: the blocking client and the in-loop client role
//! against our own server (ws:// and wss://), and the failures a client must report as
//! `CLIENT_CONNECTION_ERROR` without disturbing the loop.

mod common;
#[path = "common/tls.rs"]
mod tls_common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tls_common::*;
use wsreactor::blocking::{BlockingClient, Message};
use wsreactor::{ClientConnect, Close, Context, Protocol, Reason, SslMode, Wsi};

fn echo_server(
    build: impl FnOnce(wsreactor::ContextBuilder) -> wsreactor::ContextBuilder + Send + 'static,
) -> Server {
    let log = Log::new();
    let l = log.clone();
    Server::start(&log, move |b| {
        build(
            b.protocol("echo", Recorder::echo("echo", &l))
                .accept_any_protocol(true),
        )
    })
}

#[test]
fn blocking_client_plain_echo_ping_close() {
    let s = echo_server(|b| b);
    let mut c = BlockingClient::connect(&format!("ws://127.0.0.1:{}/x?y=1", s.port)).expect("connects");
    c.send_text("hello").unwrap();
    assert_eq!(c.receive().unwrap(), Some(Message::Text("hello".into())));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    c.send_binary(&big).unwrap();
    assert_eq!(c.receive().unwrap(), Some(Message::Binary(big)));
    c.ping(b"p1").unwrap();
    assert_eq!(c.receive().unwrap(), Some(Message::Pong(b"p1".to_vec())));
    c.close().unwrap();
}

#[test]
fn blocking_client_over_tls() {
    let ca = Ca::new("client-test CA");
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    let (cert, key) = (leaf.cert_pem.clone(), leaf.key_pem.clone());
    let s = echo_server(move |b| b.ssl_cert_pem(cert, key));
    // A self-signed (here: unknown CA) certificate is refused when verifying ...
    let err = BlockingClient::connect(&format!("wss://localhost:{}/", s.port))
        .err()
        .expect("refused");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    // ... and accepted by the insecure mode.
    let mut c = BlockingClient::connect_insecure(&format!("wss://localhost:{}/", s.port)).expect("connects");
    c.send_text("over tls").unwrap();
    assert_eq!(c.receive().unwrap(), Some(Message::Text("over tls".into())));
    c.close().unwrap();
}

/// Records the client reasons seen by an in-loop client protocol.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

struct ClientProto(Seen);

impl Protocol for ClientProto {
    type Session = u32;
    fn callback(&mut self, wsi: &mut Wsi<'_>, n: &mut u32, reason: Reason<'_>) -> Result<(), Close> {
        let mut v = self.0 .0.lock().unwrap();
        match reason {
            Reason::ClientAppendHandshakeHeader => {
                assert!(wsi.append_handshake_header("X-Test", "yes"));
                v.push("append".into());
            }
            Reason::ClientFilterPreEstablish => v.push(format!("filter upgrade={:?}", wsi.header("upgrade"))),
            Reason::ClientEstablished => {
                v.push(format!("established session={n}"));
                wsi.send_text("from the loop")?;
            }
            Reason::ClientReceive { data, .. } => {
                v.push(format!("receive {}", String::from_utf8_lossy(data)));
                wsi.close(1000, "done");
            }
            Reason::ClientConnectionError { reason } => v.push(format!("error {reason}")),
            Reason::Closed { code, .. } => v.push(format!("closed {code:?}")),
            _ => {}
        }
        Ok(())
    }
}

fn run_until(ctx: &mut Context, secs: u64, done: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !done() && Instant::now() < end {
        ctx.service(Duration::from_millis(20)).unwrap();
    }
}

#[test]
fn in_loop_client_reasons_and_session() {
    let s = echo_server(|b| b);
    let seen = Seen::default();
    let mut ctx = Context::builder()
        .no_listen()
        .protocol("client", ClientProto(seen.clone()))
        .build()
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/", s.port);
    ctx.connect_with_session(ClientConnect::url(&url).unwrap(), 42u32)
        .unwrap();
    let v = seen.0.clone();
    run_until(&mut ctx, 5, || {
        v.lock().unwrap().iter().any(|e| e.starts_with("closed"))
    });
    let got = seen.0.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            "append".to_string(),
            "filter upgrade=Some(\"websocket\")".into(),
            "established session=42".into(),
            "receive from the loop".into(),
            "closed Some(1000)".into(),
        ]
    );
    // a session of the wrong type is refused at once
    assert!(ctx
        .connect_with_session(ClientConnect::url(&url).unwrap(), "x")
        .is_err());
}

fn expect_error(url: &str, ssl: Option<SslMode>, secs: u64) -> String {
    let seen = Seen::default();
    let mut ctx = Context::builder()
        .no_listen()
        .handshake_timeout(Duration::from_secs(secs))
        .protocol("client", ClientProto(seen.clone()))
        .build()
        .unwrap();
    let mut info = ClientConnect::url(url).unwrap();
    if let Some(m) = ssl {
        info = info.ssl(m);
    }
    ctx.connect(info).unwrap();
    let v = seen.0.clone();
    run_until(&mut ctx, secs + 5, || {
        v.lock().unwrap().iter().any(|e| e.starts_with("error"))
    });
    let got = seen.0.lock().unwrap().clone();
    let errs: Vec<&String> = got.iter().filter(|e| e.starts_with("error")).collect();
    assert_eq!(errs.len(), 1, "one CLIENT_CONNECTION_ERROR: {got:?}");
    assert!(
        !got.iter().any(|e| e.starts_with("closed")),
        "no CLOSED after an error: {got:?}"
    );
    assert_eq!(ctx.connection_count(), 0);
    errs[0].clone()
}

/// A one-shot fake server answering each connection with `reply`, then closing.
fn fake_server(reply: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { break };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    port
}

/// A one-shot fake server that upgrades properly (the right accept key for the client's
/// key) with `extra` response headers, then sends `then` and hands back what the client
/// sent after the 101 (read for up to 2 s).
fn fake_upgrader(extra: &'static str, then: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "EOF inside the request");
            req.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(req).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("the client sends a key")
            .trim()
            .to_owned();
        let accept = wsreactor::proto::handshake::accept_key(key.as_bytes());
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(then).unwrap();
        let mut got = Vec::new();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    (port, t)
}

#[test]
fn client_refuses_what_it_did_not_ask_for() {
    // a sub-protocol the client did not offer
    let (port, t) = fake_upgrader("Sec-WebSocket-Protocol: chat\r\n", b"");
    let e = expect_error(&format!("ws://127.0.0.1:{port}/"), None, 3);
    assert!(e.contains("chat") && e.contains("did not offer"), "{e}");
    t.join().unwrap();
    // an extension the client did not offer
    let (port, t) = fake_upgrader("Sec-WebSocket-Extensions: x-unheard-of\r\n", b"");
    let e = expect_error(&format!("ws://127.0.0.1:{port}/"), None, 3);
    assert!(e.contains("x-unheard-of"), "{e}");
    t.join().unwrap();
    // a masked frame from the server, after a good handshake: the client fails the
    // connection with 1002 (RFC 6455 5.1), delivering CLOSED with no close code of the peer
    let (port, t) = fake_upgrader("", b"\x81\x82\x01\x02\x03\x04\x49\x6b");
    let seen = Seen::default();
    let mut ctx = Context::builder()
        .no_listen()
        .protocol("client", ClientProto(seen.clone()))
        .build()
        .unwrap();
    ctx.connect(ClientConnect::url(&format!("ws://127.0.0.1:{port}/")).unwrap())
        .unwrap();
    let v = seen.0.clone();
    run_until(&mut ctx, 5, || {
        v.lock().unwrap().iter().any(|e| e.starts_with("closed"))
    });
    let got = seen.0.lock().unwrap().clone();
    assert!(got.contains(&"closed None".to_string()), "{got:?}");
    assert!(
        !got.iter().any(|e| e.starts_with("receive")),
        "a masked frame was delivered: {got:?}"
    );
    let end = Instant::now() + Duration::from_secs(3);
    while ctx.connection_count() > 0 && Instant::now() < end {
        ctx.service(Duration::from_millis(20)).unwrap();
    }
    assert_eq!(ctx.connection_count(), 0, "the failed connection is closed");
    drop(ctx);
    let sent = t.join().unwrap();
    // the client's frames after the 101: its "from the loop" text, then a masked close 1002
    let mut rest = sent.as_slice();
    let mut codes = Vec::new();
    while let Ok(Some((h, n))) = wsreactor::proto::FrameHeader::parse(rest) {
        let key = h.mask.expect("client frames are masked");
        let total = n + h.payload_len as usize;
        let mut payload = rest[n..total].to_vec();
        wsreactor::proto::mask::apply_mask(&mut payload, key, 0);
        if h.opcode == wsreactor::proto::OpCode::Close {
            codes.push(u16::from_be_bytes([payload[0], payload[1]]));
        }
        rest = &rest[total..];
    }
    assert_eq!(codes, [1002], "the client's close frames: {codes:?}");
}

#[test]
fn client_errors_are_reported_once() {
    // a port that refuses
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = expect_error(&format!("ws://127.0.0.1:{refused}/"), None, 3);
    assert!(e.contains("refused") || e.contains("connect"), "{e}");
    // a name that does not resolve
    let e = expect_error("ws://no-such-host.invalid/", None, 5);
    assert!(e.contains("no-such-host.invalid"), "{e}");
    // non-101 status
    let port = fake_server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    let e = expect_error(&format!("ws://127.0.0.1:{port}/"), None, 3);
    assert!(e.contains("404"), "{e}");
    // wrong accept key
    let port = fake_server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n");
    let e = expect_error(&format!("ws://127.0.0.1:{port}/"), None, 3);
    assert!(e.contains("Accept"), "{e}");
    // garbage
    let port = fake_server(b"\x00\x01garbage\r\n\r\n");
    let e = expect_error(&format!("ws://127.0.0.1:{port}/"), None, 3);
    assert!(e.contains("bad response"), "{e}");
    // a server that closes mid-handshake
    let port = fake_server(b"HTTP/1.1 101 Switching");
    let e = expect_error(&format!("ws://127.0.0.1:{port}/"), None, 3);
    assert!(e.contains("closed"), "{e}");
    // a server that never answers: the handshake timeout
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let e = expect_error(&format!("ws://127.0.0.1:{port}/"), None, 1);
    assert!(e.contains("timed out"), "{e}");
    drop(silent);
    // a TLS certificate for another name
    let ca = Ca::new("other-name CA");
    let leaf = ca.server(&["elsewhere.test"]);
    let (cert, key) = (leaf.cert_pem.clone(), leaf.key_pem.clone());
    let dir = TempDir::new("client-ca");
    let ca_file = dir.write("ca.pem", ca.pem());
    let s = echo_server(move |b| b.ssl_cert_pem(cert, key));
    let seen = Seen::default();
    let mut ctx = Context::builder()
        .no_listen()
        .ssl_ca_filepath(&ca_file)
        .protocol("client", ClientProto(seen.clone()))
        .build()
        .unwrap();
    ctx.connect(ClientConnect::url(&format!("wss://localhost:{}/", s.port)).unwrap())
        .unwrap();
    let v = seen.0.clone();
    run_until(&mut ctx, 5, || {
        v.lock().unwrap().iter().any(|e| e.starts_with("error"))
    });
    let got = seen.0.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|e| e.starts_with("error") && e.to_lowercase().contains("certificate")),
        "{got:?}"
    );
}

#[test]
fn connect_timeout_is_its_own() {
    // A listener whose accept queue is full and which never accepts: the kernel drops
    // further SYNs, so a connect to it hangs (no refusal, no answer).
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let _fill: Vec<_> = (0..4)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    let seen = Seen::default();
    let mut ctx = Context::builder()
        .no_listen()
        .connect_timeout(Duration::from_millis(500))
        .handshake_timeout(Duration::from_secs(30))
        .protocol("client", ClientProto(seen.clone()))
        .build()
        .unwrap();
    let t = Instant::now();
    ctx.connect(ClientConnect::new("127.0.0.1", addr.port())).unwrap();
    let v = seen.0.clone();
    run_until(&mut ctx, 10, || {
        v.lock().unwrap().iter().any(|e| e.starts_with("error"))
    });
    let got = seen.0.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|e| e.starts_with("error") && e.contains("timed out connecting")),
        "{got:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{:?}: the connect timeout, not the handshake one",
        t.elapsed()
    );
}

/// A listener whose accept queue is full and which never accepts: connects to it hang.
fn hanging_listener() -> (socket2::Socket, std::net::SocketAddr, Vec<std::net::TcpStream>) {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let fill = (0..4)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    (l, addr, fill)
}

#[test]
fn happy_eyeballs_races_the_next_address() {
    // The first address hangs; the second, tried 250 ms later beside it, answers: the
    // connection is made through it long before the connect timeout.
    let (_l, hang, _fill) = hanging_listener();
    let s = echo_server(|b| b);
    let good = std::net::SocketAddr::from(([127, 0, 0, 1], s.port));
    let seen = Seen::default();
    let mut ctx = Context::builder()
        .no_listen()
        .connect_timeout(Duration::from_secs(8))
        .protocol("client", ClientProto(seen.clone()))
        .build()
        .unwrap();
    let t = Instant::now();
    ctx.connect(ClientConnect::new("example.test", s.port).addresses(vec![hang, good]))
        .unwrap();
    let v = seen.0.clone();
    run_until(&mut ctx, 10, || {
        v.lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("closed") || e.starts_with("error"))
    });
    let got = seen.0.lock().unwrap().clone();
    assert!(got.iter().any(|e| e == "receive from the loop"), "{got:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Both hang: one error, from the connect timeout.
    let (_l2, hang2, _fill2) = hanging_listener();
    let seen = Seen::default();
    let mut ctx = Context::builder()
        .no_listen()
        .connect_timeout(Duration::from_millis(800))
        .protocol("client", ClientProto(seen.clone()))
        .build()
        .unwrap();
    ctx.connect(ClientConnect::new("example.test", 1).addresses(vec![hang, hang2]))
        .unwrap();
    let v = seen.0.clone();
    run_until(&mut ctx, 5, || {
        v.lock().unwrap().iter().any(|e| e.starts_with("error"))
    });
    let got = seen.0.lock().unwrap().clone();
    assert_eq!(
        got.iter().filter(|e| e.starts_with("error")).count(),
        1,
        "{got:?}"
    );
    assert!(got.iter().any(|e| e.contains("timed out connecting")), "{got:?}");
    // A refused first address falls through to the next at once.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let seen = Seen::default();
    let mut ctx = Context::builder()
        .no_listen()
        .protocol("client", ClientProto(seen.clone()))
        .build()
        .unwrap();
    let t = Instant::now();
    ctx.connect(ClientConnect::new("example.test", s.port).addresses(vec![refused, good]))
        .unwrap();
    let v = seen.0.clone();
    run_until(&mut ctx, 5, || {
        v.lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("closed") || e.starts_with("error"))
    });
    let got = seen.0.lock().unwrap().clone();
    assert!(got.iter().any(|e| e == "receive from the loop"), "{got:?}");
    assert!(
        t.elapsed() < Duration::from_millis(200) + Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
}
