//! Sans-IO frame and message decoding.
//!
//! Two layers, both fed with byte slices and never doing I/O:
//!
//! * [`FrameDecoder`] yields frame-level events: [`FrameEvent::Start`] with the header,
//!   [`FrameEvent::Payload`] chunks (unmasked in place, handed out without copying) and
//!   [`FrameEvent::End`], like wslay's `on_frame_recv_start/chunk/end` callbacks.
//! * [`Receiver`] adds RFC 6455's rules on top (fragmentation, control frames, UTF-8 of
//!   text, close payloads, size limits) and yields message-level [`Event`]s: data chunks
//!   with first/last flags, pings, pongs and the close frame.
//!
//! Neither keeps a copy of the input. When the input ends inside a frame header, or inside
//! a control frame (whose payload is delivered whole), `decode` consumes nothing more and
//! returns `None`; the caller keeps the unconsumed tail (at most 130 bytes: a control frame's
//! 6-byte masked header and 124 of its at most 125 payload bytes; lengths must be minimally
//! encoded, so a control frame has no extended length field) and presents it
//! again, followed by new bytes. This keeps buffering, and its memory, in the caller's hands.
//!
//! ```
//! use wsreactor::proto::{Receiver, Role, Event};
//! // A masked "Hi" text frame, as a client sends it.
//! let mut wire = vec![0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2];
//! let mut rx = Receiver::new(Role::Server, Default::default());
//! let (used, ev) = rx.decode(&mut wire).unwrap();
//! match ev {
//!     Some(Event::Data { data, last, binary, .. }) => {
//!         assert_eq!((data, last, binary), (&b"Hi"[..], true, false));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(used, 8);
//! ```

use super::close::{code, parse_close_payload};
use super::frame::{FrameHeader, HeaderError, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use std::fmt;

/// Which end of the connection decodes: servers require masked frames, clients unmasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decoding frames sent by a client (they must be masked).
    Server,
    /// Decoding frames sent by a server (they must not be masked).
    Client,
}

/// Size limits enforced while decoding. A violation fails with close code 1009.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted frame payload, in bytes. Default 16 MiB.
    pub max_frame_size: u64,
    /// Largest accepted message (sum of its frames), in bytes. Default 64 MiB.
    pub max_message_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
        }
    }
}

/// A protocol violation: the connection must be failed with `code` (RFC 6455 §7.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code to send: 1002, 1007 or 1009 from the decoder; an extension's may be
    /// any (1011 for its own trouble).
    pub code: u16,
    /// A short human-readable reason, suitable for the close frame.
    pub reason: &'static str,
}

impl ProtocolError {
    /// An error with this close code and reason.
    pub const fn new(code: u16, reason: &'static str) -> Self {
        ProtocolError { code, reason }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for ProtocolError {}

impl From<HeaderError> for ProtocolError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::ReservedOpcode(_) => ProtocolError::new(code::PROTOCOL_ERROR, "reserved opcode"),
            HeaderError::LengthOverflow => ProtocolError::new(code::PROTOCOL_ERROR, "invalid payload length"),
            HeaderError::NonMinimalLength => {
                ProtocolError::new(code::PROTOCOL_ERROR, "non-minimal payload length")
            }
        }
    }
}

/// A frame-level event from [`FrameDecoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// A frame begins.
    Start(FrameHeader),
    /// The next piece of the current frame's payload, already unmasked.
    Payload(&'a mut [u8]),
    /// The current frame is complete.
    End,
}

/// Frame-level decoder: header parsing, masking rules and in-place unmasking.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    remaining: u64,
    max_frame_size: u64,
    max_chunk: u32,
    mask: [u8; 4],
    /// Payload bytes of the current frame unmasked so far, modulo 4 (the key phase).
    phase: u8,
    masked: bool,
    in_frame: bool,
    end_pending: bool,
    role: Role,
    allowed_rsv: u8,
    /// The current frame is a control frame: never split by `max_chunk`.
    control: bool,
}

impl FrameDecoder {
    /// A decoder for the given role, with a frame size limit.
    pub fn new(role: Role, max_frame_size: u64) -> Self {
        FrameDecoder {
            remaining: 0,
            max_frame_size,
            max_chunk: 0,
            mask: [0; 4],
            phase: 0,
            masked: false,
            in_frame: false,
            end_pending: false,
            role,
            allowed_rsv: 0,
            control: false,
        }
    }

    /// Lets RSV bits through (an extension negotiated them); by default any set RSV bit is
    /// a protocol error. `bits` uses the layout of [`FrameHeader::rsv`].
    pub fn set_allowed_rsv(&mut self, bits: u8) {
        self.allowed_rsv = bits & 7;
    }

    /// Caps the size of each [`FrameEvent::Payload`] chunk (0: no cap). libwebsockets'
    /// `rx_buffer_size` has this effect on `RECEIVE`.
    pub fn set_max_chunk(&mut self, max: usize) {
        self.max_chunk = max.min(u32::MAX as usize) as u32;
    }

    /// Payload bytes of the current frame not yet delivered.
    #[inline]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The chunk cap set by [`set_max_chunk`](Self::set_max_chunk) (0: none).
    pub fn max_chunk(&self) -> usize {
        self.max_chunk as usize
    }

    /// True between a frame's `Start` and its `End`.
    #[inline]
    pub fn in_frame(&self) -> bool {
        self.in_frame
    }

    /// Decodes the next event from `buf`.
    ///
    /// Returns the number of bytes consumed and the event, or `(0, None)` when `buf` ends
    /// before the next event: the caller must present `buf[consumed..]` again with more
    /// bytes appended. With `whole_control`, a control frame's `Start` is only reported once
    /// its whole payload is in `buf`, so that the payload arrives as one chunk.
    #[inline]
    pub fn decode<'a>(
        &mut self,
        buf: &'a mut [u8],
        whole_control: bool,
    ) -> Result<(usize, Option<FrameEvent<'a>>), ProtocolError> {
        let (n, raw) = self.step(buf, whole_control, false)?;
        Ok((
            n,
            raw.map(|r| match r {
                Raw::Start(h) => FrameEvent::Start(h),
                Raw::Payload => FrameEvent::Payload(&mut buf[..n]),
                Raw::End => FrameEvent::End,
                Raw::Whole(..) => unreachable!("only with allow_whole"),
            }),
        ))
    }

    /// `decode` without the borrow: a payload chunk is `buf[..consumed]`, unmasked. With
    /// `allow_whole`, a frame whose header and whole payload are in `buf` (and that
    /// `max_chunk` does not split) comes out as one [`Raw::Whole`] instead of Start,
    /// Payload, End: one step per small message instead of three.
    #[inline]
    fn step(
        &mut self,
        buf: &mut [u8],
        whole_control: bool,
        allow_whole: bool,
    ) -> Result<(usize, Option<Raw>), ProtocolError> {
        if self.end_pending {
            self.end_pending = false;
            self.in_frame = false;
            return Ok((0, Some(Raw::End)));
        }
        if !self.in_frame {
            let Some((h, hlen)) = FrameHeader::parse(buf)? else {
                return Ok((0, None));
            };
            if h.rsv & !self.allowed_rsv != 0 {
                return Err(ProtocolError::new(
                    code::PROTOCOL_ERROR,
                    "reserved bits set without an extension",
                ));
            }
            match (self.role, h.mask.is_some()) {
                (Role::Server, false) => {
                    return Err(ProtocolError::new(
                        code::PROTOCOL_ERROR,
                        "client frame not masked",
                    ))
                }
                (Role::Client, true) => {
                    return Err(ProtocolError::new(code::PROTOCOL_ERROR, "server frame masked"))
                }
                _ => {}
            }
            if h.opcode.is_control() {
                if h.payload_len > 125 {
                    return Err(ProtocolError::new(
                        code::PROTOCOL_ERROR,
                        "control frame longer than 125 bytes",
                    ));
                }
                if !h.fin {
                    return Err(ProtocolError::new(
                        code::PROTOCOL_ERROR,
                        "fragmented control frame",
                    ));
                }
                if whole_control && ((buf.len() - hlen) as u64) < h.payload_len {
                    return Ok((0, None));
                }
            } else if h.payload_len > self.max_frame_size {
                return Err(ProtocolError::new(code::MESSAGE_TOO_BIG, "frame too big"));
            }
            let avail = (buf.len() - hlen) as u64;
            if allow_whole
                && h.payload_len <= avail
                && (self.max_chunk == 0 || h.opcode.is_control() || h.payload_len <= self.max_chunk as u64)
            {
                // The state stays "between frames", as after the frame's End.
                let len = h.payload_len as usize;
                if let Some(k) = h.mask {
                    apply_mask(&mut buf[hlen..hlen + len], k, 0);
                }
                return Ok((hlen + len, Some(Raw::Whole(h, hlen))));
            }
            self.in_frame = true;
            self.remaining = h.payload_len;
            self.phase = 0;
            self.masked = h.mask.is_some();
            self.mask = h.mask.unwrap_or([0; 4]);
            self.end_pending = h.payload_len == 0;
            self.control = h.opcode.is_control();
            return Ok((hlen, Some(Raw::Start(h))));
        }
        if buf.is_empty() {
            return Ok((0, None));
        }
        let mut n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if self.max_chunk != 0 && !self.control {
            n = n.min(self.max_chunk as usize);
        }
        if self.masked {
            apply_mask(&mut buf[..n], self.mask, self.phase as usize);
            self.phase = ((self.phase as usize + n) & 3) as u8;
        }
        self.remaining -= n as u64;
        self.end_pending = self.remaining == 0;
        Ok((n, Some(Raw::Payload)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Raw {
    Start(FrameHeader),
    Payload,
    End,
    /// A whole frame: header of this many bytes, then the unmasked payload.
    Whole(FrameHeader, usize),
}

/// A message-level event from [`Receiver::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A chunk of a text or binary message (text already validated as UTF-8 so far).
    Data {
        /// The payload bytes, unmasked in the caller's buffer.
        data: &'a [u8],
        /// The message is binary (else text).
        binary: bool,
        /// This is the first chunk of the message.
        first: bool,
        /// This is the last chunk of the message.
        last: bool,
        /// This chunk ends its frame.
        frame_last: bool,
        /// Bytes of the current frame still to come (libwebsockets'
        /// `remaining_packet_payload`).
        remaining: u64,
        /// The RSV bits of the message's first frame (0 without extensions): with any set,
        /// `data` is an extension's encoding (permessage-deflate's for RSV1), not validated
        /// as UTF-8; see [`super::extension`].
        rsv: u8,
    },
    /// A ping with its payload; the receiver of a ping must answer with a pong.
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// A valid close frame. The caller should answer with a close frame (if it has not
    /// sent one) and then close the connection; nothing after it is decoded.
    Close {
        /// The status code, or `None` if the frame had no payload.
        code: Option<u16>,
        /// The UTF-8 reason.
        reason: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    None,
    Text,
    Binary,
}

/// Message-level decoder enforcing RFC 6455 on received frames.
///
/// Control frames may arrive between the fragments of a message; text is validated as it
/// arrives and the first invalid byte fails the connection with 1007; size limits fail it
/// with 1009 as soon as a header announces too much.
#[derive(Debug, Clone)]
pub struct Receiver {
    frames: FrameDecoder,
    max_message_size: u64,
    msg_len: u64,
    utf8: Utf8Validator,
    message: Message,
    /// The current frame is a control frame of this opcode.
    control: Option<OpCode>,
    frame_fin: bool,
    first_chunk: bool,
    closed: bool,
    /// The RSV bits of the current message's first frame.
    rsv: u8,
}

impl Receiver {
    /// A receiver for the given role and limits.
    pub fn new(role: Role, limits: Limits) -> Self {
        Receiver {
            frames: FrameDecoder::new(role, limits.max_frame_size),
            max_message_size: limits.max_message_size,
            msg_len: 0,
            utf8: Utf8Validator::new(),
            message: Message::None,
            control: None,
            frame_fin: false,
            first_chunk: false,
            closed: false,
            rsv: 0,
        }
    }

    /// The frame layer, e.g. to allow RSV bits or cap chunk sizes.
    pub fn frames_mut(&mut self) -> &mut FrameDecoder {
        &mut self.frames
    }

    /// Bytes of the current frame still to come.
    #[inline]
    pub fn remaining(&self) -> u64 {
        self.frames.remaining()
    }

    /// Accepts RSV1 as permessage-deflate's "compressed" bit (after negotiating it): data
    /// events of such messages come with `rsv` 4, for
    /// [`DeflateStream`](super::deflate::DeflateStream) to inflate.
    pub fn enable_deflate(&mut self) {
        self.allow_rsv(super::extension::RSV1);
    }

    /// Accepts these RSV bits ([`FrameHeader::rsv`](super::FrameHeader::rsv)'s layout) on a
    /// message's first frame, for negotiated per-message extensions: data events of such
    /// messages carry them in `rsv`. On a continuation or a control frame they stay a
    /// protocol error (1002), as do bits not allowed.
    pub fn allow_rsv(&mut self, bits: u8) {
        self.frames.set_allowed_rsv(bits);
    }

    /// True after a close frame was decoded.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True inside a fragmented message.
    pub fn in_message(&self) -> bool {
        self.message != Message::None
    }

    /// Decodes the next event from `buf`; see the module docs for the contract on
    /// unconsumed input. After an error or a `Close` event the receiver must not be fed
    /// again.
    pub fn decode<'a>(&mut self, buf: &'a mut [u8]) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let mut pos = 0;
        loop {
            if self.closed {
                return Ok((pos, None));
            }
            // `step` borrows `buf` only for the call, so the loop can go on; the event's
            // slice is cut from `buf` once, on the way out.
            let (n, raw) = self.frames.step(&mut buf[pos..], true, true)?;
            match raw {
                None => return Ok((pos, None)),
                Some(Raw::Whole(h, hlen)) => {
                    let payload = pos + hlen..pos + n;
                    pos += n;
                    if let Some(ev) = self.start(h)? {
                        // Zero-length frame: its event comes from Start.
                        return Ok((pos, Some(ev)));
                    }
                    let ev = self.payload(&buf[payload])?;
                    return Ok((pos, Some(ev)));
                }
                Some(Raw::Start(h)) => {
                    pos += n;
                    if let Some(ev) = self.start(h)? {
                        // Only zero-length frames produce an event at Start.
                        return Ok((pos, Some(ev)));
                    }
                }
                Some(Raw::End) => {
                    // Data and control events were produced with their last chunk (or at
                    // Start for empty frames); nothing is left to report here.
                }
                Some(Raw::Payload) => {
                    let ev = self.payload(&buf[pos..pos + n])?;
                    return Ok((pos + n, Some(ev)));
                }
            }
        }
    }

    fn start(&mut self, h: FrameHeader) -> Result<Option<Event<'static>>, ProtocolError> {
        if h.opcode.is_control() {
            if h.rsv != 0 {
                return Err(ProtocolError::new(
                    code::PROTOCOL_ERROR,
                    "RSV bits on a control frame",
                ));
            }
            self.control = Some(h.opcode);
            if h.payload_len == 0 {
                return self.control_event(h.opcode, &[]).map(Some);
            }
            return Ok(None);
        }
        self.control = None;
        match (h.opcode, self.message) {
            (OpCode::Continuation, Message::None) => {
                return Err(ProtocolError::new(
                    code::PROTOCOL_ERROR,
                    "continuation frame outside a message",
                ))
            }
            (OpCode::Text | OpCode::Binary, Message::Text | Message::Binary) => {
                return Err(ProtocolError::new(
                    code::PROTOCOL_ERROR,
                    "new message inside a fragmented message",
                ))
            }
            (OpCode::Text, _) => self.begin_message(Message::Text),
            (OpCode::Binary, _) => self.begin_message(Message::Binary),
            _ => {}
        }
        // RSV bits pass the frame decoder only for negotiated extensions, per-message ones
        // (RFC 7692 §6.1): they mark a message's first frame, never a continuation or a
        // control frame.
        if h.opcode != OpCode::Continuation {
            self.rsv = h.rsv;
        } else if h.rsv != 0 {
            return Err(ProtocolError::new(
                code::PROTOCOL_ERROR,
                "RSV bits on a continuation frame",
            ));
        }
        self.msg_len = self.msg_len.saturating_add(h.payload_len);
        if self.msg_len > self.max_message_size {
            return Err(ProtocolError::new(code::MESSAGE_TOO_BIG, "message too big"));
        }
        self.frame_fin = h.fin;
        if h.payload_len == 0 {
            return self.data_event(&[]).map(Some);
        }
        Ok(None)
    }

    fn begin_message(&mut self, m: Message) {
        self.message = m;
        self.msg_len = 0;
        self.utf8.reset();
        self.first_chunk = true;
    }

    fn payload<'a>(&mut self, chunk: &'a [u8]) -> Result<Event<'a>, ProtocolError> {
        match self.control {
            // `whole_control` guarantees the control payload is one chunk.
            Some(op) => self.control_event(op, chunk),
            None => self.data_event(chunk),
        }
    }

    fn data_event<'a>(&mut self, data: &'a [u8]) -> Result<Event<'a>, ProtocolError> {
        let remaining = self.frames.remaining();
        let last = self.frame_fin && remaining == 0;
        let binary = self.message == Message::Binary;
        if !binary && self.rsv == 0 {
            self.utf8
                .feed(data)
                .map_err(|_| ProtocolError::new(code::INVALID_PAYLOAD, "invalid UTF-8 in text"))?;
            if last && !self.utf8.is_complete() {
                return Err(ProtocolError::new(
                    code::INVALID_PAYLOAD,
                    "text ends inside a UTF-8 sequence",
                ));
            }
        }
        let first = std::mem::replace(&mut self.first_chunk, false);
        if last {
            self.message = Message::None;
        }
        Ok(Event::Data {
            data,
            binary,
            first,
            last,
            frame_last: remaining == 0,
            remaining,
            rsv: self.rsv,
        })
    }

    fn control_event<'a>(&mut self, op: OpCode, payload: &'a [u8]) -> Result<Event<'a>, ProtocolError> {
        self.control = None;
        Ok(match op {
            OpCode::Ping => Event::Ping(payload),
            OpCode::Pong => Event::Pong(payload),
            _ => {
                let (code, reason) = parse_close_payload(payload).map_err(|e| {
                    ProtocolError::new(
                        e.close_code(),
                        match e {
                            super::close::CloseError::InvalidReason => "close reason not UTF-8",
                            _ => "invalid close payload",
                        },
                    )
                })?;
                self.closed = true;
                Event::Close { code, reason }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::encoder::encode_frame;

    fn frame(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(&mut v, op, fin, Some([0x11, 0x22, 0x33, 0x44]), payload);
        v
    }

    /// Feeds `wire` in pieces of `step` bytes, the way a reactor would: unconsumed bytes
    /// are kept and presented again. Returns the events as owned values.
    type Seen = Vec<(String, Vec<u8>, bool, bool)>;

    fn run(wire: &[u8], step: usize) -> Result<Seen, ProtocolError> {
        let mut rx = Receiver::new(Role::Server, Limits::default());
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in wire.chunks(step.max(1)) {
            pending.extend_from_slice(piece);
            let mut pos = 0;
            loop {
                let (n, ev) = rx.decode(&mut pending[pos..])?;
                pos += n;
                match ev {
                    None => break,
                    Some(Event::Data {
                        data,
                        binary,
                        first,
                        last,
                        ..
                    }) => out.push((
                        if binary { "bin" } else { "text" }.to_string(),
                        data.to_vec(),
                        first,
                        last,
                    )),
                    Some(Event::Ping(p)) => out.push(("ping".into(), p.to_vec(), true, true)),
                    Some(Event::Pong(p)) => out.push(("pong".into(), p.to_vec(), true, true)),
                    Some(Event::Close { code, reason }) => {
                        out.push((format!("close {code:?}"), reason.to_vec(), true, true))
                    }
                }
            }
            pending.drain(..pos);
        }
        Ok(out)
    }

    fn joined(events: &Seen, kind: &str) -> Vec<u8> {
        events
            .iter()
            .filter(|e| e.0 == kind)
            .flat_map(|e| e.1.clone())
            .collect()
    }

    #[test]
    fn fragmented_text_with_interleaved_ping_any_split() {
        let mut wire = frame(OpCode::Text, false, "Hello, κό".as_bytes());
        wire.extend(frame(OpCode::Ping, true, b"p1"));
        wire.extend(frame(OpCode::Continuation, false, "σμε".as_bytes()));
        wire.extend(frame(OpCode::Continuation, true, b"!"));
        wire.extend(frame(OpCode::Close, true, b"\x03\xe8bye"));
        for step in 1..wire.len() + 1 {
            let ev = run(&wire, step).unwrap();
            assert_eq!(joined(&ev, "text"), "Hello, κόσμε!".as_bytes(), "step {step}");
            assert_eq!(joined(&ev, "ping"), b"p1");
            let firsts = ev.iter().filter(|e| e.0 == "text" && e.2).count();
            let lasts = ev.iter().filter(|e| e.0 == "text" && e.3).count();
            assert_eq!((firsts, lasts), (1, 1), "step {step}");
            assert_eq!(ev.last().unwrap().0, "close Some(1000)");
        }
    }

    #[test]
    fn protocol_errors() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            // unmasked client frame
            (
                {
                    let mut v = Vec::new();
                    encode_frame(&mut v, OpCode::Text, true, None, b"x");
                    v
                },
                1002,
            ),
            (frame(OpCode::Continuation, true, b"x"), 1002),
            (
                [frame(OpCode::Text, false, b"a"), frame(OpCode::Text, true, b"b")].concat(),
                1002,
            ),
            (frame(OpCode::Ping, false, b""), 1002),
            (frame(OpCode::Ping, true, &[0u8; 126]), 1002),
            (frame(OpCode::Text, true, b"\xce\xba\xff"), 1007),
            (frame(OpCode::Text, true, b"\xe2\x82"), 1007),
            (frame(OpCode::Close, true, b"\x03"), 1002),
            (frame(OpCode::Close, true, b"\x03\xed"), 1002),
            (frame(OpCode::Close, true, b"\x03\xe8\xc0"), 1007),
            (vec![0x83, 0x80, 0, 0, 0, 0], 1002), // reserved opcode
            (vec![0xc1, 0x80, 0, 0, 0, 0], 1002), // RSV1
            // non-minimal lengths (RFC 6455 §5.2): 5 bytes in the 64-bit form, 100 and 125
            // in the 16-bit form, 65535 in the 64-bit form, a ping in the 16-bit form
            (
                [&[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4][..], &[0; 5]].concat(),
                1002,
            ),
            ([&[0x82, 0xfe, 0, 100, 1, 2, 3, 4][..], &[0; 100]].concat(), 1002),
            (
                [&[0x81, 0xfe, 0, 125, 1, 2, 3, 4][..], &[b'a'; 125]].concat(),
                1002,
            ),
            (
                [
                    &[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4][..],
                    &[0; 65535],
                ]
                .concat(),
                1002,
            ),
            ([&[0x89, 0xfe, 0, 1, 1, 2, 3, 4][..], &[0; 1]].concat(), 1002),
        ];
        for (wire, want) in cases {
            let err = run(&wire, wire.len()).unwrap_err();
            assert_eq!(err.code, want, "{wire:x?}: {err}");
        }
    }

    #[test]
    fn minimal_lengths_at_the_boundaries_are_accepted() {
        for len in [125usize, 126, 65535, 65536] {
            let wire = frame(OpCode::Binary, true, &vec![0x5a; len]);
            for step in [1, 7, wire.len()] {
                let ev = run(&wire, step).unwrap();
                assert_eq!(joined(&ev, "bin"), vec![0x5a; len], "len {len} step {step}");
            }
        }
    }

    #[test]
    fn non_minimal_length_fails_before_the_payload_arrives() {
        // Only the header (5 bytes announced in the 64-bit form): the error comes at once,
        // not after the payload.
        let mut rx = Receiver::new(Role::Server, Limits::default());
        let mut w = [0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 5];
        let err = rx.decode(&mut w).unwrap_err();
        assert_eq!((err.code, err.reason), (1002, "non-minimal payload length"));
    }

    #[test]
    fn fails_fast_inside_a_frame() {
        // The bad byte arrives in the first piece; the rest of the frame never comes.
        let wire = frame(
            OpCode::Text,
            true,
            &[b"abc\xff".as_slice(), &[b'x'; 100]].concat(),
        );
        let mut rx = Receiver::new(Role::Server, Limits::default());
        let mut first = wire[..10].to_vec();
        let err = loop {
            match rx.decode(&mut first) {
                Err(e) => break e,
                Ok((_, None)) => panic!("no error before the frame completed"),
                Ok((n, Some(_))) => {
                    first.drain(..n);
                }
            }
        };
        assert_eq!(err.code, 1007);
    }

    #[test]
    fn limits_apply_at_the_header() {
        let limits = Limits {
            max_frame_size: 10,
            max_message_size: 15,
        };
        let mut rx = Receiver::new(Role::Server, limits);
        let mut w = frame(OpCode::Binary, true, &[0; 11]);
        assert_eq!(rx.decode(&mut w[..8]).unwrap_err().code, 1009);
        let mut rx = Receiver::new(Role::Server, limits);
        let mut w = [
            frame(OpCode::Binary, false, &[0; 10]),
            frame(OpCode::Continuation, true, &[0; 6]),
        ]
        .concat();
        let mut pos = 0;
        let err = loop {
            match rx.decode(&mut w[pos..]) {
                Ok((n, Some(_))) => pos += n,
                Ok((_, None)) => panic!("accepted"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.code, 1009);
    }

    #[test]
    fn empty_messages_and_chunk_cap() {
        let wire = [
            frame(OpCode::Text, true, b""),
            frame(OpCode::Binary, true, &[7; 10]),
        ]
        .concat();
        let mut rx = Receiver::new(Role::Server, Limits::default());
        rx.frames_mut().set_max_chunk(4);
        let mut buf = wire.clone();
        let mut pos = 0;
        let mut seen = Vec::new();
        while let (n, Some(ev)) = rx.decode(&mut buf[pos..]).unwrap() {
            pos += n;
            if let Event::Data {
                data,
                first,
                last,
                remaining,
                ..
            } = ev
            {
                seen.push((data.len(), first, last, remaining));
            }
        }
        assert_eq!(
            seen,
            vec![
                (0, true, true, 0),
                (4, true, false, 6),
                (4, false, false, 2),
                (2, false, true, 0)
            ]
        );
    }
}
