//! Opening handshake: acceptance, sub-protocol negotiation, refusals.

mod common;

use common::*;
use std::time::Duration;
use wsreactor::proto::handshake::accept_key;
use wsreactor::Close;

fn two_protocols(log: &Log) -> Server {
    let l = log.clone();
    Server::start(log, move |b| {
        b.protocol("alpha", Recorder::echo("alpha", &l))
            .protocol("beta", Recorder::echo("beta", &l))
    })
}

/// The protocol a connection was established on, from the log.
fn established_on(log: &Log) -> String {
    log.wait_count(1, Duration::from_secs(5), |r| {
        matches!(r.ev, Ev::Established { .. })
    });
    log.snapshot()
        .into_iter()
        .find(|r| matches!(r.ev, Ev::Established { .. }))
        .unwrap()
        .proto
}

#[test]
fn accept_with_rfc_key() {
    let log = Log::new();
    let s = two_protocols(&log);
    let (mut c, r) = Client::open_with(s.port, Req::upgrade(s.port));
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(RFC_ACCEPT));
    assert!(r.header("Upgrade").unwrap().eq_ignore_ascii_case("websocket"));
    assert!(r.header("Connection").unwrap().eq_ignore_ascii_case("upgrade"));
    assert_eq!(r.header("Sec-WebSocket-Protocol"), None);
    // none offered: the first protocol
    assert_eq!(established_on(&log), "alpha");
    c.send_text("hi");
    c.expect_text("hi");
}

#[test]
fn accept_with_other_key_and_whitespace() {
    let log = Log::new();
    let s = two_protocols(&log);
    let key = "AQIDBAUGBwgJCgsMDQ4PEA==";
    let (_c, r) = Client::open_with(
        s.port,
        Req::upgrade(s.port)
            .set("Sec-WebSocket-Key", key)
            .set("Connection", "keep-alive, Upgrade")
            .set("Upgrade", "WebSocket"),
    );
    assert_eq!(
        r.header("Sec-WebSocket-Accept"),
        Some(accept_key(key.as_bytes()).as_str())
    );
}

#[test]
fn subprotocol_first_registered_that_is_offered() {
    let log = Log::new();
    let s = two_protocols(&log);
    let (mut c, r) = Client::open_with(
        s.port,
        Req::upgrade(s.port).set("Sec-WebSocket-Protocol", "gamma, beta, alpha"),
    );
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("alpha"));
    assert_eq!(established_on(&log), "alpha");
    c.send_text("x");
    c.expect_text("x");
}

#[test]
fn subprotocol_second_protocol() {
    let log = Log::new();
    let s = two_protocols(&log);
    let (mut c, r) = Client::open_with(
        s.port,
        Req::upgrade(s.port).set("Sec-WebSocket-Protocol", "gamma,beta"),
    );
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("beta"));
    assert_eq!(established_on(&log), "beta");
    c.send_text("y");
    c.expect_text("y");
    // the receive went to beta
    log.wait_count(1, Duration::from_secs(5), |r| {
        r.proto == "beta" && matches!(r.ev, Ev::Receive { .. })
    });
    assert_eq!(
        log.count(|r| r.proto == "alpha" && matches!(r.ev, Ev::Receive { .. })),
        0
    );
}

#[test]
fn subprotocol_unknown_is_refused() {
    let log = Log::new();
    let s = two_protocols(&log);
    let mut c = Client::connect(s.port);
    c.send(
        &Req::upgrade(s.port)
            .set("Sec-WebSocket-Protocol", "gamma, delta")
            .bytes(),
    );
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 400, "{}", r.raw);
    c.expect_eof();
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Established { .. })), 0);
}

#[test]
fn subprotocol_unknown_accepted_with_accept_any_protocol() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol("alpha", Recorder::echo("alpha", &l))
            .protocol("beta", Recorder::echo("beta", &l))
            .accept_any_protocol(true)
    });
    let (mut c, r) = Client::open_with(
        s.port,
        Req::upgrade(s.port).set("Sec-WebSocket-Protocol", "gamma, delta"),
    );
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("gamma"));
    assert_eq!(established_on(&log), "alpha");
    c.send_text("z");
    c.expect_text("z");
}

/// Sends `req`, expects a refusal with `status`, then the connection closed; no callback
/// past FILTER for it.
fn refused(req: impl FnOnce(u16) -> Vec<u8>, status: u16) -> Response {
    let log = Log::new();
    let s = two_protocols(&log);
    let mut c = Client::connect(s.port);
    c.send(&req(s.port));
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, status, "{}", r.raw);
    let t = c.expect_eof();
    assert!(t < Duration::from_secs(2), "closed after {t:?}");
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Established { .. })), 0);
    r
}

#[test]
fn refuse_version_8_with_426() {
    let r = refused(|p| Req::upgrade(p).set("Sec-WebSocket-Version", "8").bytes(), 426);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn refuse_missing_version_with_426() {
    let r = refused(|p| Req::upgrade(p).remove("Sec-WebSocket-Version").bytes(), 426);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn refuse_missing_key() {
    refused(|p| Req::upgrade(p).remove("Sec-WebSocket-Key").bytes(), 400);
}

#[test]
fn refuse_invalid_key() {
    // base64 of 5 bytes, not 16
    refused(
        |p| Req::upgrade(p).set("Sec-WebSocket-Key", "c2hvcnQ=").bytes(),
        400,
    );
    refused(
        |p| {
            Req::upgrade(p)
                .set("Sec-WebSocket-Key", "not base64 at all!!!")
                .bytes()
        },
        400,
    );
}

#[test]
fn refuse_post_upgrade_with_405() {
    refused(|p| Req::upgrade(p).method("POST").bytes(), 405);
}

#[test]
fn refuse_missing_connection_upgrade() {
    refused(|p| Req::upgrade(p).remove("Connection").bytes(), 400);
}

#[test]
fn refuse_connection_without_upgrade_token() {
    // Connection present but without the token: the request is not an upgrade at all and
    // must not be upgraded, whatever the status.
    let log = Log::new();
    let s = two_protocols(&log);
    let mut c = Client::connect(s.port);
    c.send(&Req::upgrade(s.port).set("Connection", "keep-alive").bytes());
    let r = c.read_response().expect("a response");
    assert!(r.status >= 400, "{}", r.raw);
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Established { .. })), 0);
}

#[test]
fn refuse_oversized_head_with_431() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol("alpha", Recorder::echo("alpha", &l))
            .max_header_bytes(1024)
    });
    let mut c = Client::connect(s.port);
    let req = Req::upgrade(s.port).set("X-Filler", &"a".repeat(2000)).bytes();
    // The server may answer and close before all of it is written.
    let _ = std::io::Write::write_all(&mut c.stream, &req);
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 431, "{}", r.raw);
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Established { .. })), 0);
}

#[test]
fn head_just_under_the_limit_is_accepted() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol("alpha", Recorder::echo("alpha", &l))
            .max_header_bytes(1024)
    });
    let base = Req::upgrade(s.port).set("X-Filler", "").bytes().len();
    let req = Req::upgrade(s.port).set("X-Filler", &"a".repeat(1024 - base));
    assert_eq!(req.bytes().len(), 1024);
    let (mut c, _) = Client::open_with(s.port, req);
    c.send_text("ok");
    c.expect_text("ok");
}

#[test]
fn refuse_garbage_request_line_with_400() {
    refused(|_| b"\x01\x02garbage\x7f line\r\nHost: x\r\n\r\n".to_vec(), 400);
    refused(
        |p| format!("GET / FOO/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n").into_bytes(),
        400,
    );
}

#[test]
fn filter_protocol_connection_error_gives_403() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "alpha",
            Recorder::new("alpha", &l).hook(|_, reason| match reason {
                wsreactor::Reason::FilterProtocolConnection => Err(Close::new(1008, "no")),
                _ => Ok(()),
            }),
        )
    });
    let mut c = Client::connect(s.port);
    c.send(&Req::upgrade(s.port).bytes());
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 403, "{}", r.raw);
    c.expect_eof();
    drop(c);
    log.wait_count(1, Duration::from_secs(5), |r| r.ev == Ev::WsiDestroy);
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Established { .. })), 0);
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Filter { .. })), 1);
}

#[test]
fn filter_network_connection_error_drops_without_bytes() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "alpha",
            Recorder::new("alpha", &l).phook(|_, ev| match ev {
                wsreactor::ProtocolEvent::FilterNetworkConnection { peer, .. } => {
                    assert!(peer.ip().is_loopback());
                    Err(Close::new(1008, "go away"))
                }
                _ => Ok(()),
            }),
        )
    });
    let mut c = Client::connect(s.port);
    let me = c.local_addr();
    // The request may or may not be written before the server drops the socket.
    let _ = std::io::Write::write_all(&mut c.stream, &Req::upgrade(s.port).bytes());
    assert!(c.read_response().is_none(), "refused connection got bytes");
    log.wait_count(1, Duration::from_secs(5), |r| r.ev == Ev::NetFilter(me));
    // no connection object was ever made
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        log.count(|r| matches!(r.ev, Ev::WsiCreate | Ev::NewClient | Ev::WsiDestroy)),
        0
    );
}

#[test]
fn head_sent_one_byte_at_a_time() {
    let log = Log::new();
    let s = two_protocols(&log);
    let mut c = Client::connect(s.port);
    let req = Req::upgrade(s.port).set("Sec-WebSocket-Protocol", "beta").bytes();
    for b in &req {
        c.send(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_micros(500));
    }
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 101, "{}", r.raw);
    assert_eq!(r.header("Sec-WebSocket-Accept"), Some(RFC_ACCEPT));
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("beta"));
    c.send_text("slow");
    c.expect_text("slow");
}

#[test]
fn frame_right_after_head_in_the_same_write() {
    let log = Log::new();
    let s = two_protocols(&log);
    let mut c = Client::connect(s.port);
    let mut bytes = Req::upgrade(s.port).bytes();
    let f = c.frame(wsreactor::proto::OpCode::Text, true, b"eager");
    bytes.extend_from_slice(&f);
    c.send(&bytes);
    assert_eq!(c.read_response().unwrap().status, 101);
    c.expect_text("eager");
}

#[test]
fn handshake_timeout_closes_silent_client() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol("alpha", Recorder::echo("alpha", &l))
            .handshake_timeout(Duration::from_millis(300))
    });
    let mut c = Client::connect(s.port);
    let t = c.expect_eof();
    assert!(
        t >= Duration::from_millis(250) && t < Duration::from_secs(2),
        "closed after {t:?}"
    );
    log.wait_count(1, Duration::from_secs(2), |r| r.ev == Ev::WsiDestroy);
    // a partial head does not extend it forever either
    let mut c = Client::connect(s.port);
    c.send(b"GET / HTTP/1.1\r\n");
    let t = c.expect_eof();
    assert!(t < Duration::from_secs(2), "closed after {t:?}");
}

/// A request with one header field repeated on two lines.
fn with_repeated(port: u16, name: &str, a: &str, b: &str) -> Vec<u8> {
    let head = Req::upgrade(port).remove(name).bytes();
    let mut s = String::from_utf8(head).unwrap();
    s.truncate(s.len() - 2);
    s.push_str(&format!("{name}: {a}\r\n{name}: {b}\r\n\r\n"));
    s.into_bytes()
}

#[test]
fn subprotocol_offer_split_over_two_header_lines() {
    let log = Log::new();
    let s = two_protocols(&log);
    let mut c = Client::connect(s.port);
    c.send(&with_repeated(s.port, "Sec-WebSocket-Protocol", "gamma", "beta"));
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 101, "{}", r.raw);
    assert_eq!(r.header("Sec-WebSocket-Protocol"), Some("beta"));
}

#[test]
fn connection_tokens_split_over_two_header_lines() {
    let log = Log::new();
    let s = two_protocols(&log);
    let mut c = Client::connect(s.port);
    c.send(&with_repeated(s.port, "Connection", "keep-alive", "Upgrade"));
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 101, "{}", r.raw);
}

#[test]
fn established_error_sends_101_then_close() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "alpha",
            Recorder::new("alpha", &l).hook(|_, reason| match reason {
                wsreactor::Reason::Established => Err(Close::new(4100, "not today")),
                _ => Ok(()),
            }),
        )
    });
    let mut c = Client::connect(s.port);
    let mut bytes = Req::upgrade(s.port).bytes();
    // data sent with the head is not delivered on a connection that is closing
    let f = c.frame(wsreactor::proto::OpCode::Text, true, b"dropped");
    bytes.extend_from_slice(&f);
    c.send(&bytes);
    assert_eq!(c.read_response().unwrap().status, 101);
    assert_eq!(c.read_frame().close(), (Some(4100), "not today".to_owned()));
    c.send_close(4100, "");
    c.expect_eof();
    drop(c);
    log.wait_count(1, Duration::from_secs(5), |r| r.ev == Ev::WsiDestroy);
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Receive { .. })), 0);
}

#[test]
fn request_then_half_close_still_gets_the_response() {
    let log = Log::new();
    let s = two_protocols(&log);
    for (req, status) in [
        (
            Req::upgrade(s.port).set("Sec-WebSocket-Version", "8").bytes(),
            426,
        ),
        (Req::upgrade(s.port).bytes(), 101),
    ] {
        let mut c = Client::connect(s.port);
        c.send(&req);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let r = c.read_response().expect("a response before the EOF");
        assert_eq!(r.status, status);
    }
}

#[test]
fn upgrade_after_a_plain_request_on_a_keep_alive_connection() {
    let log = Log::new();
    let s = two_protocols(&log);
    let plain = format!("GET /nothing HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", s.port);
    // one after the other
    let mut c = Client::connect(s.port);
    c.send(plain.as_bytes());
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 404, "{}", r.raw);
    let len: usize = r.header("Content-Length").unwrap().parse().unwrap();
    let mut body = vec![0u8; len];
    c.read_exact_buffered(&mut body);
    c.send(&Req::upgrade(s.port).bytes());
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 101, "{}", r.raw);
    c.send_text("after http");
    c.expect_text("after http");
}

#[test]
fn upgrade_pipelined_behind_a_plain_request() {
    let log = Log::new();
    let s = two_protocols(&log);
    let mut c = Client::connect(s.port);
    let mut bytes = format!("GET /nothing HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", s.port).into_bytes();
    bytes.extend(Req::upgrade(s.port).bytes());
    let f = c.frame(wsreactor::proto::OpCode::Text, true, b"piped");
    bytes.extend(f);
    c.send(&bytes);
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 404, "{}", r.raw);
    let len: usize = r.header("Content-Length").unwrap().parse().unwrap();
    // the body is in the client's buffer: read the next head after it
    let r2 = {
        let mut skip = vec![0u8; len];
        c.read_exact_buffered(&mut skip);
        c.read_response().expect("a second response")
    };
    assert_eq!(r2.status, 101, "{}", r2.raw);
    c.expect_text("piped");
}

#[test]
fn greeting_written_in_established_follows_the_101() {
    let log = Log::new();
    let l = log.clone();
    let s = Server::start(&log, move |b| {
        b.protocol(
            "g",
            Recorder::new("g", &l).hook(|wsi, r| {
                if let wsreactor::Reason::Established = r {
                    wsi.send_text("welcome")?;
                }
                // writes before the upgrade is complete are refused
                if let wsreactor::Reason::FilterProtocolConnection = r {
                    assert_eq!(wsi.send_text("early"), Err(wsreactor::WriteError::Closed));
                }
                Ok(())
            }),
        )
    });
    let mut c = Client::open(s.port);
    c.expect_text("welcome");
}
