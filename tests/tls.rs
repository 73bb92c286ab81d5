//! TLS over real loopback sockets, with a rustls client and certificates made by rcgen in
//! the test. Each test is bounded in time (socket timeouts, deadlines), well under 10 s.
//!
//! * wss echo, `is_ssl`; https file serving with keep-alive;
//! * SNI certificate choice and `tls_server_name`;
//! * client certificates, required and optional, `PERFORM_CLIENT_CERT_VERIFICATION`;
//! * the cipher list; a stalled handshake cut by the handshake timeout; garbage;
//! * plain HTTP on the TLS port (refused, served, redirected);
//! * FIN without `close_notify`, and our `close_notify`;
//! * large messages across record boundaries; rx flow control and WRITEABLE;
//! * session resumption; application data in the client's last handshake flight.

mod common;
#[path = "common/tls.rs"]
mod tls_common;

use common::*;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tls_common::*;
use wsreactor::proto::OpCode;
use wsreactor::rustls::pki_types::CertificateDer;
use wsreactor::rustls::{self, CipherSuite, ClientConnection, HandshakeKind, ProtocolVersion};
use wsreactor::{ClientCerts, Close, Context, ContextBuilder, PlainHttp, Reason};

const T: Duration = Duration::from_secs(5);
const MIB: usize = 1 << 20;

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
struct Pki {
    ca: Ca,
    server: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new("wsreactor test CA");
        let server = ca.server(&["localhost", "127.0.0.1"]);
        Pki { ca, server }
    }

    /// The builder with the server certificate set.
    fn tls(&self) -> impl FnOnce(ContextBuilder) -> ContextBuilder + Send + 'static {
        let (cert, key) = (self.server.cert_pem.clone(), self.server.key_pem.clone());
        move |b| b.ssl_cert_pem(cert, key)
    }

    fn client(&self) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca)
    }
}

/// A TLS echo server (protocol "echo") with extra settings.
fn echo_server(
    log: &Log,
    pki: &Pki,
    more: impl FnOnce(ContextBuilder) -> ContextBuilder + Send + 'static,
) -> Server {
    let l = log.clone();
    let tls = pki.tls();
    Server::start(log, move |b| {
        more(tls(b)).protocol("echo", Recorder::echo("echo", &l))
    })
}

/// One wss round trip on a fresh connection, closed cleanly, with the library's own
/// blocking client verifying the server against the test CA (`BlockingOptions::ca_file`).
fn wss_round_trip(port: u16, pki: &Pki, text: &str) {
    use wsreactor::blocking::{BlockingClient, Message};
    let dir = TempDir::new("wss-round-trip");
    let ca = dir.write("ca.pem", pki.ca.pem());
    let mut c = BlockingClient::options()
        .ca_file(ca)
        .timeout(T)
        .connect_url(&format!("wss://localhost:{port}/"))
        .expect("wss connect, server verified against the test CA");
    c.send_text(text).unwrap();
    assert_eq!(c.receive().unwrap(), Some(Message::Text(text.to_owned())));
    c.close().unwrap();
}

// ---- 1. wss echo --------------------------------------------------------------------------------

/// A protocol echoing and noting `is_ssl()` at ESTABLISHED.
fn ssl_noting_echo(l: &Log, seen: Arc<Mutex<Vec<bool>>>) -> Recorder {
    Recorder::new("echo", l).hook(move |wsi, r| {
        if let Reason::Established = r {
            seen.lock().unwrap().push(wsi.is_ssl());
        }
        echo(wsi, r)
    })
}

#[test]
fn wss_echo_text_and_binary_and_is_ssl() {
    let pki = Pki::new();
    let log = Log::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (l, s2) = (log.clone(), seen.clone());
    let tls = pki.tls();
    let s = Server::start(&log, move |b| tls(b).protocol("echo", ssl_noting_echo(&l, s2)));
    let mut c = TlsClient::open(s.port, &pki.client(), "localhost");
    assert_eq!(c.conn().alpn_protocol(), None, "no ALPN offered, none chosen");
    c.send_text("hello over TLS");
    c.expect_text("hello over TLS");
    let bin: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    c.send_binary(&bin);
    assert_eq!(c.read_msg(), Msg::Binary(bin));
    c.send_frame(OpCode::Ping, true, b"p");
    assert_eq!(c.read_msg(), Msg::Pong(b"p".to_vec()));
    c.close();
    log.wait_count(1, T, |r| matches!(r.ev, Ev::Closed { code: Some(1000), .. }));
    assert_eq!(*seen.lock().unwrap(), [true]);

    // the same protocol on a plain context says false
    let plain_log = Log::new();
    let plain_seen = Arc::new(Mutex::new(Vec::new()));
    let (l, s2) = (plain_log.clone(), plain_seen.clone());
    let p = Server::start(&plain_log, move |b| b.protocol("echo", ssl_noting_echo(&l, s2)));
    blocking_echo(p.port, "plain");
    assert_eq!(*plain_seen.lock().unwrap(), [false]);
}

/// The blocking client verifies `wss://` against the CA file it is given, and refuses the
/// same server without it (web PKI roots) or with another CA.
#[test]
fn blocking_client_verifies_against_its_ca_file() {
    use wsreactor::blocking::BlockingClient;
    let pki = Pki::new();
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| b);
    wss_round_trip(s.port, &pki, "verified");
    let url = format!("wss://localhost:{}/", s.port);
    let err = BlockingClient::options().timeout(T).connect_url(&url).err();
    let err = err
        .expect("the test CA is not a web PKI root: refused")
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let dir = TempDir::new("blocking-other-ca");
    let other = dir.write("other.pem", Ca::new("another CA").pem());
    let err = BlockingClient::options()
        .ca_file(other)
        .timeout(T)
        .connect_url(&url)
        .err();
    let err = err.expect("a certificate of another CA: refused").to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let missing = BlockingClient::options()
        .ca_file(dir.0.join("no-such.pem"))
        .timeout(T)
        .connect_url(&url)
        .err()
        .expect("a missing CA file is an error");
    assert!(missing.to_string().contains("no-such.pem"), "{missing}");
}

// ---- 2. https GET ------------------------------------------------------------------------------

#[test]
fn https_static_file_with_keep_alive() {
    let pki = Pki::new();
    let dir = TempDir::new("files");
    let body = pattern(2, 100_000);
    dir.write("hello.txt", "hello over https\n");
    dir.write("big.bin", &body);
    let root = dir.0.clone();
    let log = Log::new();
    let l = log.clone();
    let tls = pki.tls();
    let s = Server::start(&log, move |b| {
        tls(b)
            .resource_path(root)
            .protocol("http", Recorder::new("http", &l))
    });
    let mut c = TlsClient::connect(s.port, &pki.client(), "localhost").unwrap();
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (r, b) = c.read_full_response();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(b, b"hello over https\n");
    assert!(
        r.header("content-type").unwrap().starts_with("text/plain"),
        "{}",
        r.raw
    );
    assert!(r.header("last-modified").is_some(), "{}", r.raw);
    assert_ne!(
        r.header("connection").map(str::to_ascii_lowercase).as_deref(),
        Some("close")
    );

    // keep-alive: a second request (a larger file, many records) on the same session
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (r, b) = c.read_full_response();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.header("content-length"), Some("100000"));
    assert!(b == body, "big.bin differs");

    c.send(b"GET /missing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let (r, _) = c.read_full_response();
    assert_eq!(r.status, 404, "{}", r.raw);
    // the server closes with close_notify: a clean end
    assert_eq!(c.read_to_end().expect("clean TLS end"), b"");
}

// ---- 3. SNI ------------------------------------------------------------------------------------

#[test]
fn sni_picks_the_certificate_and_reports_the_name() {
    let ca = Ca::new("sni CA");
    // The default also names "unknown.test" so the client can verify it there: the server
    // knows nothing of that (only the SNI table's names choose a certificate).
    let default = ca.server(&["localhost", "127.0.0.1", "unknown.test"]);
    let a = ca.server(&["a.test"]);
    let b = ca.server(&["b.test"]);
    let log = Log::new();
    let names = Arc::new(Mutex::new(Vec::new()));
    let (l, n2) = (log.clone(), names.clone());
    let (dc, dk) = (default.cert_pem.clone(), default.key_pem.clone());
    let (ac, ak) = (a.cert_pem.clone(), a.key_pem.clone());
    let (bc, bk) = (b.cert_pem.clone(), b.key_pem.clone());
    let s = Server::start(&log, move |bld| {
        bld.ssl_cert_pem(dc, dk)
            .ssl_sni_cert_pem("a.test", ac, ak)
            .ssl_sni_cert_pem("B.Test", bc, bk)
            .protocol(
                "echo",
                Recorder::new("echo", &l).hook(move |wsi, r| {
                    if let Reason::Established = r {
                        n2.lock().unwrap().push(wsi.tls_server_name().map(str::to_owned));
                    }
                    echo(wsi, r)
                }),
            )
    });
    let cfg = client_config(&ca);
    let cases: [(&str, &Leaf); 5] = [
        ("a.test", &a),
        ("b.test", &b),
        ("unknown.test", &default),
        ("127.0.0.1", &default),
        ("localhost", &default),
    ];
    for (name, want) in cases {
        let mut c = TlsClient::open(s.port, &cfg, name);
        assert!(c.server_leaf() == want.der, "{name}: wrong certificate");
        c.send_text(name);
        c.expect_text(name);
        c.close();
    }
    assert_eq!(
        *names.lock().unwrap(),
        [
            Some("a.test".to_owned()),
            Some("b.test".to_owned()),
            Some("unknown.test".to_owned()),
            None,
            Some("localhost".to_owned())
        ]
    );
}

// ---- 4. client certificates --------------------------------------------------------------------

struct ClientPki {
    pki: Pki,
    good: Leaf,
    other_ca: Ca,
    stranger: Leaf,
    dir: TempDir,
}

impl ClientPki {
    fn new() -> ClientPki {
        let pki = Pki::new();
        let good = pki.ca.client("alice");
        let other_ca = Ca::new("another CA");
        let stranger = other_ca.client("mallory");
        let dir = TempDir::new("ca");
        dir.write("ca.pem", pki.ca.pem());
        ClientPki {
            pki,
            good,
            other_ca,
            stranger,
            dir,
        }
    }

    fn ca_path(&self) -> std::path::PathBuf {
        self.dir.0.join("ca.pem")
    }

    fn config(&self, cert: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
        client_config_with(&[self.pki.ca.der()], cert, &[])
    }
}

/// What the certificate protocol saw.
#[derive(Default)]
struct CertSeen {
    /// The leaf of each PERFORM_CLIENT_CERT_VERIFICATION chain.
    verified: Vec<CertificateDer<'static>>,
    /// `peer_certificates()` leaf at each ESTABLISHED.
    established: Vec<Option<CertificateDer<'static>>>,
}

fn cert_server(log: &Log, cp: &ClientPki, mode: ClientCerts, refuse: bool) -> (Server, Arc<Mutex<CertSeen>>) {
    let seen = Arc::new(Mutex::new(CertSeen::default()));
    let (l, s2) = (log.clone(), seen.clone());
    let tls = cp.pki.tls();
    let ca = cp.ca_path();
    let s = Server::start(log, move |b| {
        tls(b).ssl_ca_filepath(ca).ssl_client_certs(mode).protocol(
            "certs",
            Recorder::new("certs", &l).hook(move |wsi, r| {
                match r {
                    Reason::PerformClientCertVerification { chain } => {
                        s2.lock().unwrap().verified.push(chain[0].clone());
                        if refuse {
                            return Err(Close::new(1008, "not you"));
                        }
                    }
                    Reason::Established => {
                        let leaf = wsi.peer_certificates().map(|c| c[0].clone());
                        s2.lock().unwrap().established.push(leaf);
                    }
                    _ => {}
                }
                echo(wsi, r)
            }),
        )
    });
    (s, seen)
}

/// A TLS connection that sends an upgrade request; what came of it.
fn attempt(port: u16, config: &Arc<rustls::ClientConfig>) -> io::Result<Option<Response>> {
    let mut c = TlsClient::connect(port, config, "localhost")?;
    c.try_send(&upgrade_request("localhost"))?;
    c.try_read_response()
}

#[test]
fn client_certs_required() {
    let cp = ClientPki::new();
    let log = Log::new();
    let (s, seen) = cert_server(&log, &cp, ClientCerts::Required, false);

    // no certificate: refused (with TLS 1.3 the client learns it from the alert after its
    // own Finished)
    let r = attempt(s.port, &cp.config(None));
    let e = r.expect_err("a client without a certificate must be refused");
    assert!(format!("{e}").contains("CertificateRequired"), "{e}");

    // a good one: accepted, seen by the protocol, reported by the Wsi
    let mut c = TlsClient::open(s.port, &cp.config(Some(&cp.good)), "localhost");
    c.send_text("alice");
    c.expect_text("alice");
    c.close();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.verified.len(), 1);
        assert!(seen.verified[0] == cp.good.der);
        assert_eq!(seen.established.len(), 1);
        assert!(seen.established[0].as_ref() == Some(&cp.good.der));
    }
    assert_eq!(
        log.count(|r| matches!(&r.ev, Ev::Other(s) if s.starts_with("PerformClientCertVerification"))),
        1
    );

    // one from another CA: refused, and the protocol never hears of it
    let cfg = client_config_with(&[cp.pki.ca.der()], Some(&cp.stranger), &[]);
    let e = attempt(s.port, &cfg).expect_err("a certificate from another CA must be refused");
    assert!(
        format!("{e}").contains("UnknownCA") || format!("{e}").contains("BadCertificate"),
        "{e}"
    );
    assert_eq!(seen.lock().unwrap().verified.len(), 1);
    let _ = &cp.other_ca;

    // and the server goes on serving
    let mut c = TlsClient::open(s.port, &cp.config(Some(&cp.good)), "localhost");
    c.send_text("still here");
    c.expect_text("still here");
    c.close();
}

#[test]
fn client_cert_refused_by_the_protocol_closes_before_any_response() {
    let cp = ClientPki::new();
    let log = Log::new();
    let (s, seen) = cert_server(&log, &cp, ClientCerts::Required, true);
    match attempt(s.port, &cp.config(Some(&cp.good))) {
        Ok(Some(r)) => panic!("a response came: {}", r.raw),
        Ok(None) => {}
        // a FIN without close_notify, or a reset
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{e}"
        ),
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.verified.len(), 1);
    assert!(seen.verified[0] == cp.good.der);
    assert!(seen.established.is_empty());
    assert_eq!(
        log.count(|r| matches!(r.ev, Ev::Filter { .. })),
        0,
        "{:?}",
        log.kinds()
    );
}

#[test]
fn client_certs_optional() {
    let cp = ClientPki::new();
    let log = Log::new();
    let (s, seen) = cert_server(&log, &cp, ClientCerts::Optional, false);

    let mut c = TlsClient::open(s.port, &cp.config(None), "localhost");
    c.send_text("anonymous");
    c.expect_text("anonymous");
    c.close();
    {
        let seen = seen.lock().unwrap();
        assert!(seen.verified.is_empty());
        assert_eq!(seen.established, [None]);
    }

    let mut c = TlsClient::open(s.port, &cp.config(Some(&cp.good)), "localhost");
    c.send_text("alice");
    c.expect_text("alice");
    c.close();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.verified.len(), 1);
        assert!(seen.verified[0] == cp.good.der);
        assert!(seen.established[1].as_ref() == Some(&cp.good.der));
    }

    // a certificate that does not verify is still refused
    let cfg = client_config_with(&[cp.pki.ca.der()], Some(&cp.stranger), &[]);
    assert!(attempt(s.port, &cfg).is_err());
}

// ---- 5. cipher list ----------------------------------------------------------------------------

#[test]
fn cipher_list_is_applied_and_checked() {
    let pki = Pki::new();
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| b.ssl_cipher_list("TLS_AES_256_GCM_SHA384"));
    let mut c = TlsClient::open(s.port, &pki.client(), "localhost");
    let suite = c.conn().negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, CipherSuite::TLS13_AES_256_GCM_SHA384);
    c.send_text("x");
    c.expect_text("x");
    c.close();
    drop(s);

    // a TLS 1.2 suite, with a TLS 1.2-only client (rcgen's keys are ECDSA P-256)
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| {
        b.ssl_cipher_list("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
    });
    let cfg = client_config_with(&[pki.ca.der()], None, &[&rustls::version::TLS12]);
    let mut c = TlsClient::open(s.port, &cfg, "localhost");
    assert_eq!(c.conn().protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(
        c.conn().negotiated_cipher_suite().unwrap().suite(),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
    c.send_text("tls12");
    c.expect_text("tls12");
    c.close();
    drop(s);

    // an unknown name fails build(), naming it
    let tls = pki.tls();
    let r = tls(Context::builder().port(0).interface("127.0.0.1"))
        .ssl_cipher_list("TLS_AES_128_GCM_SHA256:TLS_NO_SUCH_SUITE")
        .protocol("echo", Recorder::echo("echo", &Log::new()))
        .build();
    match r {
        Ok(_) => panic!("an unknown cipher suite was accepted"),
        Err(e) => assert!(e.to_string().contains("TLS_NO_SUCH_SUITE"), "{e}"),
    }
}

// ---- 6. stalled handshake ----------------------------------------------------------------------

#[test]
fn stalled_handshake_is_cut_by_the_handshake_timeout() {
    let pki = Pki::new();
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| b.handshake_timeout(Duration::from_millis(500)));
    let hello = client_hello(&pki.client(), "localhost");
    let mut stalled = tcp(s.port);
    let t0 = Instant::now();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();

    // another client is served meanwhile
    wss_round_trip(s.port, &pki, "meanwhile");

    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        match stalled.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("expected the server to close, got {e} after {:?}", t0.elapsed()),
        }
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(400), "closed too early: {took:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    // nothing but (at most) an alert came
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
}

// ---- 7. garbage --------------------------------------------------------------------------------

#[test]
fn garbage_gets_an_alert_or_a_400() {
    let pki = Pki::new();
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| b);

    // a handshake record type, then junk: a TLS alert and the end
    let mut g = tcp(s.port);
    g.write_all(b"\x16this is not a TLS record header at all\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let t0 = Instant::now();
    loop {
        let mut tmp = [0u8; 4096];
        match g.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("expected an alert and EOF, got {e} after {:?}", t0.elapsed()),
        }
    }
    assert!(!got.is_empty(), "no alert");
    assert_eq!(got[0], 0x15, "not an alert record: {got:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));

    // a well-formed record holding a garbage handshake message: an alert too
    let mut g = tcp(s.port);
    g.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef,
    ])
    .unwrap();
    let mut first = [0u8; 1];
    g.read_exact(&mut first).unwrap();
    assert_eq!(first[0], 0x15);

    // plain garbage: plain HTTP, 400
    let mut p = Client::connect(s.port);
    p.send(b"hello there, not HTTP at all\r\n\r\n");
    let r = p.read_response().expect("a response");
    assert_eq!(r.status, 400, "{}", r.raw);
    p.expect_eof();

    // others unaffected
    wss_round_trip(s.port, &pki, "fine");
}

// ---- 8. plain HTTP on the TLS port -------------------------------------------------------------

fn plain_body(c: &mut Client, r: &Response) -> String {
    let n: usize = r
        .header("content-length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    let mut b = vec![0u8; n];
    c.read_exact_buffered(&mut b);
    String::from_utf8(b).unwrap()
}

#[test]
fn plain_http_on_the_tls_port_refuse_serve_redirect() {
    let pki = Pki::new();
    let dir = TempDir::new("plain");
    dir.write("hello.txt", "hello\n");

    // Refuse (the default)
    let log = Log::new();
    let root = dir.0.clone();
    let s = echo_server(&log, &pki, move |b| b.resource_path(root));
    let mut c = Client::connect(s.port);
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 400, "{}", r.raw);
    let body = plain_body(&mut c, &r);
    assert!(body.contains("https"), "{body}");
    c.expect_eof();
    // a plain upgrade is refused the same way
    let mut c = Client::connect(s.port);
    c.send(&Req::upgrade(s.port).bytes());
    assert_eq!(c.read_response().expect("a response").status, 400);
    wss_round_trip(s.port, &pki, "tls still works");
    drop(s);

    // Serve: plain HTTP, ws:// and wss:// on one port
    let log = Log::new();
    let root = dir.0.clone();
    let s = echo_server(&log, &pki, move |b| {
        b.resource_path(root).ssl_plain_http(PlainHttp::Serve)
    });
    let mut c = Client::connect(s.port);
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(plain_body(&mut c, &r), "hello\n");
    let mut ws = Client::open(s.port);
    ws.send_text("plain ws");
    ws.expect_text("plain ws");
    let mut wss = TlsClient::open(s.port, &pki.client(), "localhost");
    wss.send_text("wss");
    wss.expect_text("wss");
    ws.send_text("plain again");
    ws.expect_text("plain again");
    wss.close();
    drop(s);

    // Redirect
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| b.ssl_plain_http(PlainHttp::Redirect));
    let mut c = Client::connect(s.port);
    c.send(b"GET /some/path?x=1&y=%20 HTTP/1.1\r\nHost: example.test:8443\r\n\r\n");
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 301, "{}", r.raw);
    assert_eq!(
        r.header("location"),
        Some("https://example.test:8443/some/path?x=1&y=%20")
    );
    c.expect_eof();
    wss_round_trip(s.port, &pki, "after redirect");
}

// ---- 9. FIN without close_notify, and our close_notify ----------------------------------------

#[test]
fn fin_without_close_notify_and_close_notify_from_the_server() {
    let pki = Pki::new();
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| b);

    // the client drops TCP without close_notify (nor a close frame)
    let mut c = TlsClient::open(s.port, &pki.client(), "localhost");
    c.send_text("then gone");
    c.expect_text("then gone");
    c.tls.sock.shutdown(Shutdown::Write).unwrap();
    log.wait_count(1, T, |r| matches!(r.ev, Ev::Closed { code: None, .. }));
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    // the server closed its side: with or without close_notify, the end comes
    let end = c.read_to_end();
    assert!(
        matches!(&end, Ok(b) if b.is_empty())
            || matches!(&end, Err(e) if e.kind() == io::ErrorKind::UnexpectedEof),
        "{end:?}"
    );

    // a close handshake: after the close reply the server sends close_notify, then FIN
    let mut c = TlsClient::open(s.port, &pki.client(), "localhost");
    c.send_text("still serving");
    c.expect_text("still serving");
    c.send_close(1000, "done");
    assert!(matches!(c.read_msg(), Msg::Close(Some(1000), _)));
    match c.read_to_end() {
        Ok(rest) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => panic!("no clean TLS end after the close handshake: {e}"),
    }
    log.wait_count(1, T, |r| matches!(r.ev, Ev::Closed { code: Some(1000), .. }));

    // and the other way: the server closes first
    let l = log.clone();
    drop(s);
    let s = Server::start(&log, {
        let tls = pki.tls();
        move |b| {
            tls(b).protocol(
                "closer",
                Recorder::new("closer", &l).hook(|wsi, r| {
                    if let Reason::Receive { .. } = r {
                        wsi.close(4000, "server says bye");
                    }
                    Ok(())
                }),
            )
        }
    });
    let mut c = TlsClient::open(s.port, &pki.client(), "localhost");
    c.send_text("close me");
    assert_eq!(c.read_msg(), Msg::Close(Some(4000), "server says bye".into()));
    c.send_close(4000, "");
    match c.read_to_end() {
        Ok(rest) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => panic!("no clean TLS end after a server close: {e}"),
    }
}

// ---- 10. large messages ------------------------------------------------------------------------

#[test]
fn large_messages_across_record_boundaries() {
    let pki = Pki::new();
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| {
        b.max_message_size(8 * MIB as u64).max_frame_size(8 * MIB as u64)
    });
    let mut c = TlsClient::open(s.port, &pki.client(), "localhost");
    for (i, len) in [MIB, 4 * MIB].into_iter().enumerate() {
        // one frame
        let data = pattern(i, len);
        c.send_binary(&data);
        match c.read_msg() {
            Msg::Binary(m) => assert!(m == data, "{len}-byte echo differs"),
            other => panic!("{:?}", std::mem::discriminant(&other)),
        }
        // fragmented, in fragments of an odd size that straddle records
        let data = pattern(i + 10, len);
        let mut w = Vec::new();
        let chunks: Vec<&[u8]> = data.chunks(100_003).collect();
        for (j, ch) in chunks.iter().enumerate() {
            let op = if j == 0 {
                OpCode::Binary
            } else {
                OpCode::Continuation
            };
            w.extend(c.frame(op, j + 1 == chunks.len(), ch));
        }
        c.send(&w);
        match c.read_msg() {
            Msg::Binary(m) => assert!(m == data, "fragmented {len}-byte echo differs"),
            other => panic!("{:?}", std::mem::discriminant(&other)),
        }
    }
    c.send_text("small after big");
    c.expect_text("small after big");
    c.close();
    assert_eq!(log.messages(None).len(), 5);
}

// ---- 11. flow control and WRITEABLE ------------------------------------------------------------

#[test]
fn rx_flow_control_and_writeable_over_tls() {
    let pki = Pki::new();
    let log = Log::new();
    let paused = Arc::new(AtomicUsize::new(0));
    let (l, p2) = (log.clone(), paused.clone());
    let tls = pki.tls();
    let s = Server::start(&log, move |b| {
        tls(b).protocol(
            "flow",
            Recorder::new("flow", &l).hook(move |wsi, r| {
                match r {
                    Reason::Receive { data, .. } if data == b"m1" => {
                        wsi.rx_flow_control(false);
                        if wsi.is_rx_paused() {
                            p2.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Reason::Receive { data, .. } if data == b"wr" => wsi.callback_on_writable(),
                    Reason::ServerWriteable => wsi.send_text("writeable")?,
                    Reason::User { event: 1, .. } => wsi.rx_flow_control(true),
                    _ => {}
                }
                echo(wsi, r)
            }),
        )
    });
    let mut c = TlsClient::open(s.port, &pki.client(), "localhost");
    // three messages in one record: m2 is already decrypted when m1 pauses
    let mut w = Vec::new();
    for i in 0..3 {
        w.extend(c.frame(OpCode::Text, true, format!("m{i}").as_bytes()));
    }
    c.send(&w);
    c.expect_text("m0");
    c.expect_text("m1");
    assert_eq!(paused.load(Ordering::SeqCst), 1);
    // two more, each its own record, held (encrypted) in the kernel; a ping too
    for i in 3..5 {
        c.send_text(&format!("m{i}"));
        std::thread::sleep(Duration::from_millis(10));
    }
    c.send_frame(OpCode::Ping, true, b"held");
    assert!(c.quiet_for(Duration::from_millis(300)));
    assert_eq!(log.messages(None), [b"m0".to_vec(), b"m1".to_vec()]);

    // resumed through a callback
    s.with_ctx(|ctx| {
        let p = ctx.protocol_by_name("flow").unwrap();
        ctx.callback_all_protocol(p, 1, b"");
    });
    for i in 2..5 {
        c.expect_text(&format!("m{i}"));
    }
    assert_eq!(c.read_msg(), Msg::Pong(b"held".to_vec()));

    // paused again, resumed from the main loop
    c.send_text("m1");
    c.expect_text("m1");
    c.send_text("m5");
    assert!(c.quiet_for(Duration::from_millis(200)));
    s.with_ctx(|ctx| {
        let p = ctx.protocol_by_name("flow").unwrap();
        ctx.rx_flow_allow_all_protocol(p);
    });
    c.expect_text("m5");

    // WRITEABLE
    c.send_text("wr");
    c.expect_text("wr");
    c.expect_text("writeable");
    assert_eq!(log.count(|r| r.ev == Ev::Writeable), 1);
    c.close();
}

// ---- 12. resumption ----------------------------------------------------------------------------

#[test]
fn session_resumption_with_tickets() {
    let pki = Pki::new();
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| b);
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let cfg = client_config_with(&[pki.ca.der()], None, versions);
        let mut c = TlsClient::open(s.port, &cfg, "localhost");
        assert_eq!(c.conn().handshake_kind(), Some(HandshakeKind::Full));
        c.send_text("first");
        c.expect_text("first");
        c.close();
        for i in 0..2 {
            let mut c = TlsClient::open(s.port, &cfg, "localhost");
            assert_eq!(
                c.conn().handshake_kind(),
                Some(HandshakeKind::Resumed),
                "{:?} connection {}",
                c.conn().protocol_version(),
                i + 2
            );
            c.send_text("again");
            c.expect_text("again");
            c.close();
        }
    }
}

// ---- 13. application data in the last handshake flight -----------------------------------------

#[test]
fn request_in_the_same_flight_as_the_client_finished() {
    let pki = Pki::new();
    let log = Log::new();
    let s = echo_server(&log, &pki, |b| b);
    let cfg = client_config_with(&[pki.ca.der()], None, &[&rustls::version::TLS13]);
    let mut conn = ClientConnection::new(cfg, server_name("localhost")).unwrap();
    // written before the handshake: rustls holds it and sends it right after Finished
    let req = upgrade_request("localhost");
    assert_eq!(conn.writer().write(&req).unwrap(), req.len());
    let mut sock = tcp(s.port);
    let mut flights = Vec::new();
    loop {
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        if !out.is_empty() {
            // one write() per flight
            sock.write_all(&out).unwrap();
            flights.push(out.len());
        }
        if !conn.is_handshaking() {
            break;
        }
        if conn.read_tls(&mut sock).unwrap() == 0 {
            panic!("EOF during the handshake");
        }
        conn.process_new_packets().unwrap();
    }
    assert_eq!(flights.len(), 2, "{flights:?}");
    // the second flight is Finished (and a compatibility change_cipher_spec) plus the request
    assert!(flights[1] > req.len(), "{flights:?}");
    let mut c = TlsClient::from_parts(conn, sock);
    let t0 = Instant::now();
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 101, "{}", r.raw);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "101 after {:?}",
        t0.elapsed()
    );
    c.send_text("early");
    c.expect_text("early");

    // the upgrade request and a first frame in the same flight
    let cfg = client_config_with(&[pki.ca.der()], None, &[&rustls::version::TLS13]);
    let mut conn = ClientConnection::new(cfg, server_name("localhost")).unwrap();
    let mut early = upgrade_request("localhost");
    early.extend(masked_frame(
        OpCode::Text,
        true,
        b"with the request",
        [0x11, 0x22, 0x33, 0x44],
    ));
    conn.writer().write_all(&early).unwrap();
    let mut sock = tcp(s.port);
    loop {
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        sock.write_all(&out).unwrap();
        if !conn.is_handshaking() {
            break;
        }
        assert!(conn.read_tls(&mut sock).unwrap() > 0, "EOF during the handshake");
        conn.process_new_packets().unwrap();
    }
    let mut c = TlsClient::from_parts(conn, sock);
    assert_eq!(c.read_response().expect("a response").status, 101);
    c.expect_text("with the request");
    c.close();
}

/// [`rx_flow_control_and_writeable_over_tls`]'s back-pressure half, after flow.rs'
/// `writable_back_pressure_does_not_spin_and_delivers_everything`: a TLS client that does
/// not read stalls the WRITEABLE stream without the loop spinning on records rustls holds;
/// then everything arrives in order.
#[test]
fn writeable_back_pressure_over_tls_does_not_spin() {
    const MSG: usize = 64 << 10;
    const N: usize = 160; // 10 MiB, as in flow.rs
    let pki = Pki::new();
    let log = Log::new();
    let l = log.clone();
    let written = Arc::new(AtomicUsize::new(0));
    let w2 = written.clone();
    let tls = pki.tls();
    let s = Server::start(&log, move |b| {
        tls(b).max_unsent(256 << 10).protocol(
            "bulk",
            Recorder::new("bulk", &l).hook(move |wsi, r| {
                match r {
                    Reason::Established => wsi.callback_on_writable(),
                    Reason::ServerWriteable => {
                        while w2.load(Ordering::SeqCst) < N {
                            match wsi.send_binary(&pattern(w2.load(Ordering::SeqCst), MSG)) {
                                Ok(()) => {
                                    w2.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(wsreactor::WriteError::BackPressure) => break,
                                Err(e) => return Err(Close::from(e)),
                            }
                        }
                        if w2.load(Ordering::SeqCst) < N {
                            wsi.callback_on_writable();
                        }
                    }
                    _ => {}
                }
                Ok(())
            }),
        )
    });
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(32 << 10).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], s.port).into();
    sock.connect(&addr.into()).unwrap();
    let sock: std::net::TcpStream = sock.into();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let conn = ClientConnection::new(pki.client(), server_name("localhost")).unwrap();
    let mut c = TlsClient::from_parts(conn, sock);
    while c.tls.conn.is_handshaking() {
        c.tls.conn.complete_io(&mut c.tls.sock).unwrap();
    }
    c.upgrade("localhost");

    // wait until the writes stall (the server thread may be slow to get there under load)
    let mut last = usize::MAX;
    let settled = eventually(Duration::from_secs(4), || {
        std::thread::sleep(Duration::from_millis(150));
        let now = written.load(Ordering::SeqCst);
        std::mem::replace(&mut last, now) == now
    });
    assert!(settled, "writes never stalled");
    let (wa, ia) = (
        written.load(Ordering::SeqCst),
        s.iterations.load(Ordering::SeqCst),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (wb, ib) = (
        written.load(Ordering::SeqCst),
        s.iterations.load(Ordering::SeqCst),
    );
    eprintln!(
        "stalled at {wa} of {N} messages; {} service() calls in 500 ms",
        ib - ia
    );
    assert!(wa < N, "the socket never filled up");
    assert_eq!(wa, wb, "writes went on while the client did not read");
    assert!(ib - ia < 60, "{} service() calls in 500 ms", ib - ia);
    let writeables = log.count(|r| r.ev == Ev::Writeable);
    for i in 0..N {
        match c.read_msg() {
            Msg::Binary(m) => assert!(m == pattern(i, MSG), "message {i} differs"),
            other => panic!("message {i}: {:?}", std::mem::discriminant(&other)),
        }
    }
    assert_eq!(written.load(Ordering::SeqCst), N);
    assert!(writeables <= N);
    c.close();
}
