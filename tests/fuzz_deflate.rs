//! Property tests of permessage-deflate through the sans-IO core: messages compressed in
//! random fragmentations with random negotiated parameters, framed and masked, fed to a
//! [`Receiver`] in random read sizes, inflated in random piece sizes, come back whole, with
//! one `first` and one `last` per message; and control frames between fragments stay
//! uncompressed.

use proptest::prelude::*;
use wsreactor::proto::deflate::{DeflateOptions, DeflatePool, DeflateStream, Negotiated};
use wsreactor::proto::{encoder, Event, Limits, OpCode, Receiver, Role};

fn negotiated() -> impl Strategy<Value = Negotiated> {
    (8u8..=15, any::<bool>(), any::<bool>()).prop_map(|(bits, tnct, rnct)| Negotiated {
        tx_window_bits: bits,
        tx_no_context_takeover: tnct,
        // The receiver's view of the same connection: the window is the sender's; it may
        // keep its context even when the sender resets, never the other way round.
        rx_window_bits: bits,
        rx_no_context_takeover: rnct && tnct,
    })
}

fn message() -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        // compressible text
        proptest::collection::vec(prop::sample::select(b"ab {}\":,0123".to_vec()), 0..20_000)
            .prop_map(|v| (false, v)),
        // incompressible binary
        proptest::collection::vec(any::<u8>(), 0..5_000).prop_map(|v| (true, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_through_the_receiver(
        neg in negotiated(),
        level in 0u8..=9,
        msgs in proptest::collection::vec(message(), 1..5),
        frag in 1usize..6000,
        read in 1usize..9000,
        piece in 1usize..5000,
        ping_between in any::<bool>(),
    ) {
        let opts = DeflateOptions { level, ..DeflateOptions::default() };
        let mut pool = DeflatePool::new(opts);
        let mut tx = DeflateStream::new(neg);
        let mut wire = Vec::new();
        for (binary, m) in &msgs {
            let chunks: Vec<&[u8]> = if m.is_empty() { vec![&[][..]] } else { m.chunks(frag).collect() };
            for (i, c) in chunks.iter().enumerate() {
                let fin = i + 1 == chunks.len();
                let mut z = Vec::new();
                tx.compress(&mut pool, c, i == 0, fin, &mut z);
                let op = match (i, binary) {
                    (0, false) => OpCode::Text,
                    (0, true) => OpCode::Binary,
                    _ => OpCode::Continuation,
                };
                encoder::encode_frame_rsv(&mut wire, op, fin, if i == 0 { 4 } else { 0 }, Some([9, 8, 7, 6]), &z);
                if ping_between && !fin {
                    encoder::encode_frame(&mut wire, OpCode::Ping, true, Some([1, 2, 3, 4]), b"p");
                }
            }
        }
        let mut rx = Receiver::new(Role::Server, Limits::default());
        rx.enable_deflate();
        let mut inflater = DeflateStream::new(neg);
        let mut out = vec![0u8; piece];
        let mut got: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut pending = Vec::new();
        let mut firsts = 0;
        for chunk in wire.chunks(read) {
            pending.extend_from_slice(chunk);
            let mut pos = 0;
            loop {
                let (n, ev) = rx.decode(&mut pending[pos..]).expect("valid stream");
                pos += n;
                match ev {
                    None => break,
                    Some(Event::Data { data, binary, first, last, rsv, .. }) => {
                        prop_assert_eq!(rsv, 4);
                        if first {
                            firsts += 1;
                            inflater.begin_message(binary);
                            got.push((binary, Vec::new()));
                        }
                        let mut inp = data;
                        loop {
                            let p = inflater.inflate(&mut pool, inp, last, &mut out, u64::MAX).expect("inflates");
                            got.last_mut().unwrap().1.extend_from_slice(&out[..p.produced]);
                            inp = &inp[p.consumed..];
                            if p.done {
                                break;
                            }
                        }
                    }
                    Some(Event::Ping(p)) => prop_assert_eq!(p, b"p"),
                    Some(other) => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            pending.drain(..pos);
        }
        prop_assert_eq!(firsts, msgs.len());
        prop_assert_eq!(got, msgs);
        if neg.tx_no_context_takeover && neg.rx_no_context_takeover {
            prop_assert!(!tx.holds_memory() && !inflater.holds_memory());
        }
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        limit in 0u64..100_000,
    ) {
        let mut pool = DeflatePool::new(DeflateOptions::default());
        let mut s = DeflateStream::new(Negotiated::default());
        s.begin_message(true);
        let mut out = vec![0u8; 1024];
        let mut inp = &data[..];
        let mut total = 0u64;
        for _ in 0..10_000 {
            match s.inflate(&mut pool, inp, true, &mut out, limit) {
                Ok(p) => {
                    total += p.produced as u64;
                    inp = &inp[p.consumed..];
                    if p.done {
                        break;
                    }
                }
                Err(e) => {
                    prop_assert!(e.code == 1007 || e.code == 1009, "{}", e);
                    break;
                }
            }
        }
        prop_assert!(total <= limit + 1024);
    }
}
