//! permessage-deflate over loopback: negotiation in the 101, compressed echoes (whole and
//! fragmented, text and binary, every window and takeover combination), a compression bomb
//! refused with 1009 before it is inflated, RSV1 violations failed with 1002, a protocol
//! refusing the extension, and our client against our server.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsreactor::proto::deflate::{client_accept, DeflateOptions, DeflatePool, DeflateStream};
use wsreactor::proto::{encoder, OpCode};
use wsreactor::{ClientConnect, Close, Context, Protocol, Reason, WriteProtocol, Wsi};

/// Echoes pieces as fragments; records the extension seen at ESTABLISHED and each piece's
/// (len, first, last, remaining); refuses deflate in CONFIRM_EXTENSION_OKAY when told to.
#[derive(Clone, Default)]
struct Echo {
    refuse: bool,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Protocol for Echo {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ConfirmExtensionOkay { name } => {
                self.seen.lock().unwrap().push(format!("confirm {name}"));
                if self.refuse {
                    return Err(Close::new(1000, "no"));
                }
            }
            Reason::Established => {
                self.seen
                    .lock()
                    .unwrap()
                    .push(format!("established [{}]", wsi.extensions()));
            }
            Reason::Receive {
                data,
                binary,
                first,
                last,
                remaining,
            } => {
                self.seen
                    .lock()
                    .unwrap()
                    .push(format!("piece {} {first} {last} {remaining}", data.len()));
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

fn server(opts: DeflateOptions, echo: Echo) -> Server {
    let log = Log::new();
    Server::start(&log, move |b| {
        b.protocol("echo", echo)
            .accept_any_protocol(true)
            .permessage_deflate(opts)
            .max_message_size(1 << 20)
    })
}

/// A raw client that negotiated `offer`, with its side of the codec.
struct DClient {
    c: Client,
    tx: DeflateStream,
    rx: DeflateStream,
    pool: DeflatePool,
}

fn open(port: u16, offer: &str) -> (DClient, Option<String>) {
    let (c, r) = Client::open_with(port, Req::upgrade(port).set("Sec-WebSocket-Extensions", offer));
    let ext = r.header("sec-websocket-extensions").map(str::to_owned);
    // The client's view of the response, as our client role would take it.
    let neg = client_accept(ext.as_deref(), &DeflateOptions::default())
        .expect("a valid response")
        .unwrap_or_default();
    (
        DClient {
            c,
            tx: DeflateStream::new(neg),
            rx: DeflateStream::new(neg),
            pool: DeflatePool::new(DeflateOptions::default()),
        },
        ext,
    )
}

impl DClient {
    /// Sends `msg` compressed, in frames of `frag` bytes of input.
    fn send(&mut self, op: OpCode, msg: &[u8], frag: usize) {
        let chunks: Vec<&[u8]> = if msg.is_empty() {
            vec![&[][..]]
        } else {
            msg.chunks(frag).collect()
        };
        let mut wire = Vec::new();
        for (i, ch) in chunks.iter().enumerate() {
            let fin = i + 1 == chunks.len();
            let mut z = Vec::new();
            self.tx.compress(&mut self.pool, ch, i == 0, fin, &mut z);
            let (op, rsv) = if i == 0 {
                (op, 4)
            } else {
                (OpCode::Continuation, 0)
            };
            encoder::encode_frame_rsv(&mut wire, op, fin, rsv, Some(self.c.next_mask()), &z);
        }
        self.c.send(&wire);
    }

    /// Reads one message, inflating it; returns (opcode, data, frames).
    fn recv(&mut self) -> (OpCode, Vec<u8>, usize) {
        let mut out = vec![0u8; 1 << 16];
        let mut got = Vec::new();
        let first = self.c.read_frame();
        assert_eq!(first.rsv, 4, "the echo is compressed: {first:?}");
        let op = first.opcode;
        self.rx.begin_message(op == OpCode::Binary);
        let mut f = first;
        let mut frames = 0;
        loop {
            frames += 1;
            let mut inp = &f.payload[..];
            loop {
                let p = self
                    .rx
                    .inflate(&mut self.pool, inp, f.fin, &mut out, u64::MAX)
                    .unwrap();
                got.extend_from_slice(&out[..p.produced]);
                inp = &inp[p.consumed..];
                if p.done {
                    break;
                }
            }
            if f.fin {
                return (op, got, frames);
            }
            f = self.c.read_frame();
            assert_eq!((f.opcode, f.rsv), (OpCode::Continuation, 0), "{f:?}");
        }
    }
}

fn json_like(n: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0u32;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user{}\",\"ok\":true}},",
            i % 37
        ));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

#[test]
fn negotiates_and_echoes_compressed_messages_in_every_combination() {
    let s = server(DeflateOptions::default(), Echo::default());
    let offers = [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
        "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=10",
    ];
    for offer in offers {
        let (mut c, ext) = open(s.port, offer);
        let ext = ext.expect("deflate accepted");
        assert!(ext.starts_with("permessage-deflate"), "{offer}: {ext}");
        if offer.contains("server_max_window_bits=") {
            assert!(ext.contains("server_max_window_bits="), "{offer}: {ext}");
        }
        let text = json_like(40_000);
        for (msg, frag) in [
            (&text[..], usize::MAX),
            (&text[..], 1000),
            (&b""[..], 1),
            (&text[..100], 7),
            (&text[..], usize::MAX),
        ] {
            c.send(OpCode::Text, msg, frag);
            let (op, got, _) = c.recv();
            assert_eq!(op, OpCode::Text);
            assert_eq!(got, msg, "{offer} frag {frag}");
        }
        let bin: Vec<u8> = (0..100_000u64).map(|i| (i * i % 251) as u8).collect();
        c.send(OpCode::Binary, &bin, 30_000);
        let (op, got, _) = c.recv();
        assert_eq!((op, got.len()), (OpCode::Binary, bin.len()));
        assert_eq!(got, bin);
        // Control frames stay uncompressed amid a compressed message.
        c.c.send_frame(OpCode::Ping, true, b"hi");
        let f = c.c.read_frame();
        assert_eq!((f.opcode, f.rsv, &f.payload[..]), (OpCode::Pong, 0, &b"hi"[..]));
        c.c.send_close(1000, "");
        assert_eq!(c.c.read_frame().close().0, Some(1000));
    }
    s.stop();
}

#[test]
fn pieces_carry_first_last_and_remaining() {
    let echo = Echo::default();
    let seen = echo.seen.clone();
    let s = server(DeflateOptions::default(), echo);
    let (mut c, _) = open(s.port, "permessage-deflate");
    // 200 KiB inflated from one small frame: pieces of 64 KiB.
    let msg = vec![b'a'; 200 << 10];
    c.send(OpCode::Text, &msg, usize::MAX);
    let (_, got, frames) = c.recv();
    assert_eq!(got, msg);
    assert!(frames >= 4, "echoed piece by piece: {frames} frames");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "confirm permessage-deflate");
    assert_eq!(seen[1], "established [permessage-deflate]");
    let pieces: Vec<&String> = seen.iter().filter(|l| l.starts_with("piece")).collect();
    assert_eq!(pieces.len(), 4, "{pieces:?}");
    assert!(pieces[0].starts_with("piece 65536 true false"), "{pieces:?}");
    assert!(pieces[1].starts_with("piece 65536 false false"), "{pieces:?}");
    assert!(pieces[3].ends_with("false true 0"), "{pieces:?}");
    s.stop();
}

#[test]
fn a_bomb_is_refused_with_1009_before_it_is_inflated() {
    let s = server(DeflateOptions::default(), Echo::default());
    let (mut c, _) = open(s.port, "permessage-deflate");
    // 64 MiB of zeros compress to ~64 KiB; the limit is 1 MiB.
    let zeros = vec![0u8; 64 << 20];
    c.send(OpCode::Binary, &zeros, usize::MAX);
    // Pieces up to the limit are delivered (and echoed) as they inflate, then 1009.
    let mut pieces = 0;
    let f = loop {
        let f = c.c.read_frame();
        if f.opcode == OpCode::Close {
            break f;
        }
        pieces += 1;
    };
    assert_eq!(f.close().0, Some(1009));
    // Refused early is the piece count, not a time (a clock bound failed on a loaded
    // machine): at most 1 MiB of the 64 MiB was ever inflated.
    assert!(pieces <= 16, "{pieces} pieces of 64 KiB before the 1 MiB limit");
    // The server goes on serving others.
    let (mut d, _) = open(s.port, "permessage-deflate");
    d.send(OpCode::Text, b"still here", usize::MAX);
    assert_eq!(d.recv().1, b"still here");
    s.stop();
}

#[test]
fn rsv1_violations_fail_with_1002() {
    let s = server(DeflateOptions::default(), Echo::default());
    // RSV1 on a control frame, on a continuation; corrupt deflate data is 1007.
    type RawFrame<'a> = (OpCode, bool, u8, &'a [u8]);
    let cases: [(&[RawFrame], u16); 3] = [
        (&[(OpCode::Ping, true, 4, b"")], 1002),
        (
            &[
                (OpCode::Text, false, 4, &[0x02, 0x00]),
                (OpCode::Continuation, true, 4, b""),
            ],
            1002,
        ),
        (&[(OpCode::Binary, true, 4, &[0xff, 0xff, 0xff])], 1007),
    ];
    for (frames, want) in cases {
        let (mut c, _) = open(s.port, "permessage-deflate");
        for &(op, fin, rsv, p) in frames {
            let mut w = Vec::new();
            encoder::encode_frame_rsv(&mut w, op, fin, rsv, Some(c.c.next_mask()), p);
            c.c.send(&w);
        }
        assert_eq!(c.c.read_frame().close().0, Some(want), "{frames:?}");
    }
    // Without the extension negotiated RSV1 is a protocol error.
    let mut c = Client::open(s.port);
    let mut w = Vec::new();
    encoder::encode_frame_rsv(&mut w, OpCode::Text, true, 4, Some(c.next_mask()), &[0x02, 0x00]);
    c.send(&w);
    assert_eq!(c.read_frame().close().0, Some(1002));
    s.stop();
}

#[test]
fn a_protocol_may_refuse_it_and_a_bad_offer_is_declined() {
    let echo = Echo {
        refuse: true,
        ..Default::default()
    };
    let seen = echo.seen.clone();
    let s = server(DeflateOptions::default(), echo);
    let (mut c, ext) = open(s.port, "permessage-deflate");
    assert_eq!(ext, None);
    c.c.send_text("plain");
    assert_eq!(c.c.read_msg(), Msg::Text("plain".into()));
    assert!(seen.lock().unwrap().contains(&"established []".to_string()));
    s.stop();
    let s = server(DeflateOptions::default(), Echo::default());
    let (_, ext) = open(s.port, "permessage-deflate; server_max_window_bits=99");
    assert_eq!(ext, None);
    s.stop();
}

/// Our client, offering deflate, against our server: the echo comes back, and the
/// client saw the extension.
#[derive(Default)]
struct Talker {
    out: Arc<Mutex<Vec<String>>>,
}

impl Protocol for Talker {
    type Session = ();
    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        match reason {
            Reason::ClientConfirmExtensionSupported { name } => {
                self.out.lock().unwrap().push(format!("offer {name}"));
            }
            Reason::ClientEstablished => {
                self.out
                    .lock()
                    .unwrap()
                    .push(format!("established [{}]", wsi.extensions()));
                let msg = String::from_utf8(json_like(20_000)).unwrap();
                wsi.send_text(&msg)?;
            }
            Reason::ClientReceive { data, last, .. } => {
                let mut o = self.out.lock().unwrap();
                o.push(format!("got {} {last}", data.len()));
            }
            _ => {}
        }
        Ok(())
    }
}

#[test]
fn our_client_negotiates_with_our_server() {
    for (server_opts, client_opts) in [
        (DeflateOptions::default(), DeflateOptions::default()),
        (DeflateOptions::shared(), DeflateOptions::dedicated(10, 4)),
        (DeflateOptions::dedicated(9, 1), DeflateOptions::shared()),
    ] {
        let s = server(server_opts, Echo::default());
        let t = Talker::default();
        let out = t.out.clone();
        let mut ctx = Context::builder()
            .no_listen()
            .protocol("echo", t)
            .permessage_deflate(client_opts)
            .build()
            .unwrap();
        ctx.connect(ClientConnect::new("127.0.0.1", s.port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !out.lock().unwrap().iter().any(|l| l.ends_with(" true")) {
            ctx.service(Duration::from_millis(20)).unwrap();
        }
        let out = out.lock().unwrap().clone();
        assert_eq!(out[0], "offer permessage-deflate");
        assert_eq!(out[1], "established [permessage-deflate]");
        let total: usize = out
            .iter()
            .filter_map(|l| l.strip_prefix("got "))
            .map(|l| l.split(' ').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(total, 20_000, "{out:?}");
        drop(ctx);
        s.stop();
    }
}
