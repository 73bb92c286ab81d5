//! Throughput of the sans-IO protocol core (`wsreactor::proto`), in bytes/s, next to
//! tungstenite 0.30's public equivalents where it has them.
//!
//! ```text
//! cargo bench --bench proto                 # everything (~2 min)
//! cargo bench --bench proto -- decode       # one group
//! cargo bench --bench proto -- --quick      # criterion's quick mode
//! ```
//!
//! | group | wsreactor | tungstenite 0.30 (public API) |
//! | --- | --- | --- |
//! | `decode` | `Receiver::decode` over masked client frames (unmask in place, UTF-8 check for text) | `FrameSocket::read` over an in-memory stream (unmask, no UTF-8 check: tungstenite validates at message level) |
//! | `frame_header` | `FrameHeader::parse` | `FrameHeader::parse` (`Cursor`) |
//! | `encode` | `encoder::encode_frame` (server frame, unmasked) | `Frame::message(..).format` |
//! | `mask` | `mask::apply_mask` | private in tungstenite (`protocol::frame::mask` is not `pub`): a naive byte loop is the reference |
//! | `utf8` | `Utf8Validator::feed` | `std::str::from_utf8` (what tungstenite uses on a complete text message) |
//! | `handshake` | `accept_key`, `validate_request`, httparse + validate + `write_response` | `derive_accept_key`, `Request::try_parse` + `create_response` + `write_response` |
//!
//! Input buffers are rebuilt outside the timed section (`iter_batched_ref`), so decode
//! figures do not include re-copying the masked input.
use std::hint::black_box;
use std::io::Cursor;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wsreactor::proto::{encoder, handshake, mask, utf8::Utf8Validator, Event, OpCode, Receiver, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Frames per iteration in the 16-byte decode case: one socket read's worth at depth 16.
const SMALL_FRAMES: usize = 256;

fn ascii(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Text mixing 1-, 2-, 3- and 4-byte UTF-8 sequences, cut at a character boundary.
fn mixed(n: usize) -> Vec<u8> {
    let unit = "hello, wörld: 価格 € 𝄞 — naïve café. ".as_bytes();
    let mut v = Vec::with_capacity(n + unit.len());
    while v.len() < n {
        v.extend_from_slice(unit);
    }
    let mut end = n;
    while std::str::from_utf8(&v[..end]).is_err() {
        end -= 1;
    }
    v.truncate(end);
    v
}

/// `count` masked client frames carrying `payload` back to back.
fn client_frames(op: OpCode, payload: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..count {
        encoder::encode_frame(&mut out, op, true, Some(KEY), payload);
    }
    out
}

/// Decodes every frame in `buf`; returns the payload bytes seen.
fn wsr_decode_all(rx: &mut Receiver, buf: &mut [u8]) -> usize {
    let mut pos = 0;
    let mut seen = 0;
    loop {
        let (n, ev) = rx.decode(&mut buf[pos..]).expect("valid frames");
        pos += n;
        match ev {
            Some(Event::Data { data, .. }) => seen += black_box(data).len(),
            Some(_) => {}
            None => return seen,
        }
    }
}

fn tung_decode_all(sock: &mut tungstenite::protocol::frame::FrameSocket<Cursor<Vec<u8>>>) -> usize {
    let mut seen = 0;
    while let Some(f) = sock.read(None).expect("valid frames") {
        seen += black_box(f.payload()).len();
    }
    seen
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let cases: [(&str, OpCode, Vec<u8>, usize); 3] = [
        ("16B_text_x256", OpCode::Text, ascii(16), SMALL_FRAMES),
        ("64KiB_binary", OpCode::Binary, ascii(64 << 10), 1),
        ("64KiB_text", OpCode::Text, ascii(64 << 10), 1),
    ];
    for (name, op, payload, count) in cases {
        let wire = client_frames(op, &payload, count);
        let total = payload.len() * count;
        g.throughput(Throughput::Bytes(total as u64));
        let size = if wire.len() > 4096 {
            BatchSize::LargeInput
        } else {
            BatchSize::SmallInput
        };
        g.bench_function(format!("wsreactor/{name}"), |b| {
            b.iter_batched_ref(
                || (Receiver::new(Role::Server, Default::default()), wire.clone()),
                |(rx, buf)| assert_eq!(wsr_decode_all(rx, buf), total),
                size,
            )
        });
        g.bench_function(format!("tungstenite/{name}"), |b| {
            b.iter_batched_ref(
                || tungstenite::protocol::frame::FrameSocket::new(Cursor::new(wire.clone())),
                |sock| assert_eq!(tung_decode_all(sock), total),
                size,
            )
        });
    }
    g.finish();
}

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    for (name, len) in [("7bit", 16usize), ("16bit", 1024), ("64bit", 1 << 16)] {
        let mut wire = Vec::new();
        encoder::encode_frame(&mut wire, OpCode::Binary, true, Some(KEY), &vec![0; len]);
        let hlen = wsreactor::proto::frame::header_len(len as u64, true);
        wire.truncate(hlen);
        g.throughput(Throughput::Bytes(hlen as u64));
        g.bench_function(format!("wsreactor/{name}"), |b| {
            b.iter(|| {
                wsreactor::proto::FrameHeader::parse(black_box(&wire))
                    .unwrap()
                    .unwrap()
            })
        });
        g.bench_function(format!("tungstenite/{name}"), |b| {
            b.iter(|| {
                let mut cur = Cursor::new(black_box(wire.as_slice()));
                tungstenite::protocol::frame::FrameHeader::parse(&mut cur)
                    .unwrap()
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    use tungstenite::protocol::frame::coding::{Data, OpCode as TOp};
    use tungstenite::protocol::frame::Frame;
    let mut g = c.benchmark_group("encode");
    for (name, len) in [("16B", 16usize), ("64KiB", 64 << 10)] {
        let payload = ascii(len);
        let bytes = tungstenite::Bytes::from(payload.clone());
        let mut out = Vec::with_capacity(len + 16);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("wsreactor/{name}"), |b| {
            b.iter(|| {
                out.clear();
                encoder::encode_frame(&mut out, OpCode::Binary, true, None, black_box(&payload));
                black_box(out.len())
            })
        });
        g.bench_function(format!("tungstenite/{name}"), |b| {
            b.iter(|| {
                out.clear();
                let f = Frame::message(bytes.clone(), TOp::Data(Data::Binary), true);
                f.format(&mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    let mut buf = ascii(64 << 10);
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("wsreactor/apply_mask_64KiB", |b| {
        b.iter(|| mask::apply_mask(black_box(&mut buf), KEY, 0))
    });
    g.bench_function("wsreactor/apply_mask_64KiB_offset3", |b| {
        b.iter(|| mask::apply_mask(black_box(&mut buf[1..]), KEY, 3))
    });
    // tungstenite's apply_mask is not public; a naive byte loop is the floor to beat.
    g.bench_function("naive_bytewise/64KiB", |b| {
        b.iter(|| {
            for (i, x) in black_box(&mut buf).iter_mut().enumerate() {
                *x ^= KEY[i & 3];
            }
        })
    });
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for (name, text) in [("ascii_64KiB", ascii(64 << 10)), ("mixed_64KiB", mixed(64 << 10))] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("wsreactor/{name}"), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(&text)).unwrap();
                assert!(v.is_complete());
            })
        });
        // Streaming: the same text in 1,500-byte chunks (one TCP segment at a time).
        g.bench_function(format!("wsreactor/{name}_chunked1500"), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for ch in black_box(&text).chunks(1500) {
                    v.feed(ch).unwrap();
                }
                assert!(v.is_complete());
            })
        });
        g.bench_function(format!("std_from_utf8/{name}"), |b| {
            b.iter(|| std::str::from_utf8(black_box(&text)).unwrap().len())
        });
    }
    g.finish();
}

const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: 127.0.0.1:9001\r\n\
User-Agent: wsload/0.1\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: http://127.0.0.1:9001\r\n\r\n";

fn handshakes(c: &mut Criterion) {
    use tungstenite::handshake::{machine::TryParse, server};
    let mut g = c.benchmark_group("handshake");
    let key = b"dGhlIHNhbXBsZSBub25jZQ==";
    g.throughput(Throughput::Bytes(key.len() as u64));
    g.bench_function("wsreactor/accept_key", |b| {
        b.iter(|| handshake::accept_key(black_box(key)))
    });
    g.bench_function("tungstenite/derive_accept_key", |b| {
        b.iter(|| tungstenite::handshake::derive_accept_key(black_box(key)))
    });

    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    // validate_request alone, on headers already split (what the reactor hands it).
    let mut hs = [httparse::EMPTY_HEADER; 16];
    let mut req = httparse::Request::new(&mut hs);
    req.parse(REQUEST).unwrap();
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    g.bench_function("wsreactor/validate_request", |b| {
        b.iter(|| {
            handshake::validate_request(black_box("GET"), 1, |n| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.as_slice())
            })
            .unwrap()
            .len()
        })
    });
    // Request head in, 101 response out.
    let mut out = Vec::with_capacity(256);
    // The reactor passes its per-cycle cached Date; formatting it is not part of this cost.
    let date = wsreactor::http::http_date(std::time::SystemTime::now());
    g.bench_function("wsreactor/parse+validate+respond", |b| {
        b.iter(|| {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hs);
            req.parse(black_box(REQUEST)).unwrap();
            let hdrs = &*req.headers;
            let key = handshake::validate_request(req.method.unwrap(), req.version.unwrap(), |n| {
                hdrs.iter()
                    .find(|h| h.name.eq_ignore_ascii_case(n))
                    .map(|h| h.value)
            })
            .unwrap();
            out.clear();
            handshake::write_response(&mut out, key, None, &[], Some(&date));
            black_box(out.len())
        })
    });
    g.bench_function("tungstenite/parse+validate+respond", |b| {
        b.iter(|| {
            let (_, req) = server::Request::try_parse(black_box(REQUEST)).unwrap().unwrap();
            let resp = server::create_response(&req).unwrap();
            out.clear();
            server::write_response(&mut out, &resp).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode, frame_header, encode, unmask, utf8, handshakes);
criterion_main!(benches);
