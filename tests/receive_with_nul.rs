//! `Protocol::RECEIVE_WITH_NUL`: whole messages in one piece handed with a 0 byte after
//! them, written over the next byte of the read buffer and put back (the next frame still
//! decodes), every other message as `Reason::Receive`.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use wsreactor::proto::OpCode;
use wsreactor::{Close, Protocol, Reason, WriteProtocol, Wsi};

/// How a message reached the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    /// Through `receive_with_nul`: the bytes given (payload and the 0), binary, and what
    /// the Wsi said (binary, final, remaining).
    WithNul(Vec<u8>, bool, (bool, bool, u64)),
    /// Through `callback(Reason::Receive)`: payload, first, last.
    Receive(Vec<u8>, bool, bool),
}

/// Echoes every message (whole, or piece by piece) and records how it came.
struct NulEcho(Arc<Mutex<Vec<Got>>>);

impl Protocol for NulEcho {
    type Session = ();
    const RECEIVE_WITH_NUL: bool = true;

    fn receive_with_nul(
        &mut self,
        wsi: &mut Wsi<'_>,
        _: &mut (),
        msg: &[u8],
        binary: bool,
    ) -> Result<(), Close> {
        let acc = (
            wsi.frame_is_binary(),
            wsi.is_final_fragment(),
            wsi.remaining_packet_payload(),
        );
        self.0
            .lock()
            .unwrap()
            .push(Got::WithNul(msg.to_vec(), binary, acc));
        let payload = &msg[..msg.len() - 1];
        let wp = if binary {
            WriteProtocol::Binary
        } else {
            WriteProtocol::Text
        };
        wsi.write(payload, wp)?;
        Ok(())
    }

    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        if let Reason::Receive {
            data,
            binary,
            first,
            last,
            ..
        } = reason
        {
            self.0
                .lock()
                .unwrap()
                .push(Got::Receive(data.to_vec(), first, last));
            let wp = match (first, binary) {
                (false, _) => WriteProtocol::Continuation,
                (true, false) => WriteProtocol::Text,
                (true, true) => WriteProtocol::Binary,
            };
            wsi.write_fragment(data, wp, last)?;
        }
        Ok(())
    }
}

/// The same flag without overriding `receive_with_nul`: the default hands everything on
/// as `Reason::Receive`.
struct PlainEcho(Arc<Mutex<Vec<Got>>>);

impl Protocol for PlainEcho {
    type Session = ();
    const RECEIVE_WITH_NUL: bool = true;

    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        if let Reason::Receive {
            data,
            binary,
            first,
            last,
            remaining,
        } = reason
        {
            assert_eq!(
                (wsi.is_final_fragment(), wsi.remaining_packet_payload()),
                (last, remaining)
            );
            self.0
                .lock()
                .unwrap()
                .push(Got::Receive(data.to_vec(), first, last));
            if first && last {
                wsi.write(
                    data,
                    if binary {
                        WriteProtocol::Binary
                    } else {
                        WriteProtocol::Text
                    },
                )?;
            }
        }
        Ok(())
    }
}

/// One burst, written at once: several whole messages (so most have bytes after them in
/// the read), an empty one, a binary one, a fragmented one; then the echoes in order.
fn burst(c: &mut Client) -> Vec<(OpCode, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for i in 0..8 {
        let m = format!("message {i}").into_bytes();
        bytes.extend(c.frame(OpCode::Text, true, &m));
        want.push((OpCode::Text, m));
    }
    bytes.extend(c.frame(OpCode::Text, true, b""));
    want.push((OpCode::Text, Vec::new()));
    bytes.extend(c.frame(OpCode::Binary, true, &[0, 1, 2, 0xff]));
    want.push((OpCode::Binary, vec![0, 1, 2, 0xff]));
    bytes.extend(c.frame(OpCode::Text, false, b"frag"));
    bytes.extend(c.frame(OpCode::Continuation, true, b"mented"));
    want.push((OpCode::Text, b"fragmented".to_vec()));
    bytes.extend(c.frame(OpCode::Text, true, b"last"));
    want.push((OpCode::Text, b"last".to_vec()));
    c.send(&bytes);
    want
}

/// Reads echoed messages (joining fragments) until `n` have come.
fn read_messages(c: &mut Client, n: usize) -> Vec<(OpCode, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cur: Option<(OpCode, Vec<u8>)> = None;
    while out.len() < n {
        let f = c.read_frame();
        match cur.as_mut() {
            Some((_, data)) => data.extend_from_slice(&f.payload),
            None => cur = Some((f.opcode, f.payload.clone())),
        }
        if f.fin {
            out.extend(cur.take());
        }
    }
    out
}

#[test]
fn whole_messages_come_with_a_nul_and_the_next_frame_still_decodes() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let s = Server::start(&Log::new(), move |b| b.protocol("nul", NulEcho(g)));
    let mut c = Client::open(s.port);
    let want = burst(&mut c);
    // Every echo intact and in order: the byte lent to each NUL was given back before the
    // frame it belongs to was decoded.
    assert_eq!(read_messages(&mut c, want.len()), want);
    let got = got.lock().unwrap().clone();
    let with_nul: Vec<&Got> = got.iter().filter(|g| matches!(g, Got::WithNul(..))).collect();
    assert!(
        with_nul.len() >= 2,
        "a burst written at once is read at once: most of its messages have a byte after them: {got:?}"
    );
    for g in &got {
        match g {
            Got::WithNul(msg, binary, acc) => {
                let (payload, nul) = msg.split_at(msg.len() - 1);
                assert_eq!(nul, [0], "{got:?}");
                assert!(
                    want.iter()
                        .any(|(op, w)| w == payload && (*op == OpCode::Binary) == *binary),
                    "{payload:?} was sent as such"
                );
                assert_eq!(*acc, (*binary, true, 0));
            }
            // The fragmented message, and whatever ended a read, come the usual way.
            Got::Receive(..) => {}
        }
    }
    assert!(
        got.contains(&Got::Receive(b"frag".to_vec(), true, false)),
        "{got:?}"
    );
    assert!(
        got.contains(&Got::Receive(b"mented".to_vec(), false, true)),
        "{got:?}"
    );
    assert!(
        got.contains(&Got::WithNul(b"\0".to_vec(), false, (false, true, 0)))
            || got.contains(&Got::Receive(Vec::new(), true, true)),
        "the empty message came one way or the other: {got:?}"
    );
    // The burst's last message ends the read: nothing behind it to lend, so the usual way.
    assert_eq!(got.last(), Some(&Got::Receive(b"last".to_vec(), true, true)));
    s.stop();
}

#[test]
fn the_default_receive_with_nul_hands_the_payload_on_as_receive() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let s = Server::start(&Log::new(), move |b| b.protocol("plain", PlainEcho(g)));
    let mut c = Client::open(s.port);
    for i in 0..6 {
        c.send_text(&format!("m{i}"));
    }
    let mut bytes = Vec::new();
    for i in 0..6 {
        bytes.extend(c.frame(OpCode::Text, true, format!("burst {i}").as_bytes()));
    }
    c.send(&bytes);
    let echoed = read_messages(&mut c, 12);
    let texts: Vec<String> = echoed
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect();
    let expect: Vec<String> = (0..6)
        .map(|i| format!("m{i}"))
        .chain((0..6).map(|i| format!("burst {i}")))
        .collect();
    assert_eq!(texts, expect);
    let got = got.lock().unwrap().clone();
    let want: Vec<Got> = expect
        .iter()
        .map(|t| Got::Receive(t.clone().into_bytes(), true, true))
        .collect();
    assert_eq!(got, want, "payloads without the NUL, as whole Receive messages");
    s.stop();
}
