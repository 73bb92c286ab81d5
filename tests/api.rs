//! The application API over real loopback sockets: errors that say what they mean (a full
//! send queue under `?` waits instead of closing, filters refuse with their own status),
//! connections reached by id from the loop and from other connections' callbacks, typed
//! session access, the context-wide user value, and the HTTP helpers (method, URL
//! arguments, responses from memory).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use wsreactor::http::Method;
use wsreactor::{Close, ConnId, Protocol, Reason, Wsi};

const T: Duration = Duration::from_secs(5);

/// On `ESTABLISHED`, streams `N` numbered 1000-byte messages from WRITEABLE, writing with
/// `?` until the queue is full: the documented pattern.
struct Producer;

const N: u32 = 400;

impl Protocol for Producer {
    type Session = u32;
    fn callback(&mut self, wsi: &mut Wsi<'_>, next: &mut u32, reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::Established => wsi.callback_on_writable(),
            Reason::ServerWriteable => {
                while *next < N {
                    let mut m = vec![b'.'; 1000];
                    m[..4].copy_from_slice(&next.to_be_bytes());
                    wsi.send_binary(&m)?;
                    *next += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[test]
fn question_mark_on_a_full_send_queue_waits_for_room_instead_of_closing() {
    let log = Log::new();
    // 16 KiB of queue: 400 KB of messages meet back-pressure many times over
    let s = Server::start(&log, |b| b.max_unsent(16 << 10).protocol("p", Producer));
    let mut c = Client::open(s.port);
    c.stream.set_read_timeout(Some(T)).unwrap();
    for i in 0..N {
        match c.read_msg() {
            Msg::Binary(m) => {
                assert_eq!(m.len(), 1000);
                assert_eq!(u32::from_be_bytes(m[..4].try_into().unwrap()), i, "message order");
            }
            other => panic!("message {i}: {other:?}"),
        }
    }
    assert!(c.quiet_for(Duration::from_millis(200)), "more than {N} messages");
    // still open: a close handshake completes normally
    c.send_close(1000, "");
    assert_eq!(c.expect_close().0, Some(1000));
}

#[test]
fn conversions_say_what_they_mean() {
    use wsreactor::WriteError;
    let bp: Close = WriteError::BackPressure.into();
    assert!(bp.is_back_pressure());
    let frag: Close = WriteError::Fragmentation.into();
    assert!(!frag.is_back_pressure());
    assert_eq!(frag.code, 1011);
    let parse: Close = "x".parse::<u32>().unwrap_err().into();
    assert_eq!(parse.code, 1011);
    assert_eq!(Close::http_status(401, "who").http_status_code(), Some(401));
    assert_eq!(Close::http_status(1000, "").http_status_code(), Some(403));
    assert_eq!(Close::new(4000, "").http_status_code(), None);
}

/// Refuses upgrades to `/private` with 401 and its text, `/plain` with a WebSocket-style
/// error (a bare 403), and HTTP requests for `/gone` with 404 from the filter, `/teapot`
/// with 418 from `HTTP`.
struct Picky;

impl Protocol for Picky {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::FilterProtocolConnection if wsi.uri() == Some("/private") => {
                Err(Close::http_status(401, "members only"))
            }
            Reason::FilterProtocolConnection if wsi.uri() == Some("/plain") => Err(Close::new(1008, "no")),
            Reason::FilterHttpConnection { uri: "/gone" } => {
                Err(Close::http_status(404, "moved to the moon"))
            }
            Reason::Http { uri: "/teapot" } => Err(Close::http_status(418, "short and stout")),
            _ => Ok(()),
        }
    }
}

/// Sends `req` and reads the whole response (the request asks to close).
fn exchange(port: u16, req: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_filter_refusal_carries_the_status_and_text_the_handler_chose() {
    let log = Log::new();
    let s = Server::start(&log, |b| b.protocol("p", Picky));
    let req = String::from_utf8(Req::upgrade(s.port).path("/private").bytes()).unwrap();
    let private = exchange(s.port, &req);
    assert!(private.starts_with("HTTP/1.1 401 "), "{private}");
    assert!(private.contains("members only"), "{private}");

    let mut c = Client::connect(s.port);
    c.send(&Req::upgrade(s.port).path("/plain").bytes());
    assert_eq!(c.read_response().expect("a response").status, 403);

    let gone = exchange(
        s.port,
        "GET /gone HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(gone.starts_with("HTTP/1.1 404 "), "{gone}");
    assert!(gone.contains("moved to the moon"), "{gone}");
    let tea = exchange(
        s.port,
        "GET /teapot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(tea.starts_with("HTTP/1.1 418 "), "{tea}");
    assert!(tea.contains("short and stout"), "{tea}");
}

/// Every member announces its id; `kick ID`, `pause ID`, `resume ID`, `wake ID`, `pm ID
/// TEXT` act on another connection from this one's callback. A member echoes what it
/// receives, answers WRITEABLE with `W` and a user event with `U<event>:<data>`. Counts
/// messages in the context-wide user value.
struct Members;

#[derive(Default)]
struct Totals {
    messages: u64,
}

#[derive(Default, Debug)]
struct Member {
    said: u32,
}

fn parse_id(s: &[u8]) -> ConnId {
    let n: u64 = std::str::from_utf8(s).unwrap().trim().parse().unwrap();
    // ConnId has no public constructor: find it among the ones we announced
    ids()
        .lock()
        .unwrap()
        .iter()
        .copied()
        .find(|i| i.as_u64() == n)
        .expect("announced id")
}

fn ids() -> &'static std::sync::Mutex<Vec<ConnId>> {
    static IDS: std::sync::OnceLock<std::sync::Mutex<Vec<ConnId>>> = std::sync::OnceLock::new();
    IDS.get_or_init(Default::default)
}

impl Protocol for Members {
    type Session = Member;
    fn callback(&mut self, wsi: &mut Wsi<'_>, m: &mut Member, reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::Established => {
                ids().lock().unwrap().push(wsi.id());
                wsi.send_text(&wsi.id().as_u64().to_string())?;
            }
            Reason::Receive { data, .. } => {
                wsi.user_mut::<Totals>().expect("user value").messages += 1;
                m.said += 1;
                let (cmd, rest) = match data.iter().position(|&b| b == b' ') {
                    Some(i) => (&data[..i], &data[i + 1..]),
                    None => (data, &b""[..]),
                };
                match cmd {
                    b"kick" => {
                        wsi.conn(parse_id(rest)).close(4000, "kicked");
                    }
                    b"pause" => {
                        wsi.conn(parse_id(rest)).rx_flow_control(false);
                    }
                    b"resume" => {
                        wsi.conn(parse_id(rest)).rx_flow_control(true);
                    }
                    b"wake" => {
                        wsi.conn(parse_id(rest)).callback_on_writable();
                    }
                    b"pm" => {
                        let i = rest.iter().position(|&b| b == b' ').unwrap();
                        wsi.conn(parse_id(&rest[..i])).callback(5, &rest[i + 1..]);
                    }
                    _ => wsi.send_text(std::str::from_utf8(data)?)?,
                }
            }
            Reason::ServerWriteable => wsi.send_text("W")?,
            Reason::User { event, data } => {
                wsi.send_text(&format!("U{event}:{}", std::str::from_utf8(data)?))?
            }
            _ => {}
        }
        Ok(())
    }
}

fn join(port: u16) -> (Client, String) {
    let mut c = Client::open(port);
    c.stream.set_read_timeout(Some(T)).unwrap();
    let id = match c.read_msg() {
        Msg::Text(t) => t,
        other => panic!("{other:?}"),
    };
    (c, id)
}

#[test]
fn a_callback_reaches_other_connections_by_id() {
    let log = Log::new();
    let s = Server::start(&log, |b| b.user(Totals::default()).protocol("m", Members));
    let (mut a, _) = join(s.port);
    let (mut b, bid) = join(s.port);

    a.send_text(&format!("wake {bid}"));
    b.expect_text("W");
    a.send_text(&format!("pm {bid} hello there"));
    b.expect_text("U5:hello there");

    a.send_text(&format!("pause {bid}"));
    a.send_text("sync");
    a.expect_text("sync");
    b.send_text("held");
    assert!(b.quiet_for(Duration::from_millis(300)), "b was read while paused");
    a.send_text(&format!("resume {bid}"));
    b.expect_text("held");

    a.send_text(&format!("kick {bid}"));
    assert_eq!(b.expect_close(), (Some(4000), "kicked".to_owned()));
    // a is untouched, and the user value counted every message of both
    a.send_text("still here");
    a.expect_text("still here");
    let n = s.with_ctx(|ctx| ctx.user_mut::<Totals>().map(|t| t.messages));
    assert_eq!(n, Some(8));
}

#[test]
fn the_loop_reaches_connections_and_sessions_by_id() {
    let log = Log::new();
    let s = Server::start(&log, |b| b.user(Totals::default()).protocol("m", Members));
    let (mut a, aid) = join(s.port);
    let (mut b, bid) = join(s.port);
    let (a_id, b_id) = (parse_id(aid.as_bytes()), parse_id(bid.as_bytes()));
    a.send_text("one");
    a.expect_text("one");
    a.send_text("two");
    a.expect_text("two");

    let (said, wrong) = s.with_ctx(move |ctx| {
        let said = ctx.session::<Member>(a_id).map(|m| m.said);
        let wrong = ctx.session::<u32>(a_id).is_some();
        (said, wrong)
    });
    assert_eq!(said, Some(2), "typed session by id");
    assert!(!wrong, "a session of another type must be None");

    assert!(s.with_ctx(move |ctx| ctx.callback(b_id, 9, b"from the loop")));
    b.expect_text("U9:from the loop");
    assert!(s.with_ctx(move |ctx| ctx.rx_flow_control(b_id, false)));
    b.send_text("later");
    assert!(b.quiet_for(Duration::from_millis(300)));
    assert!(s.with_ctx(move |ctx| ctx.rx_flow_control(b_id, true)));
    b.expect_text("later");

    assert!(s.with_ctx(move |ctx| ctx.close(b_id, 4001, "bye")));
    assert_eq!(b.expect_close(), (Some(4001), "bye".to_owned()));
    b.send_close(4001, "");
    assert!(eventually(T, || s.with_ctx(move |ctx| ctx.session::<Member>(b_id).is_none())));
    // a stale id reaches nothing
    let stale = s.with_ctx(move |ctx| {
        (
            ctx.close(b_id, 1000, ""),
            ctx.callback(b_id, 1, b""),
            ctx.rx_flow_control(b_id, true),
            ctx.callback_on_writable(b_id),
        )
    });
    assert_eq!(stale, (false, false, false, false));
    a.send_text("fine");
    a.expect_text("fine");
}

/// Answers `/page` from memory with `respond`, and echoes the method and `?name=` back.
struct Pages;

impl Protocol for Pages {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        if let Reason::Http { uri } = reason {
            if uri.starts_with("/page") {
                let m = match wsi.method() {
                    Some(Method::Head) => "HEAD",
                    Some(Method::Get) => "GET",
                    _ => "other",
                };
                let body = format!("{m} {}", wsi.urlarg("name").unwrap_or_default());
                // the body depends on the method only through its words: same length
                let body = body.replace("HEAD", "GET!");
                wsi.respond(
                    200,
                    "text/plain; charset=utf-8",
                    body.as_bytes(),
                    &[("X-Test", "1")],
                )?;
            }
        }
        Ok(())
    }
}

#[test]
fn http_method_urlargs_and_responses_from_memory() {
    let log = Log::new();
    let s = Server::start(&log, |b| b.protocol("http", Pages));
    let get = exchange(
        s.port,
        "GET /page?x=1&name=caf%C3%A9+au+lait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(get.starts_with("HTTP/1.1 200 "), "{get}");
    assert!(
        get.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{get}"
    );
    assert!(get.contains("X-Test: 1\r\n"), "{get}");
    let want = "GET café au lait";
    assert!(
        get.contains(&format!("Content-Length: {}\r\n", want.len())),
        "{get}"
    );
    assert!(get.ends_with(&format!("\r\n\r\n{want}")), "{get}");
    assert!(get.contains("Connection: close\r\n"), "{get}");

    let head = exchange(
        s.port,
        "HEAD /page?name=caf%C3%A9+au+lait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", "GET! café au lait".len())),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "HEAD got a body: {head:?}");

    // keep-alive: two requests on one connection, both answered
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    c.write_all(b"GET /page?name=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /page?name=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("HTTP/1.1 200 ").count(), 2, "{out}");
    assert!(out.contains("\r\n\r\nGET 1HTTP/1.1 200 "), "{out}");
    assert!(out.ends_with("\r\n\r\nGET 2"), "{out}");
}
