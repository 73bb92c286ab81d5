//! The extension mechanism (`ContextBuilder::extension`) with a toy extension, end to end
//! over loopback: `x-xor` XORs message payloads with a key negotiated as a parameter and
//! marks them with RSV2. Negotiation (the first valid offer wins, bad offers declined), the
//! transforms both ways (whole and fragmented, and a message it leaves alone), DESTROY,
//! CONFIRM_EXTENSION_OKAY refusing it, RSV bits it does not claim or on the wrong frame
//! (1002), its errors (1011) and panic, text that is not UTF-8 after the transform (1007),
//! alongside permessage-deflate, and our client negotiating it, with bad responses refused.

mod common;

use common::*;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsreactor::proto::deflate::{DeflateOptions, DeflatePool, DeflateStream, Negotiated};
use wsreactor::proto::extension::{Element, Extension, RxChunk, RxProgress, TxFrame, RSV2};
use wsreactor::proto::{encoder, OpCode, ProtocolError};
use wsreactor::{ClientConnect, Close, Context, Protocol, Reason, WriteProtocol, Wsi};

type Events = Arc<Mutex<Vec<String>>>;

/// The toy: key 1..=255 in `key=N`; a decoded `#` fails rx with 1011, a decoded `%`
/// panics; a sent message starting `plain:` is left alone, one starting `tx-fail` fails tx.
struct Xor {
    events: Events,
    /// The key a client offers.
    offer_key: u8,
}

impl Xor {
    fn new(events: &Events, offer_key: u8) -> Xor {
        Xor {
            events: events.clone(),
            offer_key,
        }
    }
    fn log(&self, s: String) {
        self.events.lock().unwrap().push(s);
    }
}

fn key_of(el: &Element<'_>) -> Option<u8> {
    el.param("key")??.parse().ok().filter(|&k| k != 0)
}

impl Extension for Xor {
    type Session = u8;

    fn name(&self) -> &str {
        "x-xor"
    }

    fn rsv(&self) -> u8 {
        RSV2
    }

    fn server_negotiate(&mut self, offers: &[Element<'_>]) -> Option<(u8, String)> {
        let key = offers.iter().find_map(key_of)?;
        self.log(format!("construct {key}"));
        Some((key, format!("x-xor; key={key}")))
    }

    fn client_offer(&mut self) -> String {
        format!("x-xor; key={}", self.offer_key)
    }

    fn client_accept(&mut self, response: &Element<'_>) -> Result<u8, String> {
        match key_of(response) {
            Some(k) if k == self.offer_key => {
                self.log(format!("client-construct {k}"));
                Ok(k)
            }
            other => Err(format!("x-xor: key {other:?} is not the one offered")),
        }
    }

    fn destroy(&mut self, key: u8) {
        self.log(format!("destroy {key}"));
    }

    fn rx(&mut self, key: &mut u8, chunk: RxChunk<'_>, out: &mut [u8]) -> Result<RxProgress, ProtocolError> {
        let n = chunk.data.len().min(out.len());
        for (o, b) in out.iter_mut().zip(&chunk.data[..n]) {
            *o = b ^ *key;
        }
        if out[..n].contains(&b'#') {
            return Err(ProtocolError::new(1011, "x-xor: # received"));
        }
        if out[..n].contains(&b'%') {
            panic!("x-xor: % received");
        }
        Ok(RxProgress {
            consumed: n,
            produced: n,
            done: n == chunk.data.len(),
        })
    }

    fn tx(&mut self, key: &mut u8, frame: TxFrame<'_>, out: &mut Vec<u8>) -> Result<bool, ProtocolError> {
        if frame.first && frame.data.starts_with(b"plain:") {
            return Ok(false);
        }
        if frame.data.starts_with(b"tx-fail") {
            return Err(ProtocolError::new(1011, "x-xor: tx-fail"));
        }
        out.extend(frame.data.iter().map(|b| b ^ *key));
        Ok(true)
    }
}

fn xor(data: &[u8], key: u8) -> Vec<u8> {
    data.iter().map(|b| b ^ key).collect()
}

/// Echoes pieces as fragments and logs ESTABLISHED's extensions, each piece, and CONFIRM
/// (refusing `x-xor` when told to).
#[derive(Clone)]
struct Echo {
    events: Events,
    refuse: bool,
}

impl Protocol for Echo {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ConfirmExtensionOkay { name } => {
                self.events.lock().unwrap().push(format!("confirm {name}"));
                if self.refuse && name == "x-xor" {
                    return Err(Close::new(1000, "no"));
                }
            }
            Reason::Established => {
                let e = wsi.extensions();
                self.events.lock().unwrap().push(format!("established [{e}]"));
            }
            Reason::Receive {
                data,
                binary,
                first,
                last,
                ..
            } => {
                self.events.lock().unwrap().push(format!(
                    "piece {:?} {first} {last}",
                    String::from_utf8_lossy(data)
                ));
                let wp = match (first, binary) {
                    (false, _) => WriteProtocol::Continuation,
                    (true, false) => WriteProtocol::Text,
                    (true, true) => WriteProtocol::Binary,
                };
                wsi.write_fragment(data, wp, last)?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn server_with(events: &Events, refuse: bool, deflate: bool, max_message: u64) -> Server {
    let log = Log::new();
    let (e1, e2) = (events.clone(), events.clone());
    Server::start(&log, move |b| {
        let b = b
            .protocol("echo", Echo { events: e1, refuse })
            .accept_any_protocol(true)
            .max_message_size(max_message);
        let b = if deflate {
            b.permessage_deflate(DeflateOptions::default())
        } else {
            b
        };
        b.extension(Xor::new(&e2, 0))
    })
}

fn server(events: &Events) -> Server {
    server_with(events, false, false, 1 << 20)
}

fn events() -> Events {
    Arc::new(Mutex::new(Vec::new()))
}

fn has(events: &Events, what: &str) -> bool {
    events.lock().unwrap().iter().any(|e| e == what)
}

fn wait_for(events: &Events, what: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if has(events, what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn open(port: u16, offer: &str) -> (Client, Option<String>) {
    let (c, r) = Client::open_with(port, Req::upgrade(port).set("Sec-WebSocket-Extensions", offer));
    (c, r.header("sec-websocket-extensions").map(str::to_owned))
}

fn send_rsv(c: &mut Client, op: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
    let mut v = Vec::new();
    let m = c.next_mask();
    encoder::encode_frame_rsv(&mut v, op, fin, rsv, Some(m), payload);
    c.send(&v);
}

/// Reads frames until a close frame; returns its code.
fn close_code(c: &mut Client) -> Option<u16> {
    loop {
        match c.try_read_frame() {
            Ok(Some(f)) if f.opcode == OpCode::Close => return f.close().0,
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

#[test]
fn negotiates_the_first_valid_offer_and_transforms_both_ways() {
    let ev = events();
    let s = server(&ev);
    let (mut c, ext) = open(s.port, "x-xor; key=300, x-xor, x-xor; key=7, x-xor; key=9");
    assert_eq!(ext.as_deref(), Some("x-xor; key=7"));
    assert!(wait_for(&ev, "construct 7"));
    assert!(wait_for(&ev, "confirm x-xor"));
    assert!(wait_for(&ev, "established [x-xor]"));

    // Whole: RSV2, XORed; the echo comes back the same way.
    send_rsv(&mut c, OpCode::Text, true, RSV2, &xor(b"hello", 7));
    let f = c.read_frame();
    assert_eq!((f.opcode, f.rsv, f.fin), (OpCode::Text, RSV2, true));
    assert_eq!(xor(&f.payload, 7), b"hello");
    assert!(wait_for(&ev, "piece \"hello\" true true"));

    // Fragmented: RSV2 on the first frame only, each frame transformed.
    send_rsv(&mut c, OpCode::Binary, false, RSV2, &xor(b"abc", 7));
    send_rsv(&mut c, OpCode::Continuation, true, 0, &xor(b"def", 7));
    let f1 = c.read_frame();
    let f2 = c.read_frame();
    assert_eq!((f1.opcode, f1.rsv, f1.fin), (OpCode::Binary, RSV2, false));
    assert_eq!((f2.opcode, f2.rsv, f2.fin), (OpCode::Continuation, 0, true));
    assert_eq!(xor(&f1.payload, 7), b"abc");
    assert_eq!(xor(&f2.payload, 7), b"def");

    // A message without RSV2 is not transformed on receipt; the echo's "plain:" is left
    // alone by tx too.
    c.send_text("plain: as is");
    let f = c.read_frame();
    assert_eq!((f.rsv, &f.payload[..]), (0, &b"plain: as is"[..]));
    assert!(wait_for(&ev, "piece \"plain: as is\" true true"));

    // DESTROY once the connection is gone.
    assert!(!has(&ev, "destroy 7"));
    c.send_close(1000, "");
    assert_eq!(close_code(&mut c), Some(1000));
    assert!(wait_for(&ev, "destroy 7"), "{:?}", ev.lock().unwrap());
    s.stop();
}

#[test]
fn a_declined_or_refused_extension_is_not_used_and_its_bits_fail() {
    let ev = events();
    let s = server(&ev);
    // Declined: no valid key.
    let (mut c, ext) = open(s.port, "x-xor; key=0, x-xor; key=abc");
    assert_eq!(ext, None);
    send_rsv(&mut c, OpCode::Text, true, RSV2, b"x");
    assert_eq!(close_code(&mut c), Some(1002));
    assert!(
        !has(&ev, "confirm x-xor"),
        "CONFIRM only after a successful negotiation"
    );
    s.stop();

    // Refused by the protocol's CONFIRM_EXTENSION_OKAY: its session is destroyed at once.
    let ev = events();
    let s = server_with(&ev, true, false, 1 << 20);
    let (mut c, ext) = open(s.port, "x-xor; key=5");
    assert_eq!(ext, None);
    assert!(wait_for(&ev, "construct 5"));
    assert!(wait_for(&ev, "destroy 5"));
    assert!(wait_for(&ev, "established []"));
    send_rsv(&mut c, OpCode::Text, true, RSV2, b"x");
    assert_eq!(close_code(&mut c), Some(1002));
    s.stop();
}

#[test]
fn rsv_bits_on_the_wrong_frame_or_unclaimed_fail_with_1002() {
    let ev = events();
    let s = server(&ev);
    type Case = fn(&mut Client);
    let cases: [(&str, Case); 4] = [
        ("RSV2 on a continuation", |c| {
            send_rsv(c, OpCode::Text, false, RSV2, &xor(b"a", 3));
            send_rsv(c, OpCode::Continuation, true, RSV2, &xor(b"b", 3));
        }),
        ("RSV1, not negotiated", |c| {
            send_rsv(c, OpCode::Text, true, 4, b"a")
        }),
        ("RSV3, claimed by nobody", |c| {
            send_rsv(c, OpCode::Text, true, 1, b"a")
        }),
        ("RSV2 on a ping", |c| send_rsv(c, OpCode::Ping, true, RSV2, b"a")),
    ];
    for (what, send) in cases {
        let (mut c, ext) = open(s.port, "x-xor; key=3");
        assert_eq!(ext.as_deref(), Some("x-xor; key=3"));
        send(&mut c);
        assert_eq!(close_code(&mut c), Some(1002), "{what}");
    }
    s.stop();
}

#[test]
fn extension_errors_fail_only_their_connection() {
    let ev = events();
    let s = server(&ev);
    let (mut bystander, _) = open(s.port, "x-xor; key=2");

    // rx error: 1011 with its reason, DESTROY after.
    let (mut c, _) = open(s.port, "x-xor; key=11");
    send_rsv(&mut c, OpCode::Text, true, RSV2, &xor(b"a#b", 11));
    let f = c.read_frame();
    assert_eq!(f.close(), (Some(1011), "x-xor: # received".to_string()));
    drop(c); // the server waits for the TCP close after its close frame
    assert!(wait_for(&ev, "destroy 11"));

    // tx error (the echo of "tx-fail..."): 1011.
    let (mut c, _) = open(s.port, "x-xor; key=12");
    send_rsv(&mut c, OpCode::Text, true, RSV2, &xor(b"tx-fail now", 12));
    assert_eq!(close_code(&mut c), Some(1011));
    drop(c);
    assert!(wait_for(&ev, "destroy 12"));

    // A panic in rx: 1011, the context goes on.
    let (mut c, _) = open(s.port, "x-xor; key=13");
    send_rsv(&mut c, OpCode::Binary, true, RSV2, &xor(b"50%", 13));
    assert_eq!(close_code(&mut c), Some(1011));
    drop(c);
    assert!(wait_for(&ev, "destroy 13"));

    // Text that is not UTF-8 once transformed: 1007 (the reactor checks after every
    // extension).
    let (mut c, _) = open(s.port, "x-xor; key=14");
    send_rsv(&mut c, OpCode::Text, true, RSV2, &xor(&[b'a', 0xff], 14));
    assert_eq!(close_code(&mut c), Some(1007));

    // The bystander still echoes.
    send_rsv(&mut bystander, OpCode::Text, true, RSV2, &xor(b"still here", 2));
    let f = bystander.read_frame();
    assert_eq!(xor(&f.payload, 2), b"still here");
    s.stop();
}

#[test]
fn sits_beside_permessage_deflate() {
    let ev = events();
    let s = server_with(&ev, false, true, 1 << 20);
    let (mut c, ext) = open(s.port, "x-xor; key=21, permessage-deflate");
    // Registration order: deflate first.
    assert_eq!(ext.as_deref(), Some("permessage-deflate, x-xor; key=21"));
    assert!(wait_for(&ev, "established [permessage-deflate, x-xor]"));
    let neg = Negotiated::default();
    let mut pool = DeflatePool::new(DeflateOptions::default());
    let (mut tx, mut rx) = (DeflateStream::new(neg), DeflateStream::new(neg));

    // An XORed message is received through x-xor; the echo goes out through deflate, the
    // first negotiated extension that takes it.
    send_rsv(&mut c, OpCode::Text, true, RSV2, &xor(b"via xor", 21));
    let f = c.read_frame();
    assert_eq!(f.rsv, 4, "{f:?}");
    let mut out = [0u8; 64];
    rx.begin_message(false);
    let p = rx
        .inflate(&mut pool, &f.payload, true, &mut out, 1 << 20)
        .unwrap();
    assert_eq!(&out[..p.produced], b"via xor");

    // A compressed one through deflate.
    let mut z = Vec::new();
    tx.compress(&mut pool, b"via deflate", true, true, &mut z);
    send_rsv(&mut c, OpCode::Text, true, 4, &z);
    assert!(wait_for(&ev, "piece \"via deflate\" true true"));
    let _ = c.read_frame();

    // Both bits on one message: 1002.
    send_rsv(&mut c, OpCode::Text, true, 4 | RSV2, b"x");
    assert_eq!(close_code(&mut c), Some(1002));
    drop(c);
    assert!(wait_for(&ev, "destroy 21"));
    s.stop();
}

/// Our client: sends "ping" once established, records what comes back.
#[derive(Clone)]
struct Talker {
    events: Events,
}

impl Protocol for Talker {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        let mut ev = self.events.lock().unwrap();
        match reason {
            Reason::ClientConfirmExtensionSupported { name } => ev.push(format!("offer {name}")),
            Reason::ClientEstablished => {
                ev.push(format!("client established [{}]", wsi.extensions()));
                drop(ev);
                wsi.send_text("from the client")?;
            }
            Reason::ClientReceive { data, .. } => {
                ev.push(format!("client got {:?}", String::from_utf8_lossy(data)));
                return Err(Close::new(1000, "done"));
            }
            Reason::ClientConnectionError { reason } => ev.push(format!("client error {reason}")),
            _ => {}
        }
        Ok(())
    }
}

fn run_client(port: u16, events: &Events, key: u8, until: impl Fn(&Events) -> bool) -> Context {
    let mut ctx = Context::builder()
        .no_listen()
        .protocol(
            "echo",
            Talker {
                events: events.clone(),
            },
        )
        .extension(Xor::new(events, key))
        .build()
        .unwrap();
    ctx.connect(ClientConnect::new("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !until(events) {
        ctx.service(Duration::from_millis(20)).unwrap();
    }
    ctx
}

#[test]
fn our_client_negotiates_it_with_our_server() {
    let sev = events();
    let s = server(&sev);
    let cev = events();
    let mut ctx = run_client(s.port, &cev, 33, |e| has(e, "destroy 33"));
    // Ends on its own: the client closes after the echo; DESTROY on both sides.
    let got = cev.lock().unwrap().clone();
    assert_eq!(got[0], "offer x-xor");
    assert!(has(&cev, "client-construct 33"), "{got:?}");
    assert!(has(&cev, "client established [x-xor]"), "{got:?}");
    assert!(has(&cev, "client got \"from the client\""), "{got:?}");
    assert!(has(&cev, "destroy 33"), "{got:?}");
    assert!(wait_for(&sev, "piece \"from the client\" true true"));
    assert!(wait_for(&sev, "destroy 33"));
    ctx.service(Duration::from_millis(1)).unwrap();
    s.stop();
}

/// A one-shot server answering any upgrade with `ext` as its extension header.
fn fake_server(ext: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut b = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&b[..n]);
        }
        let req = String::from_utf8_lossy(&buf).to_string();
        let key = req
            .lines()
            .find_map(|l| {
                l.strip_prefix("Sec-WebSocket-Key: ")
                    .or(l.strip_prefix("sec-websocket-key: "))
            })
            .unwrap_or("")
            .trim()
            .to_string();
        let accept = wsreactor::proto::handshake::accept_key(key.as_bytes());
        let _ = write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: {ext}\r\n\r\n"
        );
        std::thread::sleep(Duration::from_millis(500));
    });
    port
}

#[test]
fn our_client_fails_bad_responses() {
    for (ext, why) in [
        ("x-xor; key=9", "is not the one offered"),
        ("x-other", "which we did not offer"),
        ("x-xor; key=44, x-xor; key=44", "twice"),
    ] {
        let port = fake_server(ext);
        let cev = events();
        let _ctx = run_client(port, &cev, 44, |e| {
            e.lock().unwrap().iter().any(|l| l.starts_with("client error"))
        });
        let got = cev.lock().unwrap().clone();
        let err = got
            .iter()
            .find(|l| l.starts_with("client error"))
            .unwrap_or_else(|| panic!("{got:?}"));
        assert!(err.contains(why), "{ext}: {err}");
        assert!(
            !got.iter().any(|l| l.starts_with("client established")),
            "{got:?}"
        );
        // A session made before the error is destroyed.
        let made = got.iter().filter(|l| l.starts_with("client-construct")).count();
        let gone = got.iter().filter(|l| l.starts_with("destroy")).count();
        assert_eq!(made, gone, "{got:?}");
    }
}
