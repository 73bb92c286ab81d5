//! WebSocket extensions (RFC 6455 §9), sans-IO: the [`Extension`] trait, libwebsockets'
//! `struct libwebsocket_extension` in Rust, and the `Sec-WebSocket-Extensions` header
//! grammar.
//!
//! An extension is registered on a context
//! ([`ContextBuilder::extension`](crate::ContextBuilder::extension), in offer order, like
//! lws' `extensions` array). Its methods are lws' extension callback reasons:
//!
//! | libwebsockets reason | [`Extension`] method |
//! | --- | --- |
//! | `LWS_EXT_CALLBACK_CONSTRUCT` (server) | [`server_negotiate`](Extension::server_negotiate): the offers of its name → the response element and a new session, or decline |
//! | `LWS_EXT_CALLBACK_CLIENT_CONSTRUCT` | [`client_offer`](Extension::client_offer), then [`client_accept`](Extension::client_accept): the server's response element → a new session, or fail the handshake |
//! | `LWS_EXT_CALLBACK_DESTROY` | [`destroy`](Extension::destroy): the connection is gone (default: the session is dropped) |
//! | `LWS_EXT_CALLBACK_PACKET_RX_PREPARSE` | [`rx`](Extension::rx): a chunk of a received message whose first frame carries the extension's RSV bits, turned into message bytes a piece at a time ([`RxProgress`]) |
//! | `LWS_EXT_CALLBACK_PACKET_TX_PRESEND` | [`tx`](Extension::tx): a frame's payload to send, transformed (its message then carries the RSV bits) or left alone |
//! | `LWS_CALLBACK_CONFIRM_EXTENSION_OKAY` | the protocol's [`Reason::ConfirmExtensionOkay`](crate::Reason::ConfirmExtensionOkay): it may refuse a negotiated extension for its connection |
//! | `LWS_CALLBACK_CLIENT_CONFIRM_EXTENSION_SUPPORTED` | the protocol's [`Reason::ClientConfirmExtensionSupported`](crate::Reason::ClientConfirmExtensionSupported): it may leave an extension out of its offer |
//!
//! The extension object itself is the context's state for it (lws' per-context
//! `LWS_EXT_CALLBACK_SERVER_CONTEXT_CONSTRUCT` data: permessage-deflate keeps its pool of
//! shared compressors there); [`Extension::Session`] is the per-connection state (lws'
//! `per_session_data_size`), kept by the context in a slab: a connection without extensions
//! carries none of it, and pays one pointer test per message.
//!
//! The mechanism is for per-message extensions, the kind RFC 7692 defines (and the only kind
//! in use): the RSV bits an extension claims ([`Extension::rsv`]) mark a message's first
//! frame; on a continuation or a control frame they fail the connection with 1002, as do bits
//! no negotiated extension claims. One extension transforms a given message: on receipt the
//! one whose bits are set (bits of two at once → 1002), on sending the first negotiated one
//! (in registration order) whose [`tx`](Extension::tx) takes it. Two extensions claiming the
//! same bit are not negotiated together: a server declines the later one; a client offering
//! both fails a response that accepts both.
//!
//! Received messages are transformed a piece at a time, into the reactor's buffer (the
//! protocol's rx buffer size, at most 64 KiB), each piece delivered as one `RECEIVE` before
//! the next is asked for: a message is never gathered whole, and while a piece's `RECEIVE`
//! runs the extension is free again (the callback may send, through the same extension).
//! The reactor bounds the transformed message by the message size limit (1009, piece by
//! piece, so an extension that expands its input, like an inflater, cannot be made to
//! allocate a message's worth of memory), validates text as UTF-8 after the transform
//! (1007), and fails with 1011 an extension that neither consumes nor produces.
//!
//! permessage-deflate is one such extension:
//! [`PermessageDeflate`](super::deflate::PermessageDeflate), registered by
//! [`ContextBuilder::permessage_deflate`](crate::ContextBuilder::permessage_deflate).
//!
//! A toy extension that XORs message payloads with a key negotiated as a parameter:
//!
//! ```
//! use wsreactor::proto::extension::{parse_extensions, Element, Extension, RxChunk, RxProgress, TxFrame, RSV2};
//! use wsreactor::proto::ProtocolError;
//!
//! struct Xor;
//!
//! impl Extension for Xor {
//!     type Session = u8; // the key
//!     fn name(&self) -> &str { "x-xor" }
//!     fn rsv(&self) -> u8 { RSV2 }
//!     fn server_negotiate(&mut self, offers: &[Element<'_>]) -> Option<(u8, String)> {
//!         // The first offer with a valid key wins; others are declined.
//!         offers.iter().find_map(|o| {
//!             let key: u8 = o.param("key")??.parse().ok()?;
//!             Some((key, format!("x-xor; key={key}")))
//!         })
//!     }
//!     fn client_offer(&mut self) -> String { "x-xor; key=42".into() }
//!     fn client_accept(&mut self, response: &Element<'_>) -> Result<u8, String> {
//!         response.param("key").flatten().and_then(|k| k.parse().ok()).ok_or("no key".into())
//!     }
//!     fn rx(&mut self, key: &mut u8, chunk: RxChunk<'_>, out: &mut [u8]) -> Result<RxProgress, ProtocolError> {
//!         let n = chunk.data.len().min(out.len());
//!         for (o, b) in out.iter_mut().zip(&chunk.data[..n]) {
//!             *o = b ^ *key;
//!         }
//!         Ok(RxProgress { consumed: n, produced: n, done: n == chunk.data.len() })
//!     }
//!     fn tx(&mut self, key: &mut u8, frame: TxFrame<'_>, out: &mut Vec<u8>) -> Result<bool, ProtocolError> {
//!         out.extend(frame.data.iter().map(|b| b ^ *key));
//!         Ok(true)
//!     }
//! }
//!
//! // Negotiation, as the reactor does it for an upgrade request:
//! let offers = parse_extensions("x-xor; key=300, x-xor; key=7");
//! let (mut key, response) = Xor.server_negotiate(&offers).unwrap();
//! assert_eq!(response, "x-xor; key=7"); // 300 is not a u8: that offer was declined
//! // The transforms, without any socket:
//! let mut wire = Vec::new();
//! let frame = TxFrame { data: b"hi", first: true, fin: true, binary: false };
//! assert!(Xor.tx(&mut key, frame, &mut wire).unwrap());
//! let mut piece = [0u8; 64];
//! let chunk = RxChunk { data: &wire, binary: false, first: true, last: true, remaining: 0, limit: 1 << 20 };
//! let p = Xor.rx(&mut key, chunk, &mut piece).unwrap();
//! assert!(p.done);
//! assert_eq!(&piece[..p.produced], b"hi");
//! ```

use super::decoder::ProtocolError;

/// RSV1 in [`FrameHeader::rsv`](super::FrameHeader::rsv)'s layout (permessage-deflate's bit).
pub const RSV1: u8 = 4;
/// RSV2.
pub const RSV2: u8 = 2;
/// RSV3.
pub const RSV3: u8 = 1;

/// One element of a `Sec-WebSocket-Extensions` header: the extension's name and its
/// parameters, values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element<'a> {
    /// The extension token.
    pub name: &'a str,
    /// `(name, value)` pairs in order.
    pub params: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> Element<'a> {
    /// The parameter `name` (case-insensitive): `None` if absent, `Some(None)` if present
    /// without a value, `Some(Some(value))` with one. The first of repeated ones.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }
}

/// Splits a `Sec-WebSocket-Extensions` value (all its header lines joined by commas) into
/// elements (RFC 6455 §9.1). Empty elements are skipped; a value may be a quoted string.
///
/// ```
/// use wsreactor::proto::extension::parse_extensions;
/// let els = parse_extensions("permessage-deflate; client_max_window_bits, x-foo; a=\"1,2\"");
/// assert_eq!(els[0].param("client_max_window_bits"), Some(None));
/// assert_eq!((els[1].name, els[1].param("a")), ("x-foo", Some(Some("1,2"))));
/// ```
pub fn parse_extensions(header: &str) -> Vec<Element<'_>> {
    split_outside_quotes(header, ',')
        .filter_map(|el| {
            let mut parts = split_outside_quotes(el, ';').map(str::trim);
            let name = parts.next().filter(|n| !n.is_empty())?;
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    None => (p, None),
                    Some((n, v)) => {
                        let v = v.trim();
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
                        (n.trim(), Some(v))
                    }
                })
                .collect();
            Some(Element { name, params })
        })
        .collect()
}

fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        let mut quoted = false;
        for (i, ch) in r.char_indices() {
            match ch {
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&r[i + 1..]);
                    return Some(&r[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(r)
    })
}

/// A chunk of a received message for [`Extension::rx`]: frame payload bytes as they came
/// off the wire (unmasked), never a control frame's; on a repeated call for the same chunk,
/// the part not consumed yet.
#[derive(Debug, Clone, Copy)]
pub struct RxChunk<'a> {
    /// The payload bytes.
    pub data: &'a [u8],
    /// The message is binary (else text: the reactor validates the output as UTF-8).
    pub binary: bool,
    /// The message's first call (its first chunk, first time): start a new message here.
    pub first: bool,
    /// The chunk ends the message: the extension must flush its output before it says
    /// `done`.
    pub last: bool,
    /// Payload bytes of the current frame still to come after this chunk.
    pub remaining: u64,
    /// The message size limit ([`Limits::max_message_size`](super::Limits)), which the
    /// reactor checks on what the extension produces; an extension that expands its input
    /// may check it earlier.
    pub limit: u64,
}

/// What one [`Extension::rx`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxProgress {
    /// Input bytes consumed (from the start of [`RxChunk::data`]).
    pub consumed: usize,
    /// Message bytes written to the start of `out`.
    pub produced: usize,
    /// All of the input is consumed and no output is pending; with [`RxChunk::last`], the
    /// message is complete.
    pub done: bool,
}

/// One frame to send, for [`Extension::tx`].
#[derive(Debug, Clone, Copy)]
pub struct TxFrame<'a> {
    /// The payload as the application wrote it.
    pub data: &'a [u8],
    /// The message's first frame (the extension decides here whether it transforms the
    /// message; its later frames come to it only if it did).
    pub first: bool,
    /// The message's last frame.
    pub fin: bool,
    /// The message is binary (else text).
    pub binary: bool,
}

/// A WebSocket extension (libwebsockets' `struct libwebsocket_extension`): negotiation on
/// both sides, per-connection state, and the transforms of received and sent messages. See
/// the [module documentation](self) for the reasons each method stands for, the rules of
/// RSV bits, and an example.
///
/// Methods run inside the reactor's loop: a panic closes only the connection they were
/// called for (1011), as a protocol callback's does.
pub trait Extension: 'static {
    /// Per-connection state, made by a successful negotiation and given back to
    /// [`destroy`](Self::destroy) when the connection is gone.
    type Session: 'static;

    /// The extension token in `Sec-WebSocket-Extensions` (matched case-insensitively).
    fn name(&self) -> &str;

    /// The RSV bits it uses to mark a message it transformed ([`RSV1`], [`RSV2`], [`RSV3`],
    /// or several): the decoder lets them through once it is negotiated. 0 for an
    /// extension that never transforms.
    fn rsv(&self) -> u8;

    /// `CONSTRUCT` on a server: the client's offers of this extension, in its order of
    /// preference. Returns the session and the response element (its name and the accepted
    /// parameters, e.g. `"x-foo; a=1"`), or `None` to decline (an offer it cannot accept is
    /// declined, never fatal).
    fn server_negotiate(&mut self, offers: &[Element<'_>]) -> Option<(Self::Session, String)>;

    /// The offer element of an outgoing connection (`"x-foo; a=1"`), asked once the
    /// protocol has not refused it (`CLIENT_CONFIRM_EXTENSION_SUPPORTED`).
    fn client_offer(&mut self) -> String;

    /// `CLIENT_CONSTRUCT`: the server accepted our offer with this response element.
    /// Returns the session, or why the response is unacceptable (the handshake fails:
    /// `CLIENT_CONNECTION_ERROR` with this reason, RFC 6455 §9.1).
    fn client_accept(&mut self, response: &Element<'_>) -> Result<Self::Session, String>;

    /// `DESTROY`: the connection it was negotiated on is gone. The default drops it.
    fn destroy(&mut self, session: Self::Session) {
        drop(session);
    }

    /// `PACKET_RX_PREPARSE`: transforms the next piece of a received message whose first
    /// frame carries our RSV bits, from `chunk.data` into `out` (up to its length). The
    /// reactor delivers what was produced, then calls again with the unconsumed rest of the
    /// chunk (possibly empty) until [`RxProgress::done`]. An error fails the connection
    /// with its close code (1002 for bad framing, 1007 for bad data, 1009 for too much,
    /// 1011 for our own trouble).
    fn rx(
        &mut self,
        session: &mut Self::Session,
        chunk: RxChunk<'_>,
        out: &mut [u8],
    ) -> Result<RxProgress, ProtocolError>;

    /// `PACKET_TX_PRESEND`: a frame the application sends. On a message's first frame,
    /// return `Ok(true)` with the transformed payload appended to `out` (the frame gets our
    /// RSV bits), or `Ok(false)` to leave the message alone (it goes out as written, and
    /// the next extension may take it); the later frames of a message we took come here
    /// too and must be transformed (`out`, whatever is returned). An error fails the
    /// connection with its close code (typically 1011) and the write with
    /// [`WriteError::Closed`](crate::WriteError::Closed).
    fn tx(
        &mut self,
        session: &mut Self::Session,
        frame: TxFrame<'_>,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProtocolError>;

    /// At most how many bytes [`tx`](Self::tx) makes of `len` payload bytes: a write is
    /// refused for back-pressure before the transform if that would overrun the send
    /// queue bound (a transform cannot be taken back). Default: `len + 64`.
    fn tx_bound(&self, len: usize) -> usize {
        len + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_and_params() {
        let els = parse_extensions(" , a ; x=1 ; y ; z=\"q;r\" ,, b;X=2");
        assert_eq!(els.len(), 2);
        assert_eq!(els[0].name, "a");
        assert_eq!(els[0].param("x"), Some(Some("1")));
        assert_eq!(els[0].param("y"), Some(None));
        assert_eq!(els[0].param("z"), Some(Some("q;r")));
        assert_eq!(els[0].param("w"), None);
        assert_eq!(els[1].param("x"), Some(Some("2")));
    }
}
