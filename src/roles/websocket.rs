//! The WebSocket role: the server side of the opening handshake (validation, sub-protocol
//! choice, `FILTER_PROTOCOL_CONNECTION`, 101, `ESTABLISHED`), then an open connection:
//! frames decoded by the sans-IO [`Receiver`](crate::proto::Receiver) become `RECEIVE` and
//! `RECEIVE_PONG` callbacks, pings are answered, the close handshake is run, and protocol
//! errors fail the connection with their close code.

use super::Stop;
use crate::connection::{flag, Conn, State};
use crate::context::Context;
use crate::dispatch::{deliver_closed, ErasedProtocol};
use crate::extensions::{ConnExt, Extensions};
use crate::proto::close::code;
use crate::proto::extension::RxChunk;
use crate::proto::{encoder, handshake, Event, OpCode, ProtocolError};
use crate::reason::Reason;
use crate::shared::{Shared, INFLATE_PIECE};
use crate::wsi::Wsi;

impl Context {
    /// Answers an upgrade request: validation, sub-protocol choice, filter, 101,
    /// ESTABLISHED. Returns false if the connection was refused.
    pub(crate) fn upgrade(&mut self, k: usize) -> bool {
        let c = &mut self.conns[k];
        let request = c.request().expect("request is held during upgrade");
        // Token headers may be split over several lines: look across all of them.
        let lookup = |n: &str| match n {
            "upgrade" if request.has_token(n, "websocket") => Some(&b"websocket"[..]),
            "connection" if request.has_token(n, "upgrade") => Some(&b"upgrade"[..]),
            _ => request.header_bytes(n),
        };
        if let Err(e) = handshake::validate_request(request.method_str(), request.version_minor(), lookup) {
            log::debug!("{}: upgrade refused: {e}", c.peer());
            let extra: &[(&str, &str)] = if e.status() == 426 {
                &[("Sec-WebSocket-Version", "13")]
            } else if e.status() == 405 {
                &[("Allow", "GET")]
            } else {
                &[]
            };
            self.shared.stats.refused += 1;
            self.respond_and_close(k, e.status(), Some(e.reason()), extra);
            return false;
        }
        // Sub-protocol: the first registered protocol the client offers; none offered:
        // the first protocol; offered but unknown: refuse.
        let mut chosen: Option<(usize, Option<String>)> = None;
        let offers: Vec<&str> = request
            .header_values("sec-websocket-protocol")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect();
        let offer = offers.join(",");
        match (!offers.is_empty()).then_some(offer.as_str()) {
            None => chosen = Some((0, None)),
            Some(offer) => {
                for (i, p) in self.protocols.iter().enumerate() {
                    if handshake::offered_protocols(offer).any(|o| o == p.name) {
                        chosen = Some((i, Some(p.name.clone())));
                        break;
                    }
                }
                if chosen.is_none() && self.cfg.any_protocol {
                    chosen = Some((0, handshake::offered_protocols(offer).next().map(str::to_owned)));
                }
            }
        }
        let Some((pid, selected)) = chosen else {
            log::debug!("{}: no offered sub-protocol is known", c.peer());
            self.shared.stats.refused += 1;
            self.respond_and_close(k, 400, Some("No known sub-protocol"), &[]);
            return false;
        };
        if pid != c.proto as usize {
            self.protocols[c.proto as usize].handler.drop_session(c.session);
            c.proto = pid as u16;
            c.session = self.protocols[pid].handler.new_session();
        }
        if let Err(e) = self.call(k, Reason::FilterProtocolConnection) {
            log::debug!("refused by FILTER_PROTOCOL_CONNECTION: {} {}", e.code, e.reason);
            self.refuse(k, &e);
            return false;
        }
        let ext = self.negotiate_extensions(k);
        let Some(c) = self.conns.get_mut(k) else {
            if let Some((ce, _)) = ext {
                self.shared.ext.destroy(&ce);
            }
            return false;
        };
        c.out_buf(&mut self.shared.bufs);
        let Conn { http, out, .. } = c;
        let request = http.as_ref().and_then(|h| h.request.as_ref()).expect("held");
        let key = request
            .header_bytes("sec-websocket-key")
            .unwrap_or_default()
            .trim_ascii();
        let ext_header;
        let extra: &[(&str, &str)] = match &ext {
            Some((_, response)) => {
                ext_header = [("Sec-WebSocket-Extensions", response.as_str())];
                &ext_header
            }
            None => &[],
        };
        handshake::write_response(
            out,
            key,
            selected.as_deref(),
            extra,
            Some(self.shared.date.date()),
        );
        if let Some((ce, _)) = ext {
            c.rx.allow_rsv(ce.rsv());
            c.ext = Some(ce);
        }
        c.state = State::WebSocket;
        c.set(flag::UPGRADED);
        self.shared.timers.rest(c, k);
        self.shared.stats.handshakes += 1;
        c.clear(flag::KEEP_ALIVE | flag::HTTP_RESPONDED);
        let rx_chunk = self.shared.rx_chunk(self.protocols[pid].rx_buffer_size);
        c.rx.frames_mut().set_max_chunk(rx_chunk);
        log::debug!("{}: established on {}", c.peer(), self.protocols[pid].name);
        self.call_and_close(k, Reason::Established);
        // The request's headers are not needed any more: free them.
        if let Some(c) = self.conns.get_mut(k) {
            c.http = None;
        }
        true
    }

    /// The extensions of an upgrade: each registered one the client offered, with the first
    /// of its offers it accepts (`CONSTRUCT`), that the protocol confirms
    /// (`CONFIRM_EXTENSION_OKAY`). Returns them and the response header's value.
    fn negotiate_extensions(&mut self, k: usize) -> Option<(Box<ConnExt>, String)> {
        if self.shared.ext.is_empty() {
            return None;
        }
        let request = self.conns[k].request()?;
        let offers: Vec<&str> = request
            .header_values("sec-websocket-extensions")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect();
        if offers.is_empty() {
            return None;
        }
        let got = self.shared.ext.server_negotiate(&offers.join(","));
        let mut on = Vec::with_capacity(got.len());
        let mut response = String::new();
        for (x, element) in got {
            let name = self
                .shared
                .ext
                .get(x.ext)
                .map(|e| e.name().to_owned())
                .unwrap_or_default();
            let ok =
                self.conns.contains(k) && self.call(k, Reason::ConfirmExtensionOkay { name: &name }).is_ok();
            if !ok {
                log::debug!("extension {name} refused by CONFIRM_EXTENSION_OKAY");
                if let Some(e) = self.shared.ext.get(x.ext) {
                    e.destroy(x.session);
                }
                continue;
            }
            if !response.is_empty() {
                response.push_str(", ");
            }
            response.push_str(&element);
            on.push(x);
        }
        Extensions::conn_ext(on).map(|ce| (ce, response))
    }

    pub(crate) fn ws_input(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        // Two instances, so that a protocol without RECEIVE_WITH_NUL pays nothing per
        // message for the feature.
        let c = &self.conns[k];
        if self.protocols[c.proto as usize].receive_with_nul && !c.has(flag::CLIENT) {
            self.ws_input_as::<true>(k, buf)
        } else {
            self.ws_input_as::<false>(k, buf)
        }
    }

    /// [`ws_input`](Self::ws_input); `WITH_NUL`: whole messages in one piece go to
    /// `Protocol::receive_with_nul` when a byte of the read follows them.
    fn ws_input_as<const WITH_NUL: bool>(&mut self, k: usize, buf: &mut [u8]) -> (usize, Stop) {
        let Context {
            conns,
            protocols,
            shared,
            cfg,
            ..
        } = self;
        let c = &mut conns[k];
        let handler = &mut protocols[c.proto as usize].handler;
        let session = c.session;
        let client = c.has(flag::CLIENT);
        // Where `buf` is, to check a payload's place in it (Protocol::receive_with_nul).
        let (base, buf_len) = (buf.as_ptr() as usize, buf.len());
        let max_message = cfg.limits.max_message_size;
        // Nothing flushes while input is decoded, so `out_pos` stands still and the out
        // buffer's bound (half of max_unsent, see Shared::out_full) is a length to compare.
        let out_limit = shared.max_unsent / 2 + c.out_pos as usize;
        let mut pos = 0;
        loop {
            if c.has(flag::RX_PAUSED | flag::TOPIC_PAUSED) {
                return (pos, Stop::Paused);
            }
            if c.out.len() > out_limit {
                c.set(flag::OUT_FULL);
                return (pos, Stop::Paused);
            }
            let (n, ev) = match c.rx.decode(&mut buf[pos..]) {
                Ok(x) => x,
                Err(e) => {
                    log::debug!("{}: protocol error: {e}", c.peer());
                    fail(c, shared, e.code, e.reason);
                    deliver_closed(&mut **handler, c, shared, k, None, b"");
                    return (buf.len(), Stop::Done);
                }
            };
            pos += n;
            let Some(ev) = ev else {
                return (pos, Stop::NeedMore);
            };
            match ev {
                Event::Data {
                    data,
                    binary,
                    first,
                    last,
                    remaining,
                    rsv,
                    ..
                } => {
                    if c.has(flag::CLOSE_SENT) {
                        continue;
                    }
                    if last {
                        shared.stats.messages_in += 1;
                    }
                    if rsv != 0 {
                        let piece = protocols_chunk(c.rx.frames_mut().max_chunk());
                        let msg = Msg {
                            binary,
                            first,
                            last,
                            remaining,
                        };
                        if let Err(e) = deliver_transformed(
                            c,
                            shared,
                            &mut **handler,
                            (k, session),
                            (data, rsv),
                            msg,
                            piece,
                            max_message,
                        ) {
                            log::debug!("{}: protocol error: {e}", c.peer());
                            fail(c, shared, e.code, e.reason);
                            deliver_closed(&mut **handler, c, shared, k, None, b"");
                            return (buf.len(), Stop::Done);
                        }
                        continue;
                    }
                    if WITH_NUL && first && last && pos < buf_len {
                        // A whole message in one piece, followed by a byte of this read:
                        // that byte (not decoded yet) lends its place to the NUL. The
                        // decoder hands a payload in place, ending where the input it
                        // consumed ends. (An empty payload is a static slice, anywhere.)
                        let start = pos - data.len();
                        debug_assert!(
                            data.is_empty() || data.as_ptr() as usize == base + start,
                            "payload in place"
                        );
                        deliver_with_nul(
                            c,
                            shared,
                            &mut **handler,
                            (k, session),
                            &mut buf[start..=pos],
                            binary,
                        );
                        continue;
                    }
                    let msg = Msg {
                        binary,
                        first,
                        last,
                        remaining,
                    };
                    deliver_piece(c, shared, &mut **handler, (k, session), client, data, msg);
                }
                Event::Ping(p) => {
                    if !c.has(flag::CLOSE_SENT) {
                        let mask = shared.mask_for(c);
                        encoder::encode_frame(c.out_buf(&mut shared.bufs), OpCode::Pong, true, mask, p);
                    }
                }
                Event::Pong(data) => {
                    let reason = if client {
                        Reason::ClientReceivePong { data }
                    } else {
                        Reason::ReceivePong { data }
                    };
                    let mut wsi = Wsi::new(c, shared, k as u32);
                    if let Err(e) = handler.call(&mut wsi, session, reason) {
                        wsi.callback_failed(&e);
                    }
                }
                Event::Close {
                    code: peer_code,
                    reason,
                } => {
                    c.set(flag::CLOSE_RECEIVED | flag::SHUTDOWN_AFTER_FLUSH);
                    if !c.has(flag::CLOSE_SENT) {
                        shared.stats.closed_by_peer += 1;
                        // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an
                        // empty one.
                        let mask = shared.mask_for(c);
                        encoder::encode_close(c.out_buf(&mut shared.bufs), peer_code, "", mask);
                        c.set(flag::CLOSE_SENT);
                    }
                    deliver_closed(&mut **handler, c, shared, k, peer_code, reason);
                    return (buf.len(), Stop::Done);
                }
            }
        }
    }
}

/// Fails a WebSocket: close frame with `code`, then close the TCP connection once it is
/// flushed (RFC 6455 §7.1.7). The decoder cannot be trusted past the error, so no reply
/// is awaited.
fn fail(c: &mut Conn, shared: &mut Shared, code: u16, reason: &str) {
    if !c.has(flag::CLOSE_SENT) {
        shared.stats.closed_protocol_error += 1;
        let mask = shared.mask_for(c);
        encoder::encode_close(c.out_buf(&mut shared.bufs), Some(code), reason, mask);
        c.set(flag::CLOSE_SENT);
    }
    c.set(flag::SHUTDOWN_AFTER_FLUSH);
}

/// A compressed data event's message flags.
struct Msg {
    binary: bool,
    first: bool,
    last: bool,
    remaining: u64,
}

/// The size of inflated pieces: the protocol's rx buffer size, at most 64 KiB.
/// One RECEIVE (or CLIENT_RECEIVE) piece to the protocol, plain or inflated alike; a
/// callback error is handled as every callback's is (back-pressure waits, others close).
fn deliver_piece(
    c: &mut Conn,
    shared: &mut Shared,
    handler: &mut dyn ErasedProtocol,
    (k, session): (usize, u32),
    client: bool,
    data: &[u8],
    m: Msg,
) {
    let mut wsi = Wsi::new(c, shared, k as u32);
    wsi.rx_binary = m.binary;
    wsi.rx_final = m.last;
    wsi.rx_remaining = m.remaining;
    let (binary, first, last, remaining) = (m.binary, m.first, m.last, m.remaining);
    let reason = if client {
        Reason::ClientReceive {
            data,
            binary,
            first,
            last,
            remaining,
        }
    } else {
        Reason::Receive {
            data,
            binary,
            first,
            last,
            remaining,
        }
    };
    if let Err(e) = handler.call(&mut wsi, session, reason) {
        wsi.callback_failed(&e);
    }
}

/// A whole message to [`Protocol::receive_with_nul`](crate::Protocol::receive_with_nul):
/// `msg` is its payload and the byte after it, which holds 0 during the call and gets its
/// own value back after.
#[inline]
fn deliver_with_nul(
    c: &mut Conn,
    shared: &mut Shared,
    handler: &mut dyn ErasedProtocol,
    (k, session): (usize, u32),
    msg: &mut [u8],
    binary: bool,
) {
    let Some((nul, _)) = msg.split_last_mut() else {
        return;
    };
    let next = std::mem::replace(nul, 0);
    let mut wsi = Wsi::new(c, shared, k as u32);
    // (rx_remaining stays 0, as Wsi::new left it.)
    wsi.rx_binary = binary;
    wsi.rx_final = true;
    if let Err(e) = handler.call_with_nul(&mut wsi, session, msg) {
        wsi.callback_failed(&e);
    }
    if let Some(nul) = msg.last_mut() {
        *nul = next;
    }
}

fn protocols_chunk(max_chunk: usize) -> usize {
    if max_chunk == 0 {
        INFLATE_PIECE
    } else {
        max_chunk.min(INFLATE_PIECE)
    }
}

/// Hands one chunk of a received message with RSV bits to the extension that claims them
/// (`PACKET_RX_PREPARSE`) and delivers what it makes as `RECEIVE` pieces as they come
/// (each at most `piece` bytes): `first` on the message's first piece, `last` on its last,
/// `remaining` the frame's bytes not transformed yet. Each piece is checked against `limit`
/// (1009: an inflation bomb fails after one piece) and, for text, as UTF-8 (1007).
#[allow(clippy::too_many_arguments)]
fn deliver_transformed(
    c: &mut Conn,
    shared: &mut Shared,
    handler: &mut dyn ErasedProtocol,
    (k, session): (usize, u32),
    (data, rsv): (&[u8], u8),
    msg: Msg,
    piece: usize,
    limit: u64,
) -> Result<(), ProtocolError> {
    let client = c.has(flag::CLIENT);
    let no_ext = || ProtocolError::new(code::PROTOCOL_ERROR, "RSV bits without an extension");
    let ce = c.ext.as_mut().ok_or_else(no_ext)?;
    let x = ce
        .on
        .iter()
        .copied()
        .find(|x| x.rsv & rsv != 0)
        .ok_or_else(no_ext)?;
    if rsv & !x.rsv != 0 {
        return Err(ProtocolError::new(
            code::PROTOCOL_ERROR,
            "RSV bits of two extensions on one message",
        ));
    }
    if msg.first {
        ce.rx_started = false;
        ce.rx_total = 0;
        ce.utf8.reset();
    }
    let mut scratch = std::mem::take(&mut shared.ext.rx);
    if scratch.len() < piece {
        scratch.resize(piece, 0);
    }
    let r = transform_pieces(
        c,
        shared,
        handler,
        (k, session, client),
        (data, x),
        msg,
        &mut scratch[..piece],
        limit,
    );
    shared.ext.rx = scratch;
    r
}

#[allow(clippy::too_many_arguments)]
fn transform_pieces(
    c: &mut Conn,
    shared: &mut Shared,
    handler: &mut dyn ErasedProtocol,
    (k, session, client): (usize, u32, bool),
    (data, x): (&[u8], crate::extensions::ExtRef),
    msg: Msg,
    out: &mut [u8],
    limit: u64,
) -> Result<(), ProtocolError> {
    let stuck = || ProtocolError::new(code::INTERNAL_ERROR, "extension made no progress");
    let mut input = data;
    let mut first_call = msg.first;
    loop {
        let ext = shared
            .ext
            .get(x.ext)
            .ok_or_else(|| ProtocolError::new(code::INTERNAL_ERROR, "extension gone"))?;
        let chunk = RxChunk {
            data: input,
            binary: msg.binary,
            first: first_call,
            last: msg.last,
            remaining: msg.remaining,
            limit,
        };
        first_call = false;
        let p = ext.rx(x.session, chunk, out)?;
        if p.consumed > input.len() || p.produced > out.len() {
            return Err(ProtocolError::new(
                code::INTERNAL_ERROR,
                "extension overran its buffers",
            ));
        }
        input = &input[p.consumed..];
        if p.done && !input.is_empty() {
            return Err(ProtocolError::new(
                code::INTERNAL_ERROR,
                "extension left input unread",
            ));
        }
        let end = msg.last && p.done;
        if p.produced > 0 || end {
            let produced = &out[..p.produced];
            let Some(ce) = c.ext.as_mut() else {
                return Ok(());
            };
            ce.rx_total += produced.len() as u64;
            if ce.rx_total > limit {
                return Err(ProtocolError::new(code::MESSAGE_TOO_BIG, "message too big"));
            }
            if !msg.binary {
                ce.utf8
                    .feed(produced)
                    .map_err(|_| ProtocolError::new(code::INVALID_PAYLOAD, "invalid UTF-8 in text"))?;
                if end && !ce.utf8.is_complete() {
                    return Err(ProtocolError::new(
                        code::INVALID_PAYLOAD,
                        "text ends inside a UTF-8 sequence",
                    ));
                }
            }
            let first = !std::mem::replace(&mut ce.rx_started, true);
            let remaining = if end {
                0
            } else {
                msg.remaining + input.len() as u64
            };
            let m = Msg {
                binary: msg.binary,
                first,
                last: end,
                remaining,
            };
            deliver_piece(c, shared, handler, (k, session), client, produced, m);
            if c.has(flag::CLOSE_SENT) {
                return Ok(());
            }
        } else if !p.done && p.consumed == 0 {
            return Err(stuck());
        }
        if p.done {
            return Ok(());
        }
    }
}
