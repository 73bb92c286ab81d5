//! Property-based fuzzing of the sans-IO message decoder (`proto::Receiver`, server role).
//!
//! Inputs are presented the way the module docs ask: whatever `decode` does not consume is
//! kept and presented again with the next bytes appended.
//!
//! * (a) byte soup (random bytes and frame-shaped garbage) in random chunkings: no panic, no
//!   endless loop, every event consumes input, the kept tail stays small;
//! * (b) a model test: random valid message sequences (text/binary, random fragmentation,
//!   pings and pongs inside and between messages, a final close), masked, in random
//!   chunkings, with random chunk caps: the events reassemble to exactly the originals;
//! * (c) mutated valid streams (bit flips, byte changes, insertions, truncation): no panic,
//!   errors only with 1002/1007/1009, and the outcome does not depend on the chunking.
//!
//! Each test prints how many inputs it ran.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wsreactor::proto::{encoder, Event, Limits, OpCode, ProtocolError, Receiver, Role};

/// Case counts can be scaled with `FUZZ_SCALE` (e.g. `FUZZ_SCALE=10` for a long run).
fn scaled(n: u32) -> u32 {
    let k: u32 = std::env::var("FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    n.saturating_mul(k.max(1))
}

/// An owned decoder event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Data {
        data: Vec<u8>,
        binary: bool,
        first: bool,
        last: bool,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, Vec<u8>),
}

/// Largest tail a caller may have to keep: a control frame with a 6-byte header (lengths
/// must be minimally encoded, so a control frame has no extended length) and 125 bytes of
/// payload, all but its last byte.
const MAX_TAIL: usize = 6 + 125 - 1;

struct Run {
    events: Vec<Out>,
    result: Result<(), ProtocolError>,
    /// Bytes kept unconsumed at the end.
    tail: usize,
    /// A close frame ended decoding (the rest is left unconsumed on purpose).
    closed: bool,
}

/// Feeds `wire` cut at `cuts` (positions, any order, duplicates allowed).
fn drive(limits: Limits, max_chunk: usize, wire: &[u8], cuts: &[usize]) -> Run {
    let mut rx = Receiver::new(Role::Server, limits);
    rx.frames_mut().set_max_chunk(max_chunk);
    let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(wire.len())).collect();
    points.push(0);
    points.push(wire.len());
    points.sort_unstable();
    points.dedup();
    let mut pending: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    // Every event consumes at least one byte and every None ends a piece, so the number of
    // decode calls is bounded by bytes + pieces.
    let bound = wire.len() + points.len() + 4;
    let mut calls = 0usize;
    for w in points.windows(2) {
        pending.extend_from_slice(&wire[w[0]..w[1]]);
        let mut pos = 0;
        loop {
            calls += 1;
            assert!(calls <= bound, "decoder does not make progress");
            let before = pending.len() - pos;
            match rx.decode(&mut pending[pos..]) {
                Err(e) => {
                    return Run {
                        events,
                        result: Err(e),
                        tail: pending.len() - pos,
                        closed: false,
                    }
                }
                Ok((n, ev)) => {
                    assert!(n <= before, "consumed {n} of {before}");
                    pos += n;
                    let Some(ev) = ev else { break };
                    assert!(n > 0, "an event without consuming input: {ev:?}");
                    let out = match ev {
                        Event::Data {
                            data,
                            binary,
                            first,
                            last,
                            frame_last,
                            remaining,
                            rsv,
                        } => {
                            assert_eq!(rsv, 0, "no RSV bit was enabled");
                            assert_eq!(frame_last, remaining == 0);
                            if max_chunk > 0 {
                                assert!(data.len() <= max_chunk);
                            }
                            Out::Data {
                                data: data.to_vec(),
                                binary,
                                first,
                                last,
                            }
                        }
                        Event::Ping(p) => {
                            assert!(p.len() <= 125);
                            Out::Ping(p.to_vec())
                        }
                        Event::Pong(p) => {
                            assert!(p.len() <= 125);
                            Out::Pong(p.to_vec())
                        }
                        Event::Close { code, reason } => {
                            assert!(std::str::from_utf8(reason).is_ok());
                            Out::Close(code, reason.to_vec())
                        }
                    };
                    let closed = matches!(out, Out::Close(..));
                    events.push(out);
                    if closed {
                        assert!(rx.is_closed());
                        // nothing more is decoded after a close
                        let (n, ev) = rx.decode(&mut pending[pos..]).unwrap();
                        assert_eq!((n, ev.is_none()), (0, true));
                        return Run {
                            events,
                            result: Ok(()),
                            tail: pending.len() - pos,
                            closed: true,
                        };
                    }
                }
            }
        }
        pending.drain(..pos);
        assert!(
            pending.len() <= MAX_TAIL,
            "{} bytes kept unconsumed",
            pending.len()
        );
    }
    Run {
        tail: pending.len(),
        events,
        result: Ok(()),
        closed: false,
    }
}

/// Messages and control frames, with data pieces joined into whole messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Msg { binary: bool, data: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, Vec<u8>),
}

/// Joins data pieces; checks the first/last/binary flags are consistent. Returns the whole
/// messages and control frames, and the data of an unfinished message.
fn coalesce(events: &[Out]) -> (Vec<Item>, Option<Vec<u8>>) {
    let mut items = Vec::new();
    let mut cur: Option<(bool, Vec<u8>)> = None;
    for e in events {
        match e {
            Out::Data {
                data,
                binary,
                first,
                last,
            } => {
                if *first {
                    assert!(cur.is_none(), "first piece inside a message");
                    cur = Some((*binary, Vec::new()));
                }
                let c = cur.as_mut().expect("piece without a first");
                assert_eq!(c.0, *binary, "binary flag changed inside a message");
                c.1.extend_from_slice(data);
                if *last {
                    let (binary, data) = cur.take().unwrap();
                    if !binary {
                        assert!(std::str::from_utf8(&data).is_ok(), "invalid UTF-8 passed");
                    }
                    items.push(Item::Msg { binary, data });
                }
            }
            Out::Ping(p) => items.push(Item::Ping(p.clone())),
            Out::Pong(p) => items.push(Item::Pong(p.clone())),
            Out::Close(c, r) => items.push(Item::Close(*c, r.clone())),
        }
    }
    (items, cur.map(|c| c.1))
}

/// A chunk cap (`FrameDecoder::set_max_chunk`): none, or one of at least 125 bytes. Smaller
/// caps split control frame payloads, a bug shown by `small_chunk_cap_splits_control_frames`.
fn chunk_cap() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(0usize), 1 => 125usize..400]
}

fn cuts_strategy(max: usize) -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..max)
}

fn cut_points(idx: &[Index], len: usize) -> Vec<usize> {
    idx.iter().map(|i| i.index(len + 1)).collect()
}

// ---- (a) byte soup ------------------------------------------------------------------------

/// Frame-shaped garbage: plausible first bytes, mostly masked, small or odd lengths.
fn frameish() -> impl Strategy<Value = Vec<u8>> {
    let one = (
        any::<bool>(),
        prop_oneof![
            8 => prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]),
            1 => 0u8..16,
        ],
        prop_oneof![9 => Just(0u8), 1 => 0u8..8],
        prop_oneof![9 => Just(true), 1 => Just(false)],
        prop_oneof![
            6 => 0u64..40,
            1 => 120u64..130,
            1 => 126u64..300,
            1 => any::<u64>(),
        ],
        // length form: mostly minimal (frames that get past the header); sometimes the
        // 16- or 64-bit form whatever the length, which is non-minimal (1002) when the
        // length fits in fewer bytes
        prop_oneof![9 => Just(0u8), 1 => 1u8..3],
        any::<[u8; 4]>(),
        prop::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(fin, op, rsv, masked, len, form, key, body)| {
            let mut v = vec![(fin as u8) << 7 | rsv << 4 | op];
            let m = if masked { 0x80 } else { 0 };
            // form 0: minimal length encoding; 1: 16-bit, 2: 64-bit, possibly non-minimal
            // (and then rejected with 1002)
            match (form, len) {
                (0, l) if l < 126 => v.push(m | l as u8),
                (0 | 1, l) if l <= 0xffff => {
                    v.push(m | 126);
                    v.extend_from_slice(&(l as u16).to_be_bytes());
                }
                (_, l) => {
                    v.push(m | 127);
                    v.extend_from_slice(&l.to_be_bytes());
                }
            }
            if masked {
                v.extend_from_slice(&key);
            }
            v.extend_from_slice(&body);
            v
        });
    prop::collection::vec(one, 0..8).prop_map(|v| v.concat())
}

fn soup() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        frameish(),
        (frameish(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(mut a, b)| {
            a.extend(b);
            a
        }),
    ]
}

fn limits_strategy() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (1u64..200, 1u64..400).prop_map(|(f, m)| Limits {
            max_frame_size: f,
            max_message_size: m,
        }),
    ]
}

#[test]
fn fuzz_byte_soup_never_panics_or_stalls() {
    let count = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let t0 = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: scaled(40_000),
        failure_persistence: None,
        ..Config::default()
    });
    let strat = (soup(), cuts_strategy(12), limits_strategy(), chunk_cap());
    runner
        .run(&strat, |(wire, cuts, limits, chunk)| {
            count.fetch_add(1, Ordering::Relaxed);
            let r = drive(limits, chunk, &wire, &cut_points(&cuts, wire.len()));
            match r.result {
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    prop_assert!([1002, 1007, 1009].contains(&e.code), "unexpected code {}", e.code);
                }
                Ok(()) => prop_assert!(r.closed || r.tail <= MAX_TAIL),
            }
            // whatever came out is well-formed
            coalesce(&r.events);
            Ok(())
        })
        .unwrap();
    eprintln!(
        "fuzz (a) byte soup: {} inputs ({} errored) in {:.1?}",
        count.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        t0.elapsed()
    );
}

// ---- (b) model ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Model {
    Msg {
        binary: bool,
        data: Vec<u8>,
        /// Fragment boundaries (byte offsets into data).
        cuts: Vec<Index>,
        /// Control frames inserted after fragment `Index` (never after the last one).
        inner: Vec<(Index, bool, Vec<u8>)>,
    },
    /// A ping (true) or pong between messages.
    Control(bool, Vec<u8>),
}

fn model_item() -> impl Strategy<Value = Model> {
    let payload = prop_oneof![
        3 => any::<String>().prop_map(|s| (false, s.into_bytes())),
        1 => ".{0,300}".prop_map(|s: String| (false, s.into_bytes())),
        3 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| (true, b)),
        1 => prop::collection::vec(any::<u8>(), 0..3000).prop_map(|b| (true, b)),
    ];
    let control = (any::<bool>(), prop::collection::vec(any::<u8>(), 0..=125));
    prop_oneof![
        4 => (
            payload,
            prop::collection::vec(any::<Index>(), 0..6),
            prop::collection::vec(
                (any::<Index>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..=125)),
                0..3
            )
        )
            .prop_map(|((binary, data), cuts, inner)| Model::Msg {
                binary,
                data,
                cuts,
                inner
            }),
        1 => control.prop_map(|(ping, p)| Model::Control(ping, p)),
    ]
}

fn ctrl(ping: bool, p: &[u8]) -> Item {
    if ping {
        Item::Ping(p.to_vec())
    } else {
        Item::Pong(p.to_vec())
    }
}

/// Encodes the model, masked with keys from `keys` (cycled); returns the wire and the
/// expected items.
fn encode_model(items: &[Model], keys: &[[u8; 4]], close: &Option<(u16, String)>) -> (Vec<u8>, Vec<Item>) {
    let mut wire = Vec::new();
    let mut want = Vec::new();
    let mut k = 0usize;
    let mut key = || {
        k += 1;
        keys[k % keys.len()]
    };
    for it in items {
        match it {
            Model::Control(ping, p) => {
                let op = if *ping { OpCode::Ping } else { OpCode::Pong };
                encoder::encode_frame(&mut wire, op, true, Some(key()), p);
                want.push(ctrl(*ping, p));
            }
            Model::Msg {
                binary,
                data,
                cuts,
                inner,
            } => {
                let mut pts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
                pts.push(0);
                pts.push(data.len());
                pts.sort_unstable();
                // duplicates are kept on purpose: empty fragments
                let frags: Vec<&[u8]> = pts.windows(2).map(|w| &data[w[0]..w[1]]).collect();
                let n = frags.len();
                for (i, f) in frags.iter().enumerate() {
                    let op = match (i, binary) {
                        (0, true) => OpCode::Binary,
                        (0, false) => OpCode::Text,
                        _ => OpCode::Continuation,
                    };
                    encoder::encode_frame(&mut wire, op, i + 1 == n, Some(key()), f);
                    if i + 1 < n {
                        for (at, ping, p) in inner {
                            if at.index(n - 1) == i {
                                let op = if *ping { OpCode::Ping } else { OpCode::Pong };
                                encoder::encode_frame(&mut wire, op, true, Some(key()), p);
                                want.push(ctrl(*ping, p));
                            }
                        }
                    }
                }
                want.push(Item::Msg {
                    binary: *binary,
                    data: data.clone(),
                });
            }
        }
    }
    if let Some((code, reason)) = close {
        encoder::encode_close(&mut wire, Some(*code), reason, Some(key()));
        let mut r = reason.len().min(123);
        while !reason.is_char_boundary(r) {
            r -= 1;
        }
        want.push(Item::Close(Some(*code), reason.as_bytes()[..r].to_vec()));
    }
    (wire, want)
}

fn valid_stream() -> impl Strategy<Value = (Vec<u8>, Vec<Item>)> {
    (
        prop::collection::vec(model_item(), 0..8),
        prop::collection::vec(any::<[u8; 4]>(), 1..4),
        prop::option::of((prop_oneof![Just(1000u16), Just(1001), 3000u16..5000], ".{0,60}")),
    )
        .prop_map(|(items, keys, close)| encode_model(&items, &keys, &close))
}

#[test]
fn fuzz_model_valid_streams_reassemble_exactly() {
    let count = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let t0 = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: scaled(4_000),
        failure_persistence: None,
        ..Config::default()
    });
    let strat = (valid_stream(), cuts_strategy(24), chunk_cap());
    runner
        .run(&strat, |((wire, want), cuts, chunk)| {
            count.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(wire.len() as u64, Ordering::Relaxed);
            let r = drive(Limits::default(), chunk, &wire, &cut_points(&cuts, wire.len()));
            if let Err(e) = r.result {
                return Err(TestCaseError::fail(format!("valid stream refused: {e}")));
            }
            let (items, open) = coalesce(&r.events);
            prop_assert_eq!(open, None);
            prop_assert_eq!(r.tail, 0);
            prop_assert_eq!(items, want);
            Ok(())
        })
        .unwrap();
    eprintln!(
        "fuzz (b) model: {} inputs ({} KiB of frames) in {:.1?}",
        count.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) >> 10,
        t0.elapsed()
    );
}

// ---- (c) mutations ------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(wire: &mut Vec<u8>, m: &Mutation) {
    if wire.is_empty() {
        return;
    }
    match m {
        Mutation::FlipBit(i, b) => {
            let i = i.index(wire.len());
            wire[i] ^= 1 << b;
        }
        Mutation::SetByte(i, v) => {
            let i = i.index(wire.len());
            wire[i] = *v;
        }
        Mutation::Insert(i, v) => {
            let i = i.index(wire.len() + 1);
            wire.splice(i..i, v.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = i.index(wire.len());
            let end = (i + n).min(wire.len());
            wire.drain(i..end);
        }
        Mutation::Truncate(i) => {
            let i = i.index(wire.len());
            wire.truncate(i);
        }
    }
}

/// The outcome of a run, independent of how data pieces were cut.
fn outcome(r: &Run) -> (Result<(), u16>, Vec<Item>, Option<Vec<u8>>) {
    let (items, open) = coalesce(&r.events);
    match r.result {
        // After an error only the code is comparable: how much of the failing message was
        // delivered before it depends on the cuts.
        Err(e) => (Err(e.code), Vec::new(), None),
        Ok(()) => (Ok(()), items, open),
    }
}

#[test]
fn fuzz_mutated_streams() {
    let count = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let t0 = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: scaled(4_000),
        failure_persistence: None,
        ..Config::default()
    });
    let strat = (
        valid_stream(),
        prop::collection::vec(mutation(), 1..4),
        cuts_strategy(16),
        limits_strategy(),
        chunk_cap(),
    );
    runner
        .run(&strat, |((mut wire, _), muts, cuts, limits, chunk)| {
            count.fetch_add(1, Ordering::Relaxed);
            for m in &muts {
                apply(&mut wire, m);
            }
            let cut = drive(limits, chunk, &wire, &cut_points(&cuts, wire.len()));
            if let Err(e) = cut.result {
                errors.fetch_add(1, Ordering::Relaxed);
                prop_assert!([1002, 1007, 1009].contains(&e.code), "unexpected code {}", e.code);
            }
            // the same bytes in one piece, uncapped: same outcome
            let whole = drive(limits, 0, &wire, &[]);
            let (a, b) = (outcome(&cut), outcome(&whole));
            prop_assert_eq!(&a.0, &b.0, "result depends on chunking");
            if a.0.is_ok() {
                prop_assert_eq!(&a.1, &b.1);
                // an unfinished message may be cut differently, but its bytes so far agree
                // up to what each run saw
                if let (Some(x), Some(y)) = (&a.2, &b.2) {
                    prop_assert_eq!(x, y);
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "fuzz (c) mutations: {} inputs ({} errored) in {:.1?}",
        count.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        t0.elapsed()
    );
}

// ---- deterministic --------------------------------------------------------------------------

#[test]
fn every_one_and_two_byte_input() {
    let mut n = 0u64;
    for a in 0..=255u8 {
        let r = drive(Limits::default(), 0, &[a], &[]);
        assert!(r.result.is_err() || r.closed || r.tail <= 1);
        n += 1;
        for b in 0..=255u8 {
            let whole = drive(Limits::default(), 0, &[a, b], &[]);
            let split = drive(Limits::default(), 0, &[a, b], &[1]);
            assert_eq!(
                whole.result.map_err(|e| e.code),
                split.result.map_err(|e| e.code),
                "{a:#04x} {b:#04x}"
            );
            if let Err(e) = whole.result {
                assert!([1002, 1007, 1009].contains(&e.code));
            }
            n += 2;
        }
    }
    eprintln!("deterministic: {n} inputs (all 1-byte, all 2-byte whole and split)");
}

#[test]
fn every_single_byte_mutation_of_a_small_stream() {
    // A stream with every event type; each byte set to every value.
    let keys = [[0x11, 0x22, 0x33, 0x44]];
    let items = vec![
        Model::Msg {
            binary: false,
            data: "hé€😀".as_bytes().to_vec(),
            cuts: vec![],
            inner: vec![],
        },
        Model::Control(true, b"p".to_vec()),
        Model::Msg {
            binary: true,
            data: vec![1, 2, 3],
            cuts: vec![],
            inner: vec![],
        },
    ];
    let (wire, want) = encode_model(&items, &keys, &Some((1000, "bye".into())));
    let r = drive(Limits::default(), 0, &wire, &[]);
    assert_eq!(coalesce(&r.events).0, want);
    let mut n = 0u64;
    for i in 0..wire.len() {
        for v in 0..=255u8 {
            let mut w = wire.clone();
            w[i] = v;
            let r = drive(Limits::default(), 0, &w, &[]);
            if let Err(e) = r.result {
                assert!([1002, 1007, 1009].contains(&e.code), "byte {i} = {v}: {e}");
            }
            let byte_by_byte: Vec<usize> = (1..w.len()).collect();
            let r2 = drive(Limits::default(), 0, &w, &byte_by_byte);
            assert_eq!(
                r.result.map_err(|e| e.code),
                r2.result.map_err(|e| e.code),
                "byte {i} = {v}"
            );
            n += 2;
        }
    }
    eprintln!("deterministic: {n} single-byte mutations");
}

#[test]
fn unconsumed_tail_within_documented_130_bytes() {
    // ping, 125 bytes, all but the last byte: 6-byte header and 124 bytes kept
    let mut wire = vec![0x89, 0x80 | 125];
    wire.extend_from_slice(&[1, 2, 3, 4]);
    wire.extend_from_slice(&[0u8; 125]);
    let r = drive(Limits::default(), 0, &wire[..wire.len() - 1], &[]);
    assert!(r.result.is_ok(), "{:?}", r.result);
    assert!(r.tail <= 130, "{} bytes kept (documented: at most 130)", r.tail);
    // the same ping with its length in the 64-bit form (14-byte header) is refused as soon
    // as the length field is complete, so it is never kept either
    let mut wire = vec![0x89, 0x80 | 127];
    wire.extend_from_slice(&125u64.to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    wire.extend_from_slice(&[0u8; 125]);
    for end in [10, wire.len() - 1] {
        let r = drive(Limits::default(), 0, &wire[..end], &[]);
        assert_eq!(r.result.map_err(|e| e.code), Err(1002), "{end} bytes");
    }
}

#[test]
fn small_chunk_cap_splits_control_frames() {
    // ping "abcdefgh" with a 4-byte cap
    let mut wire = Vec::new();
    encoder::encode_frame(&mut wire, OpCode::Ping, true, Some([9, 8, 7, 6]), b"abcdefgh");
    encoder::encode_frame(&mut wire, OpCode::Text, true, Some([9, 8, 7, 6]), b"t");
    let r = drive(Limits::default(), 4, &wire, &[]);
    assert!(r.result.is_ok(), "{:?}", r.result);
    assert_eq!(
        r.events,
        [
            Out::Ping(b"abcdefgh".to_vec()),
            Out::Data {
                data: b"t".to_vec(),
                binary: false,
                first: true,
                last: true
            }
        ]
    );
    // close 1000 "bye": the reason must survive a 1-byte cap
    let mut wire = Vec::new();
    encoder::encode_close(&mut wire, Some(1000), "bye", Some([1, 2, 3, 4]));
    let r = drive(Limits::default(), 1, &wire, &[]);
    assert!(r.result.is_ok(), "{:?}", r.result);
    assert_eq!(r.events, [Out::Close(Some(1000), b"bye".to_vec())]);
}
