//! Frames on the wire: close codes for bad input (each failing only its connection),
//! fragmentation with interleaved control frames, large messages, split headers.

mod common;

use common::*;
use std::time::{Duration, Instant};
use wsreactor::proto::{encoder, OpCode};
use wsreactor::ContextBuilder;

const T: Duration = Duration::from_secs(5);

fn echo_server(log: &Log, extra: fn(ContextBuilder) -> ContextBuilder) -> Server {
    let l = log.clone();
    Server::start(log, move |b| {
        extra(b.protocol("echo", Recorder::echo("echo", &l)))
    })
}

fn no_extra(b: ContextBuilder) -> ContextBuilder {
    b
}

/// Opens a bystander and a victim connection, lets `send` misbehave on the victim, and
/// checks: the victim gets a close frame with `code` before `send_rest` (if any) is sent,
/// then the TCP connection closes; CLOSED (no peer code) and WSI_DESTROY follow; the
/// bystander still echoes.
fn fails_with(
    extra: fn(ContextBuilder) -> ContextBuilder,
    code: u16,
    send: impl FnOnce(&mut Client),
) -> String {
    let log = Log::new();
    let s = echo_server(&log, extra);
    let mut other = Client::open(s.port);
    let mut c = Client::open(s.port);
    send(&mut c);
    let (got, reason) = c.expect_close();
    assert_eq!(got, Some(code), "close reason {reason:?}");
    let t = c.expect_eof();
    assert!(t < Duration::from_secs(2), "TCP close took {t:?}");
    other.send_text("alive");
    other.expect_text("alive");
    drop(c);
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    assert_eq!(
        log.count(|r| r.ev
            == Ev::Closed {
                code: None,
                reason: vec![]
            }),
        1
    );
    other.send_binary(b"still");
    assert_eq!(other.read_msg(), Msg::Binary(b"still".to_vec()));
    reason
}

fn masked(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encoder::encode_frame(&mut v, op, fin, Some([0x37, 0xfa, 0x21, 0x3d]), payload);
    v
}

#[test]
fn unmasked_client_frame_1002() {
    fails_with(no_extra, 1002, |c| {
        let mut v = Vec::new();
        encoder::encode_frame(&mut v, OpCode::Text, true, None, b"plain");
        c.send(&v);
    });
}

#[test]
fn reserved_opcodes_1002() {
    for op in [0x3u8, 0x7, 0xb, 0xf] {
        fails_with(no_extra, 1002, |c| {
            c.send(&[0x80 | op, 0x81, 1, 2, 3, 4, b'x' ^ 1]);
        });
    }
}

#[test]
fn rsv_bits_1002() {
    for rsv in [0b100u8, 0b010, 0b001] {
        fails_with(no_extra, 1002, |c| {
            let mut v = Vec::new();
            encoder::encode_frame_rsv(&mut v, OpCode::Text, true, rsv, Some([1, 2, 3, 4]), b"x");
            c.send(&v);
        });
    }
}

#[test]
fn continuation_without_start_1002() {
    fails_with(no_extra, 1002, |c| {
        c.send_frame(OpCode::Continuation, true, b"orphan");
    });
}

#[test]
fn new_message_inside_fragmented_1002() {
    fails_with(no_extra, 1002, |c| {
        c.send_frame(OpCode::Text, false, b"a");
        c.send_frame(OpCode::Binary, true, b"b");
    });
}

#[test]
fn ping_longer_than_125_1002() {
    fails_with(no_extra, 1002, |c| {
        c.send_frame(OpCode::Ping, true, &[0u8; 126]);
    });
}

#[test]
fn long_ping_header_alone_1002() {
    // fails on the header: the payload never comes
    fails_with(no_extra, 1002, |c| {
        let f = masked(OpCode::Ping, true, &[0u8; 200]);
        c.send(&f[..8]);
    });
}

#[test]
fn fragmented_ping_1002() {
    fails_with(no_extra, 1002, |c| {
        c.send_frame(OpCode::Ping, false, b"frag");
    });
}

#[test]
fn invalid_utf8_text_1007() {
    fails_with(no_extra, 1007, |c| {
        c.send_frame(OpCode::Text, true, b"abc\xff");
    });
    // overlong encoding, surrogate, beyond U+10FFFF
    for bad in [&b"\xc0\xaf"[..], b"\xed\xa0\x80", b"\xf4\x90\x80\x80"] {
        fails_with(no_extra, 1007, |c| c.send_frame(OpCode::Text, true, bad));
    }
}

#[test]
fn text_ending_inside_a_sequence_1007() {
    fails_with(no_extra, 1007, |c| {
        c.send_frame(OpCode::Text, true, "ab€".as_bytes().split_last().unwrap().1);
    });
}

#[test]
fn invalid_utf8_split_across_frames_1007() {
    // "€" is e2 82 ac: a valid start in frame 1, a bad continuation in frame 2
    fails_with(no_extra, 1007, |c| {
        c.send_frame(OpCode::Text, false, b"abc\xe2\x82");
        c.send_frame(OpCode::Continuation, true, b"\x28xyz");
    });
}

#[test]
fn invalid_utf8_split_across_tcp_writes_1007() {
    fails_with(no_extra, 1007, |c| {
        let f = c.frame(OpCode::Text, true, b"hello \xce\xba\xce\xff world");
        // header + "hello \xce\xba\xce" first, the bad byte later
        c.send(&f[..6 + 9]);
        std::thread::sleep(Duration::from_millis(50));
        c.send(&f[6 + 9..]);
    });
}

#[test]
fn invalid_utf8_fails_before_the_frame_ends() {
    // The bad byte is in the first write; the rest of the frame never comes: the close must
    // arrive anyway.
    fails_with(no_extra, 1007, |c| {
        let mut p = b"abc\xff".to_vec();
        p.extend_from_slice(&[b'x'; 1000]);
        let f = c.frame(OpCode::Text, true, &p);
        c.send(&f[..8 + 10]);
    });
}

#[test]
fn valid_utf8_split_everywhere_is_fine() {
    let log = Log::new();
    let s = echo_server(&log, no_extra);
    let mut c = Client::open(s.port);
    let text = "aκόσμε€😀z";
    let bytes = text.as_bytes();
    for cut in 0..=bytes.len() {
        // split across two frames at every byte
        c.send_frame(OpCode::Text, false, &bytes[..cut]);
        c.send_frame(OpCode::Continuation, true, &bytes[cut..]);
        c.expect_text(text);
    }
    // and one frame split across two writes at every byte
    let f = c.frame(OpCode::Text, true, bytes);
    for cut in 1..f.len() {
        c.send(&f[..cut]);
        std::thread::sleep(Duration::from_millis(2));
        c.send(&f[cut..]);
        c.expect_text(text);
    }
}

#[test]
fn close_with_reserved_codes_1002() {
    for code in [1005u16, 999, 1004, 1006, 1015, 2999, 5000] {
        fails_with(no_extra, 1002, |c| c.send_close(code, ""));
    }
}

#[test]
fn close_with_one_byte_payload_1002() {
    fails_with(no_extra, 1002, |c| c.send_frame(OpCode::Close, true, b"\x03"));
}

#[test]
fn close_with_invalid_utf8_reason_1007() {
    fails_with(no_extra, 1007, |c| {
        c.send_frame(OpCode::Close, true, b"\x03\xe8ok\xc3\x28")
    });
}

#[test]
fn length_with_top_bit_1002() {
    fails_with(no_extra, 1002, |c| {
        let mut v = vec![0x82, 0xff];
        v.extend_from_slice(&(1u64 << 63).to_be_bytes());
        v.extend_from_slice(&[1, 2, 3, 4]);
        c.send(&v);
    });
}

fn small_limits(b: ContextBuilder) -> ContextBuilder {
    b.max_frame_size(1000).max_message_size(1500)
}

#[test]
fn frame_too_big_fails_on_the_header_1009() {
    let reason = fails_with(small_limits, 1009, |c| {
        let f = c.frame(OpCode::Binary, true, &[0u8; 1001]);
        // header only (2 + 2 + 4 bytes)
        c.send(&f[..8]);
    });
    assert!(!reason.is_empty());
}

#[test]
fn huge_frame_header_1009() {
    fails_with(no_extra, 1009, |c| {
        let mut v = vec![0x82, 0xff];
        v.extend_from_slice(&(1u64 << 40).to_be_bytes());
        v.extend_from_slice(&[1, 2, 3, 4]);
        c.send(&v);
    });
}

#[test]
fn message_too_big_fails_on_the_header_1009() {
    fails_with(small_limits, 1009, |c| {
        c.send_frame(OpCode::Binary, false, &[1u8; 800]);
        let f = c.frame(OpCode::Continuation, true, &[2u8; 800]);
        c.send(&f[..8]);
    });
}

#[test]
fn frames_at_the_limits_are_fine() {
    let log = Log::new();
    let s = echo_server(&log, small_limits);
    let mut c = Client::open(s.port);
    c.send_binary(&[5u8; 1000]);
    assert_eq!(c.read_msg(), Msg::Binary(vec![5u8; 1000]));
    c.send_frame(OpCode::Binary, false, &[1u8; 1000]);
    c.send_frame(OpCode::Continuation, true, &[2u8; 500]);
    let mut want = vec![1u8; 1000];
    want.extend_from_slice(&[2u8; 500]);
    assert_eq!(c.read_msg(), Msg::Binary(want));
}

#[test]
fn close_handshake_from_the_client() {
    let log = Log::new();
    let s = echo_server(&log, no_extra);
    // empty close: echoed empty
    let mut c = Client::open(s.port);
    c.send_frame(OpCode::Close, true, b"");
    let f = c.read_frame();
    assert_eq!((f.opcode, f.payload.len()), (OpCode::Close, 0));
    c.expect_eof();
    drop(c);
    log.wait_count(1, T, |r| r.ev == Ev::WsiDestroy);
    assert_eq!(
        log.count(|r| r.ev
            == Ev::Closed {
                code: None,
                reason: vec![]
            }),
        1
    );
    // application code: echoed, and nothing after the close is delivered
    let mut c = Client::open(s.port);
    let mut w = c.frame(OpCode::Close, true, &Client::close_payload(4321, "é"));
    w.extend(c.frame(OpCode::Text, true, b"after close"));
    c.send(&w);
    assert_eq!(c.read_frame().close(), (Some(4321), String::new()));
    c.expect_eof();
    drop(c);
    log.wait_count(2, T, |r| r.ev == Ev::WsiDestroy);
    assert_eq!(
        log.count(|r| r.ev
            == Ev::Closed {
                code: Some(4321),
                reason: "é".as_bytes().to_vec()
            }),
        1
    );
    assert_eq!(log.count(|r| matches!(r.ev, Ev::Receive { .. })), 0);
}

#[test]
fn fragmented_message_with_interleaved_ping() {
    let log = Log::new();
    let s = echo_server(&log, no_extra);
    let mut c = Client::open(s.port);
    c.send_frame(OpCode::Text, false, b"Hel");
    c.send_frame(OpCode::Ping, true, b"p");
    c.send_frame(OpCode::Continuation, false, b"lo ");
    c.send_frame(OpCode::Pong, true, b"q");
    c.send_frame(OpCode::Continuation, true, b"world");
    c.expect_text("Hello world");
    assert_eq!(c.read_msg(), Msg::Pong(b"p".to_vec()));
    log.wait_count(3, T, |r| matches!(r.ev, Ev::Receive { .. }));
    let got: Vec<Ev> = log
        .snapshot()
        .into_iter()
        .filter(|r| matches!(r.ev, Ev::Receive { .. } | Ev::Pong(_)))
        .map(|r| r.ev)
        .collect();
    let piece = |d: &[u8], first, last| Ev::Receive {
        data: d.to_vec(),
        binary: false,
        first,
        last,
        remaining: 0,
        acc: (false, last, 0),
    };
    assert_eq!(
        got,
        [
            piece(b"Hel", true, false),
            piece(b"lo ", false, false),
            Ev::Pong(b"q".to_vec()),
            piece(b"world", false, true),
        ]
    );
}

fn pseudo_random(n: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(n);
    v
}

#[test]
fn one_mib_binary_round_trip() {
    let log = Log::new();
    let s = echo_server(&log, no_extra);
    let mut c = Client::open(s.port);
    let data = pseudo_random(1 << 20, 0x1234_5678_9abc_def1);
    let frame = c.frame(OpCode::Binary, true, &data);
    let mut w = c.stream.try_clone().unwrap();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut w, &frame).unwrap();
    });
    match c.read_msg() {
        Msg::Binary(b) => {
            assert_eq!(b.len(), data.len());
            assert!(b == data, "echo differs");
        }
        other => panic!("{:?}", std::mem::discriminant(&other)),
    }
    writer.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(8));
    // every piece was delivered, in order, with first/last marking one message
    let msgs = log.messages(None);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0] == data);
}

#[test]
fn large_fragmented_text_round_trip() {
    let log = Log::new();
    let s = echo_server(&log, no_extra);
    let mut c = Client::open(s.port);
    let unit = "aκόσμε€😀";
    let text: String = unit.repeat((300 << 10) / unit.len());
    let bytes = text.as_bytes();
    // 997-byte frames split characters everywhere
    let mut wire = Vec::new();
    let chunks: Vec<&[u8]> = bytes.chunks(997).collect();
    for (i, ch) in chunks.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        wire.extend(c.frame(op, i == chunks.len() - 1, ch));
        if i % 50 == 0 {
            wire.extend(c.frame(OpCode::Ping, true, &(i as u32).to_be_bytes()));
        }
    }
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for piece in wire.chunks(4093) {
            std::io::Write::write_all(&mut w, piece).unwrap();
        }
    });
    let mut pongs = 0;
    loop {
        match c.read_msg() {
            Msg::Text(t) => {
                assert!(t == text, "echo differs");
                break;
            }
            Msg::Pong(_) => pongs += 1,
            other => panic!("{other:?}"),
        }
    }
    writer.join().unwrap();
    let want_pongs = chunks.len().div_ceil(50);
    while pongs < want_pongs {
        assert!(matches!(c.read_msg(), Msg::Pong(_)));
        pongs += 1;
    }
}

#[test]
fn frame_header_split_over_many_writes() {
    let log = Log::new();
    let s = echo_server(&log, no_extra);
    let mut c = Client::open(s.port);
    for len in [5usize, 300, 70_000] {
        let payload = pseudo_random(len, len as u64 + 1);
        let f = c.frame(OpCode::Binary, true, &payload);
        let hl = match len {
            0..=125 => 6,
            126..=65535 => 8,
            _ => 14,
        };
        for i in 0..hl {
            c.send(&f[i..i + 1]);
            std::thread::sleep(Duration::from_millis(5));
        }
        let mid = hl + (f.len() - hl) / 2;
        c.send(&f[hl..mid]);
        std::thread::sleep(Duration::from_millis(5));
        c.send(&f[mid..]);
        assert_eq!(c.read_msg(), Msg::Binary(payload));
    }
    // a control frame split in the middle of its payload: still answered whole
    let f = c.frame(OpCode::Ping, true, b"split ping");
    c.send(&f[..9]);
    std::thread::sleep(Duration::from_millis(20));
    c.send(&f[9..]);
    assert_eq!(c.read_msg(), Msg::Pong(b"split ping".to_vec()));
}

#[test]
fn many_small_frames_in_one_write() {
    let log = Log::new();
    let s = echo_server(&log, no_extra);
    let mut c = Client::open(s.port);
    let mut w = Vec::new();
    for i in 0..500 {
        w.extend(c.frame(OpCode::Text, true, format!("m{i}").as_bytes()));
    }
    c.send(&w);
    for i in 0..500 {
        c.expect_text(&format!("m{i}"));
    }
}
