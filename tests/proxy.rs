//! Outgoing connections through an HTTP `CONNECT` proxy: a tiny proxy in a thread here
//! (it records what it was asked and what the client sent first through the tunnel),
//! ws:// and wss://, the in-loop client and the blocking one, refusals and garbage from the
//! proxy as `CLIENT_CONNECTION_ERROR`, `no_proxy` and the per-connection opt-out.

mod common;
#[path = "common/tls.rs"]
mod tls_common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tls_common::*;
use wsreactor::blocking::{BlockingClient, Message};
use wsreactor::{ClientConnect, Close, Context, ContextBuilder, Protocol, Reason, Wsi};

fn echo_server(build: impl FnOnce(ContextBuilder) -> ContextBuilder + Send + 'static) -> Server {
    let log = Log::new();
    let l = log.clone();
    Server::start(&log, move |b| {
        build(
            b.protocol("echo", Recorder::echo("echo", &l))
                .accept_any_protocol(true),
        )
    })
}

/// What the test proxy saw of one connection.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// The request head, as received.
    head: String,
    /// The first byte the client sent through the tunnel.
    first_tunnelled: Option<u8>,
}

/// A proxy on 127.0.0.1 answering every connection with `reply`; after a 2xx it connects
/// to the CONNECT target and pipes both ways. Serves a few connections, each bounded.
struct TestProxy {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestProxy {
    fn start(reply: &'static [u8]) -> TestProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming().take(4) {
                let Ok(c) = c else { break };
                let seen = s2.clone();
                std::thread::spawn(move || serve(c, reply, &seen));
            }
        });
        TestProxy { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut c: TcpStream, reply: &[u8], seen: &Mutex<Vec<Seen>>) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let idx = {
        let mut v = seen.lock().unwrap();
        v.push(Seen {
            head: head.clone(),
            first_tunnelled: None,
        });
        v.len() - 1
    };
    let _ = c.write_all(reply);
    if !reply.starts_with(b"HTTP/1.1 2") {
        std::thread::sleep(Duration::from_millis(100));
        return;
    }
    let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let Ok(up) = TcpStream::connect(&target) else { return };
    // The first byte through the tunnel (a ClientHello for wss: 0x16).
    if c.read(&mut b).ok() != Some(1) {
        return;
    }
    seen.lock().unwrap()[idx].first_tunnelled = Some(b[0]);
    let mut up_w = up.try_clone().unwrap();
    up_w.write_all(&b).unwrap();
    let mut down = c.try_clone().unwrap();
    let mut up_r = up;
    up_r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut down);
        let _ = down.shutdown(Shutdown::Write);
    });
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = std::io::copy(&mut c, &mut up_w);
    let _ = up_w.shutdown(Shutdown::Write);
    let _ = t.join();
}

const OK: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Records the client reasons.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

struct ClientProto(Events);

impl Protocol for ClientProto {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        let mut v = self.0 .0.lock().unwrap();
        match reason {
            Reason::ClientAppendHandshakeHeader => {
                assert!(wsi.append_handshake_header("X-Through", "proxy"));
            }
            Reason::ClientEstablished => {
                v.push("established".into());
                wsi.send_text("through the tunnel")?;
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

/// Runs one connection to its end (closed or error), at most `secs`; returns the events.
fn run(build: impl FnOnce(ContextBuilder) -> ContextBuilder, info: ClientConnect, secs: u64) -> Vec<String> {
    let ev = Events::default();
    let mut ctx = build(
        Context::builder()
            .no_listen()
            .handshake_timeout(Duration::from_secs(secs))
            .protocol("client", ClientProto(ev.clone())),
    )
    .build()
    .unwrap();
    ctx.connect(info).unwrap();
    let end = Instant::now() + Duration::from_secs(secs + 2);
    let done = || {
        ev.0.lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("closed") || e.starts_with("error"))
    };
    while !done() && Instant::now() < end {
        ctx.service(Duration::from_millis(20)).unwrap();
    }
    let got = ev.0.lock().unwrap().clone();
    if got.iter().any(|e| e.starts_with("error")) {
        assert_eq!(ctx.connection_count(), 0, "{got:?}");
    }
    got
}

fn echoed() -> Vec<String> {
    vec![
        "established".to_string(),
        "receive through the tunnel".into(),
        "closed Some(1000)".into(),
    ]
}

#[test]
fn ws_through_proxy_with_basic_auth() {
    let s = echo_server(|b| b);
    let p = TestProxy::start(OK);
    let proxy = format!("http://us%3Aer:p%40ss@127.0.0.1:{}/", p.port);
    let url = format!("ws://127.0.0.1:{}/chat", s.port);
    let got = run(
        move |b| b.proxy(Some(&proxy)).no_proxy(""),
        ClientConnect::url(&url).unwrap(),
        5,
    );
    assert_eq!(got, echoed());
    let seen = p.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = &seen[0].head;
    let target = format!("127.0.0.1:{}", s.port);
    assert!(
        head.starts_with(&format!("CONNECT {target} HTTP/1.1\r\n")),
        "{head}"
    );
    assert!(head.contains(&format!("\r\nHost: {target}\r\n")), "{head}");
    // base64("us:er:p@ss")
    assert!(
        head.contains("\r\nProxy-Authorization: Basic dXM6ZXI6cEBzcw==\r\n"),
        "{head}"
    );
    assert_eq!(
        seen[0].first_tunnelled,
        Some(b'G'),
        "the WebSocket request after the 200"
    );
}

#[test]
fn wss_through_proxy_tls_starts_after_the_tunnel() {
    let ca = Ca::new("proxy-test CA");
    let leaf = ca.server(&["localhost"]);
    let (cert, key) = (leaf.cert_pem.clone(), leaf.key_pem.clone());
    let dir = TempDir::new("proxy-ca");
    let ca_file = dir.write("ca.pem", ca.pem());
    let s = echo_server(move |b| b.ssl_cert_pem(cert, key));
    let p = TestProxy::start(OK);
    let proxy = format!("127.0.0.1:{}", p.port);
    // verified against the test CA, for the name "localhost": the session is the target's
    let url = format!("wss://localhost:{}/", s.port);
    let got = run(
        move |b| b.ssl_ca_filepath(&ca_file).proxy(Some(&proxy)).no_proxy(""),
        ClientConnect::url(&url).unwrap(),
        5,
    );
    assert_eq!(got, echoed());
    let seen = p.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0]
            .head
            .starts_with(&format!("CONNECT localhost:{} HTTP/1.1\r\n", s.port)),
        "{}",
        seen[0].head
    );
    assert!(!seen[0].head.contains("Proxy-Authorization"), "{}", seen[0].head);
    // the head ended at its blank line (the ClientHello did not come with the CONNECT) and
    // the first byte through the tunnel is a TLS handshake record
    assert!(seen[0].head.ends_with("\r\n\r\n"));
    assert_eq!(seen[0].first_tunnelled, Some(0x16));
}

#[test]
fn blocking_client_through_proxy() {
    let s = echo_server(|b| b);
    let p = TestProxy::start(OK);
    let info = ClientConnect::url(&format!("ws://127.0.0.1:{}/", s.port))
        .unwrap()
        .via_proxy(&format!("127.0.0.1:{}", p.port))
        .unwrap();
    let mut c = BlockingClient::connect_with(info, Duration::from_secs(5)).expect("connects");
    c.send_text("hi").unwrap();
    assert_eq!(c.receive().unwrap(), Some(Message::Text("hi".into())));
    c.close().unwrap();
    assert_eq!(p.seen().len(), 1);
}

fn expect_error(reply: &'static [u8]) -> String {
    let p = TestProxy::start(reply);
    let proxy = format!("127.0.0.1:{}", p.port);
    // the target is never contacted
    let got = run(
        move |b| b.proxy(Some(&proxy)),
        ClientConnect::url("ws://target.invalid:9/").unwrap(),
        3,
    );
    let errs: Vec<&String> = got.iter().filter(|e| e.starts_with("error")).collect();
    assert_eq!(errs.len(), 1, "one CLIENT_CONNECTION_ERROR: {got:?}");
    assert!(!got.iter().any(|e| e.starts_with("closed")), "{got:?}");
    assert!(
        p.seen()[0]
            .head
            .starts_with("CONNECT target.invalid:9 HTTP/1.1\r\n"),
        "{:?}",
        p.seen()
    );
    errs[0].clone()
}

#[test]
fn proxy_refusals_are_connection_errors() {
    let e = expect_error(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n");
    assert!(e.contains("HTTP/1.1 407 Proxy Authentication Required"), "{e}");
    assert!(e.contains("proxy"), "{e}");
    let e = expect_error(b"HTTP/1.0 403 Forbidden\r\n\r\n");
    assert!(e.contains("403 Forbidden"), "{e}");
    let e = expect_error(b"\x00\x01garbage\r\n\r\n");
    assert!(e.contains("bad answer to CONNECT"), "{e}");
    // the proxy closes without a whole answer
    let e = expect_error(b"HTTP/1.1 200 Conn");
    assert!(e.contains("proxy closed"), "{e}");
}

#[test]
fn unreachable_proxy_is_a_connection_error() {
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let got = run(
        move |b| b.proxy(Some(&format!("127.0.0.1:{refused}"))),
        ClientConnect::url("ws://127.0.0.1:9/").unwrap(),
        3,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("connect to the proxy 127.0.0.1"), "{got:?}");
    // a proxy name that does not resolve is named in the error
    let got = run(
        |b| b.proxy(Some("no-such-proxy.invalid:3128")),
        ClientConnect::url("ws://127.0.0.1:9/").unwrap(),
        5,
    );
    assert!(got[0].contains("no-such-proxy.invalid"), "{got:?}");
}

#[test]
fn no_proxy_and_opt_outs_connect_directly() {
    let s = echo_server(|b| b);
    let url = format!("ws://127.0.0.1:{}/", s.port);
    // a proxy that would refuse everything: any connection through it fails
    let p = TestProxy::start(b"HTTP/1.1 403 Forbidden\r\n\r\n");
    let proxy = format!("127.0.0.1:{}", p.port);
    let (p1, p2, p3) = (proxy.clone(), proxy.clone(), proxy.clone());
    assert_eq!(
        run(
            move |b| b.proxy(Some(&p1)).no_proxy("example.com, 127.0.0.1"),
            ClientConnect::url(&url).unwrap(),
            5
        ),
        echoed()
    );
    assert_eq!(
        run(
            move |b| b.proxy(Some(&p2)).no_proxy("*"),
            ClientConnect::url(&url).unwrap(),
            5
        ),
        echoed()
    );
    assert_eq!(
        run(
            move |b| b.proxy(Some(&p3)).no_proxy(""),
            ClientConnect::url(&url).unwrap().no_proxy(),
            5
        ),
        echoed()
    );
    // a host-name suffix: localhost is proxied (as curl: not special) unless listed
    let lurl = format!("ws://localhost:{}/", s.port);
    let p4 = proxy.clone();
    let got = run(
        move |b| b.proxy(Some(&p4)).no_proxy(".example.com"),
        ClientConnect::url(&lurl).unwrap(),
        5,
    );
    assert!(got[0].contains("403"), "{got:?}");
    let p5 = proxy.clone();
    assert_eq!(
        run(
            move |b| b.proxy(Some(&p5)).no_proxy("example.com,.localhost"),
            ClientConnect::url(&lurl).unwrap(),
            5
        ),
        echoed()
    );
    assert_eq!(
        p.seen().len(),
        1,
        "only the localhost connection went to the proxy"
    );
    assert!(p.seen()[0].head.starts_with("CONNECT localhost:"));
}

#[test]
fn set_proxy_sets_and_clears() {
    let mut ctx = Context::builder()
        .no_listen()
        .protocol("client", ClientProto(Events::default()))
        .build()
        .unwrap();
    assert!(ctx.set_proxy(Some("socks5://x:1")).is_err());
    assert!(ctx.set_proxy(Some("http://[::1]:3128")).is_ok());
    assert!(ctx.set_proxy(Some("")).is_ok());
    assert!(ctx.set_proxy(None).is_ok());
    ctx.set_no_proxy("*");
    assert!(Context::builder()
        .no_listen()
        .proxy(Some("h:x"))
        .protocol("client", ClientProto(Events::default()))
        .build()
        .is_err());
    assert!(ClientConnect::url("ws://x/")
        .unwrap()
        .via_proxy("ftp://p")
        .is_err());

    // set_proxy on a running context applies to the next connections; None clears it
    let s = echo_server(|b| b);
    let url = format!("ws://127.0.0.1:{}/", s.port);
    let p = TestProxy::start(OK);
    let ev = Events::default();
    let mut ctx = Context::builder()
        .no_listen()
        .proxy(None)
        .no_proxy("")
        .protocol("client", ClientProto(ev.clone()))
        .build()
        .unwrap();
    for via in [Some(format!("127.0.0.1:{}", p.port)), None] {
        ev.0.lock().unwrap().clear();
        ctx.set_proxy(via.as_deref()).unwrap();
        ctx.connect(ClientConnect::url(&url).unwrap()).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while !ev
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("closed") || e.starts_with("error"))
            && Instant::now() < end
        {
            ctx.service(Duration::from_millis(20)).unwrap();
        }
        assert_eq!(*ev.0.lock().unwrap(), echoed());
    }
    assert_eq!(p.seen().len(), 1, "the second connection went directly");
}
