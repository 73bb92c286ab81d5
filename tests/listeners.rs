//! Several listeners on one context: IPv4 and IPv6, TLS and plain, a Unix-domain path;
//! each reachable, each with its own address (and a TLS one with its own certificate);
//! the error paths.

mod common;
#[path = "common/tls.rs"]
mod tls_common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_common::*;
use wsreactor::proto::{encoder, OpCode};
use wsreactor::{Context, Listen, ListenAddr};

fn tcp_port(ctx: &Context, i: usize) -> u16 {
    match ctx.listener_addr(i) {
        Some(ListenAddr::Tcp(a)) => a.port(),
        other => panic!("listener {i}: {other:?}"),
    }
}

#[test]
fn one_context_several_listeners_tls_plain_ipv6_unix() {
    init_logger();
    let log = Log::new();
    let ca = Ca::new("wsreactor listeners CA");
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    let dir = TempDir::new("listeners");
    let path = dir.0.join("ws.sock");
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let (tx, rx) = std::sync::mpsc::channel();
    let l = log.clone();
    let (cert, key, p) = (leaf.cert_pem.clone(), leaf.key_pem.clone(), path.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let stop = stop2;
        let mut b = Context::builder()
            .no_listen()
            .ssl_cert_pem(cert, key)
            .listen(Listen::tcp("127.0.0.1", 0))
            .listen(Listen::tcp("127.0.0.1", 0).ssl(true))
            .listen(Listen::unix(&p));
        if ipv6 {
            b = b.listen(Listen::tcp("::1", 0));
        }
        let mut ctx = b.protocol("echo", Recorder::echo("echo", &l)).build().unwrap();
        let addrs: Vec<_> = (0..ctx.listener_count())
            .map(|i| ctx.listener_addr(i).unwrap())
            .collect();
        let first = ctx.local_addr();
        tx.send((addrs, first, tcp_port(&ctx, 0), tcp_port(&ctx, 1)))
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end && !stop.load(Ordering::SeqCst) {
            ctx.service(Duration::from_millis(10)).unwrap();
        }
        drop(ctx);
    });
    let (addrs, first, plain, tls) = rx.recv().unwrap();
    assert_eq!(addrs.len(), if ipv6 { 4 } else { 3 });
    assert_eq!(
        first,
        match &addrs[0] {
            ListenAddr::Tcp(a) => Some(*a),
            _ => None,
        },
        "local_addr is the first TCP listener's"
    );
    assert_ne!(plain, tls);
    assert_eq!(addrs[2], ListenAddr::Unix(path.clone()));

    // Plain on the first.
    let mut c = Client::open(plain);
    c.send_text("plain");
    c.expect_text("plain");
    c.send_close(1000, "");
    c.expect_close();
    // TLS on the second, with the context's certificate.
    let mut t = TlsClient::open(tls, &client_config(&ca), "localhost");
    t.send_text("tls");
    t.expect_text("tls");
    t.send_close(1000, "");
    drop(t);
    // The TLS port refuses plain HTTP (400), as the context's TLS settings say.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", tls)).unwrap();
    raw.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Unix-domain.
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    u.write_all(&Req::upgrade(80).bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(u.read(&mut byte).unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut f = Vec::new();
    encoder::encode_frame(&mut f, OpCode::Text, true, Some([9, 8, 7, 6]), b"unix");
    encoder::encode_close(&mut f, Some(1000), "", Some([1, 1, 1, 1]));
    u.write_all(&f).unwrap();
    let mut echo = [0u8; 6];
    u.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x04unix");
    drop(u);
    // IPv6 loopback.
    if let Some(ListenAddr::Tcp(a)) = addrs.get(3) {
        assert!(a.is_ipv6());
        let s = std::net::TcpStream::connect(a).unwrap();
        let mut c = Client::from_stream(s);
        c.send(&Req::upgrade(a.port()).bytes());
        assert_eq!(c.read_response().unwrap().status, 101);
        c.send_text("six");
        c.expect_text("six");
        c.send_close(1000, "");
        c.expect_close();
    }
    // Every message came through (the server records them before echoing).
    let n = if ipv6 { 4 } else { 3 };
    assert!(eventually(Duration::from_secs(5), || log.messages(None).len() == n));
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();
    let mut got = log.messages(None);
    got.sort();
    let mut want = vec![b"plain".to_vec(), b"tls".to_vec(), b"unix".to_vec()];
    if ipv6 {
        want.push(b"six".to_vec());
    }
    want.sort();
    assert_eq!(got, want);
    assert!(!path.exists(), "the socket file goes with the context");
}

#[test]
fn each_tls_listener_may_have_its_own_certificate() {
    init_logger();
    let log = Log::new();
    let (ca_a, ca_b, ca_c) = (Ca::new("site A CA"), Ca::new("site B CA"), Ca::new("site C CA"));
    let (a, b, c) = (
        ca_a.server(&["localhost"]),
        ca_b.server(&["localhost"]),
        ca_c.server(&["localhost"]),
    );
    let dir = TempDir::new("listener-certs");
    let (b_cert, b_key) = (dir.write("b.pem", &b.cert_pem), dir.write("b.key", &b.key_pem));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, l) = (stop.clone(), log.clone());
    let (a_pem, c_pem) = (
        (a.cert_pem.clone(), a.key_pem.clone()),
        (c.cert_pem.clone(), c.key_pem.clone()),
    );
    let server = std::thread::spawn(move || {
        let mut ctx = Context::builder()
            .no_listen()
            .ssl_cert_pem(a_pem.0, a_pem.1)
            .listen(Listen::tcp("127.0.0.1", 0).ssl(true))
            .listen(Listen::tcp("127.0.0.1", 0).ssl_cert(b_cert, b_key))
            .listen(Listen::tcp("127.0.0.1", 0).ssl_cert_pem(c_pem.0, c_pem.1))
            .protocol("echo", Recorder::echo("echo", &l))
            .build()
            .unwrap();
        tx.send([0, 1, 2].map(|i| tcp_port(&ctx, i))).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end && !stop2.load(Ordering::SeqCst) {
            ctx.service(Duration::from_millis(10)).unwrap();
        }
    });
    let ports = rx.recv().unwrap();
    // Each port shows its certificate, verified against its CA, and echoes.
    for (port, ca, leaf, text) in [
        (ports[0], &ca_a, &a, "context's"),
        (ports[1], &ca_b, &b, "own, files"),
        (ports[2], &ca_c, &c, "own, memory"),
    ] {
        let mut t = TlsClient::open(port, &client_config(ca), "localhost");
        assert!(
            t.server_leaf() == leaf.der,
            "port {port} ({text}) showed another certificate"
        );
        t.send_text(text);
        t.expect_text(text);
        t.send_close(1000, "");
    }
    // A client that trusts only site A's CA is refused by site B's port.
    assert!(TlsClient::connect(ports[1], &client_config(&ca_a), "localhost").is_err());
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();

    // A listener's own certificate needs none of the context's.
    let build = |b: wsreactor::ContextBuilder| {
        b.no_listen()
            .protocol("echo", Recorder::echo("echo", &log))
            .build()
    };
    let ctx = build(
        Context::builder()
            .listen(Listen::tcp("127.0.0.1", 0).ssl_cert_pem(b.cert_pem.clone(), b.key_pem.clone())),
    );
    assert!(ctx.is_ok(), "{:?}", ctx.err());
    // A missing certificate file fails the build, naming the file.
    let missing = dir.0.join("missing.pem");
    let e =
        build(Context::builder().listen(Listen::tcp("127.0.0.1", 0).ssl_cert(&missing, dir.0.join("b.key"))))
            .err()
            .unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    // Nor is a Unix-domain listener TLS with a certificate of its own.
    let e = build(
        Context::builder()
            .listen(Listen::unix(dir.0.join("s.sock")).ssl_cert_pem(b.cert_pem.clone(), b.key_pem.clone())),
    );
    assert!(e.is_err());
}

#[test]
fn listener_errors_and_a_stale_socket_file() {
    init_logger();
    let log = Log::new();
    let build = |b: wsreactor::ContextBuilder| {
        b.no_listen()
            .protocol("echo", Recorder::echo("echo", &log))
            .build()
    };
    // TLS asked for without a certificate.
    let e = build(Context::builder().listen(Listen::tcp("127.0.0.1", 0).ssl(true)))
        .err()
        .unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    // A Unix listener is plain.
    let dir = TempDir::new("listener-errors");
    let path = dir.0.join("a.sock");
    let e = build(
        Context::builder()
            .ssl_cert_pem(
                Ca::new("x").server(&["localhost"]).cert_pem,
                Ca::new("y").server(&["localhost"]).key_pem,
            )
            .listen(Listen::unix(&path).ssl(true)),
    )
    .err()
    .unwrap();
    assert!(!e.to_string().is_empty());
    // A socket file left behind (by a crashed run, say) is replaced...
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let ctx = build(Context::builder().listen(Listen::unix(&path))).unwrap();
    assert_eq!(ctx.listener_addr(0), Some(ListenAddr::Unix(path.clone())));
    assert!(ctx.local_addr().is_none(), "no TCP listener");
    drop(ctx);
    // ...but never a file that is not a socket.
    let file = dir.write("not-a-socket", "keep me");
    assert!(build(Context::builder().listen(Listen::unix(&file))).is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    // A port taken by another listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = build(Context::builder().listen(Listen::tcp("127.0.0.1", port)))
        .err()
        .unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
}
