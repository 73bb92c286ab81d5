//! permessage-deflate (RFC 7692), sans-IO: negotiation of its parameters and the
//! per-message codec.
//!
//! * Negotiation: [`server_negotiate`] picks the first acceptable offer of a
//!   `Sec-WebSocket-Extensions` request header and gives the response element;
//!   [`client_offer`] and [`client_accept`] are the client's half. Bad or unsupported offers
//!   are declined (skipped), never fatal; a bad response fails the client's handshake.
//! * Codec: a [`DeflateStream`] per connection compresses outgoing messages
//!   ([`DeflateStream::compress`]: one sync flush per frame, the `00 00 ff ff` tail of the
//!   last one stripped) and inflates incoming ones ([`DeflateStream::inflate`]: the tail
//!   restored, output in pieces of the caller's size, the message size limit checked on the
//!   inflated bytes as they come, so a bomb is refused with 1009 after at most one piece).
//!   Text is validated as UTF-8 after inflation.
//! * Memory: a [`DeflatePool`] per context holds the compressors and decompressors of
//!   directions without context takeover, lent for one message at a time; a direction with
//!   context takeover keeps its own (window bits and memLevel from [`DeflateOptions`]). A
//!   `DeflateStream` allocates nothing until its first compressed message.
//!
//! zlib cannot deflate raw with an 8-bit window. When the peer limits our window to 8
//! (`server_max_window_bits=8` offered to a server, `client_max_window_bits=8` answered to
//! a client) the offer is accepted and our messages are coded Huffman-only: no
//! back-references at all, so they are valid for any window. Inflating always uses at least
//! 9 bits (a larger window reads any smaller one's output).
//!
//! A round trip through the codec:
//!
//! ```
//! use wsreactor::proto::deflate::{DeflateOptions, DeflatePool, DeflateStream, Negotiated};
//! let opts = DeflateOptions::default();
//! let mut pool = DeflatePool::new(opts);
//! let neg = Negotiated::default();
//! let (mut a, mut b) = (DeflateStream::new(neg), DeflateStream::new(neg));
//! let mut wire = Vec::new();
//! a.compress(&mut pool, b"hello hello hello hello", true, true, &mut wire);
//! assert!(wire.len() < 23);
//! let mut out = [0u8; 64];
//! b.begin_message(false);
//! let p = b.inflate(&mut pool, &wire, true, &mut out, 1 << 20).unwrap();
//! assert!(p.done);
//! assert_eq!(&out[..p.produced], b"hello hello hello hello");
//! ```

use super::close::code;
use super::decoder::ProtocolError;
use super::extension::{Extension, RxChunk, RxProgress, TxFrame, RSV1};
use super::utf8::Utf8Validator;
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status, Strategy};

/// The extension's registered name.
pub const NAME: &str = "permessage-deflate";

/// The four bytes a sync flush ends with, stripped from each message (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Our side's permessage-deflate settings (a context option). The memory modes of
/// uWebSockets map onto them: [`DeflateOptions::shared`] keeps no compressor or
/// decompressor per connection between messages (`SHARED_COMPRESSOR`),
/// [`DeflateOptions::dedicated`] keeps both with the given window and memLevel
/// (`DEDICATED_COMPRESSOR_nKB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateOptions {
    /// zlib compression level, 0–9. Default 6 (zlib's default, as Node `ws` and Python
    /// `websockets` use).
    pub level: u8,
    /// Our compressor's window, 9–15 bits (the peer may ask for less). Default 15.
    pub window_bits: u8,
    /// zlib memLevel of our compressor, 1–9 (its hash table is `2^(memLevel+9)` bytes
    /// and its pending buffer `2^(memLevel+8)` × 4). Default 8.
    pub mem_level: u8,
    /// We do not take our compression context over from one message to the next (and
    /// say so: `server_no_context_takeover` as a server, `client_no_context_takeover` as a
    /// client), so our compressor is shared by the context. Default false.
    pub no_context_takeover: bool,
    /// We ask the peer not to take its context over, so our decompressor is shared by the
    /// context. Default false.
    pub peer_no_context_takeover: bool,
    /// The largest window we let the peer compress with, 9–15 bits; what our dedicated
    /// decompressor allocates (`2^bits` bytes). Default 15.
    pub peer_window_bits: u8,
    /// Messages shorter than this (sent whole) go uncompressed. Default 0.
    pub threshold: usize,
}

impl Default for DeflateOptions {
    fn default() -> Self {
        DeflateOptions {
            level: 6,
            window_bits: 15,
            mem_level: 8,
            no_context_takeover: false,
            peer_no_context_takeover: false,
            peer_window_bits: 15,
            threshold: 0,
        }
    }
}

impl DeflateOptions {
    /// No context takeover either way: one compressor and one decompressor per context,
    /// lent to a connection for one message (uWebSockets' `SHARED_COMPRESSOR`).
    pub fn shared() -> Self {
        DeflateOptions {
            no_context_takeover: true,
            peer_no_context_takeover: true,
            ..Default::default()
        }
    }

    /// Context takeover both ways, each connection with its own compressor (`window_bits`,
    /// `mem_level`) and decompressor (the peer limited to `window_bits` too), kept between
    /// messages (uWebSockets' `DEDICATED_COMPRESSOR_nKB`). Values are clamped to 9–15 and
    /// 1–9.
    pub fn dedicated(window_bits: u8, mem_level: u8) -> Self {
        DeflateOptions {
            window_bits: window_bits.clamp(9, 15),
            mem_level: mem_level.clamp(1, 9),
            peer_window_bits: window_bits.clamp(9, 15),
            ..Default::default()
        }
    }

    fn clamped(mut self) -> Self {
        self.level = self.level.min(9);
        self.window_bits = self.window_bits.clamp(9, 15);
        self.mem_level = self.mem_level.clamp(1, 9);
        self.peer_window_bits = self.peer_window_bits.clamp(9, 15);
        self
    }
}

/// What negotiation settled for one connection, seen from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Our compressor's window, 8–15 bits (8: Huffman-only coding).
    pub tx_window_bits: u8,
    /// We reset our compressor after each message.
    pub tx_no_context_takeover: bool,
    /// The peer's window, 8–15 bits (inflated with at least 9).
    pub rx_window_bits: u8,
    /// The peer resets its compressor after each message.
    pub rx_no_context_takeover: bool,
}

impl Default for Negotiated {
    /// Plain `permessage-deflate`: 15-bit windows, context takeover both ways.
    fn default() -> Self {
        Negotiated {
            tx_window_bits: 15,
            tx_no_context_takeover: false,
            rx_window_bits: 15,
            rx_no_context_takeover: false,
        }
    }
}

/// One element of an extension header (see [`super::extension::Element`]).
pub type ExtensionElement<'a> = super::extension::Element<'a>;
pub use super::extension::parse_extensions;

/// The parameters of one permessage-deflate offer or response, checked (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn window_value(v: &str) -> Option<u8> {
    // "1*DIGIT" with a value 8..=15: no sign, no leading zero.
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0') {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

impl Params {
    fn parse(params: &[(&str, Option<&str>)]) -> Result<Params, &'static str> {
        let mut p = Params::default();
        let mut seen = [false; 4];
        for &(name, value) in params {
            let i = match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => {
                    if value.is_some() {
                        return Err("server_no_context_takeover with a value");
                    }
                    p.server_no_context_takeover = true;
                    0
                }
                "client_no_context_takeover" => {
                    if value.is_some() {
                        return Err("client_no_context_takeover with a value");
                    }
                    p.client_no_context_takeover = true;
                    1
                }
                "server_max_window_bits" => {
                    let v = value
                        .and_then(window_value)
                        .ok_or("server_max_window_bits without a value in 8..15")?;
                    p.server_max_window_bits = Some(v);
                    2
                }
                "client_max_window_bits" => {
                    let v = match value {
                        None => None,
                        Some(v) => Some(window_value(v).ok_or("client_max_window_bits not in 8..15")?),
                    };
                    p.client_max_window_bits = Some(v);
                    3
                }
                _ => return Err("unknown permessage-deflate parameter"),
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err("repeated permessage-deflate parameter");
            }
        }
        Ok(p)
    }
}

/// The server's choice: the first acceptable permessage-deflate offer in `header` (the
/// request's `Sec-WebSocket-Extensions`), as what we will use and the element to put in the
/// response. Offers with unknown, repeated or invalid parameters are declined; `None` if
/// none is acceptable.
///
/// ```
/// use wsreactor::proto::deflate::{server_negotiate, DeflateOptions};
/// let offer = "permessage-deflate; server_max_window_bits=10; client_max_window_bits, \
///              permessage-deflate";
/// let (neg, response) = server_negotiate(offer, &DeflateOptions::default()).unwrap();
/// assert_eq!(response, "permessage-deflate; server_max_window_bits=10");
/// assert_eq!((neg.tx_window_bits, neg.rx_window_bits), (10, 15));
/// ```
pub fn server_negotiate(header: &str, opts: &DeflateOptions) -> Option<(Negotiated, String)> {
    let els = parse_extensions(header);
    server_negotiate_offers(els.iter().filter(|el| el.name.eq_ignore_ascii_case(NAME)), opts)
}

/// [`server_negotiate`] on offers already parsed (each of them a permessage-deflate offer).
pub fn server_negotiate_offers<'e, 'a: 'e>(
    offers: impl IntoIterator<Item = &'e ExtensionElement<'a>>,
    opts: &DeflateOptions,
) -> Option<(Negotiated, String)> {
    let opts = opts.clamped();
    for el in offers {
        let p = match Params::parse(&el.params) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("permessage-deflate offer declined: {e}");
                continue;
            }
        };
        let tx_window_bits = opts.window_bits.min(p.server_max_window_bits.unwrap_or(15));
        let tx_no_context_takeover = p.server_no_context_takeover || opts.no_context_takeover;
        // A client that offers client_no_context_takeover will not take over anyway; saying
        // so in the response lets us share its decompressor.
        let rx_no_context_takeover = opts.peer_no_context_takeover || p.client_no_context_takeover;
        let mut rx_window_bits = 15;
        let mut response = String::from(NAME);
        if tx_no_context_takeover {
            response.push_str("; server_no_context_takeover");
        }
        if rx_no_context_takeover {
            response.push_str("; client_no_context_takeover");
        }
        if p.server_max_window_bits.is_some() {
            response.push_str(&format!("; server_max_window_bits={tx_window_bits}"));
        }
        if let Some(limit) = p.client_max_window_bits {
            let limit = limit.unwrap_or(15);
            rx_window_bits = limit.min(opts.peer_window_bits);
            if rx_window_bits < limit {
                response.push_str(&format!("; client_max_window_bits={rx_window_bits}"));
            }
        }
        return Some((
            Negotiated {
                tx_window_bits,
                tx_no_context_takeover,
                rx_window_bits,
                rx_no_context_takeover,
            },
            response,
        ));
    }
    None
}

/// The client's offer for its `Sec-WebSocket-Extensions` request header.
///
/// ```
/// use wsreactor::proto::deflate::{client_offer, DeflateOptions};
/// assert_eq!(client_offer(&DeflateOptions::default()), "permessage-deflate; client_max_window_bits");
/// ```
pub fn client_offer(opts: &DeflateOptions) -> String {
    let opts = opts.clamped();
    let mut s = String::from(NAME);
    if opts.no_context_takeover {
        s.push_str("; client_no_context_takeover");
    }
    if opts.peer_no_context_takeover {
        s.push_str("; server_no_context_takeover");
    }
    if opts.peer_window_bits < 15 {
        s.push_str(&format!("; server_max_window_bits={}", opts.peer_window_bits));
    }
    s.push_str("; client_max_window_bits");
    s
}

/// The client's check of the server's `Sec-WebSocket-Extensions` response to
/// [`client_offer`]`(opts)`: `Ok(None)` when the server did not accept deflate,
/// `Ok(Some(_))` with what to use, `Err` (fail the handshake, RFC 7692 §5) when the response
/// names another extension, repeats permessage-deflate or has a parameter we cannot honour.
pub fn client_accept(header: Option<&str>, opts: &DeflateOptions) -> Result<Option<Negotiated>, String> {
    let opts = opts.clamped();
    let Some(header) = header else {
        return Ok(None);
    };
    let els = parse_extensions(header);
    let mut found = None;
    for el in &els {
        if !el.name.eq_ignore_ascii_case(NAME) {
            return Err(format!(
                "the server named extension {:?}, which we did not offer",
                el.name
            ));
        }
        if found.is_some() {
            return Err("the server accepted permessage-deflate twice".into());
        }
        found = Some(client_accept_element(el, &opts)?);
    }
    Ok(found)
}

/// The client's check of one permessage-deflate element of the server's response to
/// [`client_offer`]`(opts)`: what to use, or why it cannot be honoured.
pub fn client_accept_element(el: &ExtensionElement<'_>, opts: &DeflateOptions) -> Result<Negotiated, String> {
    let opts = opts.clamped();
    let p = Params::parse(&el.params).map_err(|e| format!("permessage-deflate response: {e}"))?;
    if opts.peer_window_bits < 15 && p.server_max_window_bits.is_none_or(|b| b > opts.peer_window_bits) {
        return Err("permessage-deflate response: server_max_window_bits above our offer".into());
    }
    let tx_window_bits = match p.client_max_window_bits {
        None => opts.window_bits,
        Some(None) => {
            return Err("permessage-deflate response: client_max_window_bits without a value".into())
        }
        Some(Some(b)) => b.min(opts.window_bits),
    };
    Ok(Negotiated {
        tx_window_bits,
        tx_no_context_takeover: p.client_no_context_takeover || opts.no_context_takeover,
        rx_window_bits: p.server_max_window_bits.unwrap_or(15),
        rx_no_context_takeover: p.server_no_context_takeover,
    })
}

fn new_deflate(opts: &DeflateOptions, window_bits: u8) -> Box<Deflate> {
    // Window 8: zlib refuses it for raw deflate; Huffman-only output has no distances, so a
    // 9-bit compressor's output is valid for an 8-bit window.
    let (bits, strategy) = if window_bits <= 8 {
        (9, Strategy::HuffmanOnly)
    } else {
        (window_bits.min(15), Strategy::Default)
    };
    Box::new(Deflate::new_with_config(DeflateConfig {
        level: i32::from(opts.level.min(9)),
        window_bits: -i32::from(bits),
        mem_level: i32::from(opts.mem_level.clamp(1, 9)),
        strategy,
        ..DeflateConfig::default()
    }))
}

fn new_inflate(window_bits: u8) -> Box<Inflate> {
    Box::new(Inflate::new(false, window_bits.clamp(9, 15)))
}

/// Most idle compressors (and decompressors) a pool keeps.
const POOL_KEEP: usize = 8;

/// A context's shared compressors and decompressors (for directions without context
/// takeover), and its options.
pub struct DeflatePool {
    opts: DeflateOptions,
    /// Idle compressors by window bits (8 means Huffman-only).
    tx: Vec<(u8, Box<Deflate>)>,
    /// Idle 15-bit decompressors (boxed: they move in and out of connections' boxes).
    #[allow(clippy::vec_box)]
    rx: Vec<Box<Inflate>>,
}

impl std::fmt::Debug for DeflatePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflatePool")
            .field("opts", &self.opts)
            .field("tx", &self.tx.len())
            .field("rx", &self.rx.len())
            .finish()
    }
}

impl DeflatePool {
    /// An empty pool for `opts`.
    pub fn new(opts: DeflateOptions) -> Self {
        DeflatePool {
            opts: opts.clamped(),
            tx: Vec::new(),
            rx: Vec::new(),
        }
    }

    /// The options the pool was made with (clamped to their ranges).
    pub fn options(&self) -> &DeflateOptions {
        &self.opts
    }

    fn take_tx(&mut self, bits: u8) -> Box<Deflate> {
        match self.tx.iter().position(|(b, _)| *b == bits) {
            Some(i) => self.tx.swap_remove(i).1,
            None => new_deflate(&self.opts, bits),
        }
    }

    fn give_tx(&mut self, bits: u8, mut z: Box<Deflate>) {
        if self.tx.len() < POOL_KEEP {
            z.reset();
            self.tx.push((bits, z));
        }
    }

    fn take_rx(&mut self) -> Box<Inflate> {
        self.rx.pop().unwrap_or_else(|| new_inflate(15))
    }

    fn give_rx(&mut self, mut z: Box<Inflate>) {
        if self.rx.len() < POOL_KEEP {
            z.reset(false);
            self.rx.push(z);
        }
    }
}

/// What one [`DeflateStream::inflate`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Bytes written to the output.
    pub produced: usize,
    /// All of the input is consumed and no output is pending; with `end`, the message is
    /// complete.
    pub done: bool,
}

/// One connection's permessage-deflate state: what was negotiated, its dedicated
/// compressor and decompressor (with context takeover), or the ones it borrowed from the
/// pool for the message in progress (without), and the incoming message's progress.
pub struct DeflateStream {
    neg: Negotiated,
    tx: Option<Box<Deflate>>,
    rx: Option<Box<Inflate>>,
    /// Inflated bytes of the current message.
    total: u64,
    utf8: Utf8Validator,
    text: bool,
    /// Tail bytes fed after the current message's last input.
    tail: u8,
    /// The peer ended its deflate stream (BFINAL) inside this message.
    ended: bool,
    /// The last frame sent ended with a sync flush whose `00 00 ff ff` was held back: it
    /// goes at the start of the next frame of the message, or is dropped if that frame
    /// ends the message (so a last frame with nothing new to say stays empty and the
    /// message still ends at a flush point, as RFC 7692 §7.2.1 wants).
    held: bool,
    /// The outgoing message has put compressed bytes on the wire.
    tx_bytes: bool,
    /// The current message had compressed bytes (an empty payload gets no tail: the tail
    /// alone is not a whole block, and an empty payload can only mean an empty message).
    fed: bool,
}

impl std::fmt::Debug for DeflateStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateStream")
            .field("neg", &self.neg)
            .field("tx", &self.tx.is_some())
            .field("rx", &self.rx.is_some())
            .finish()
    }
}

fn corrupt() -> ProtocolError {
    ProtocolError::new(code::INVALID_PAYLOAD, "invalid compressed data")
}

impl DeflateStream {
    /// A stream for what was negotiated; nothing is allocated until the first message.
    pub fn new(neg: Negotiated) -> Self {
        DeflateStream {
            neg,
            tx: None,
            rx: None,
            total: 0,
            utf8: Utf8Validator::new(),
            text: false,
            tail: 0,
            ended: false,
            fed: false,
            held: false,
            tx_bytes: false,
        }
    }

    /// What was negotiated.
    pub fn negotiated(&self) -> &Negotiated {
        &self.neg
    }

    /// True while a compressor or decompressor is held (dedicated, or borrowed for a
    /// message in progress).
    pub fn holds_memory(&self) -> bool {
        self.tx.is_some() || self.rx.is_some()
    }

    /// Appends the compressed form of one frame's `data` to `out`. `fin` ends the message
    /// (its tail is stripped, and without context takeover the compressor goes back to the
    /// pool); a message's frames must come in order, with nothing else compressed between.
    pub fn compress(
        &mut self,
        pool: &mut DeflatePool,
        data: &[u8],
        first: bool,
        fin: bool,
        out: &mut Vec<u8>,
    ) {
        if first {
            self.tx_bytes = false;
        }
        let bits = self.neg.tx_window_bits;
        let mut z = match self.tx.take() {
            Some(z) => z,
            None if self.neg.tx_no_context_takeover => pool.take_tx(bits),
            None => new_deflate(&pool.opts, bits),
        };
        let start = out.len();
        if std::mem::take(&mut self.held) {
            out.extend_from_slice(&TAIL);
        }
        let mut pos = 0;
        loop {
            let w = out.len();
            // Room for the input plus zlib's worst-case overhead and the flush marker.
            let room = (data.len() - pos) + (data.len() - pos) / 1000 + 64;
            out.resize(w + room, 0);
            let (in0, out0) = (z.total_in(), z.total_out());
            let st = z.compress(&data[pos..], &mut out[w..], DeflateFlush::SyncFlush);
            let used = (z.total_in() - in0) as usize;
            let made = (z.total_out() - out0) as usize;
            out.truncate(w + made);
            pos += used;
            debug_assert!(st.is_ok(), "deflate: {st:?}");
            // A flush is complete when it did not fill the space it was given.
            if st.is_err() || (pos == data.len() && made < room) {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
            self.held = !fin;
        }
        self.tx_bytes |= out.len() > start;
        if fin && !self.tx_bytes {
            // Nothing new since the last flush (an empty message with context taken over):
            // an empty payload plus the receiver's tail would be half a block. One 0x00 is
            // an empty stored block's header, which the tail completes (RFC 7692 §7.2.3.6).
            out.push(0);
        }
        if fin && self.neg.tx_no_context_takeover {
            pool.give_tx(bits, z);
            return;
        }
        self.tx = Some(z);
    }

    /// Starts an incoming compressed message (its first frame had RSV1).
    pub fn begin_message(&mut self, binary: bool) {
        self.total = 0;
        self.utf8.reset();
        self.text = !binary;
        self.tail = 0;
        self.ended = false;
        self.fed = false;
    }

    /// Inflates the next piece of the current message from `input` (compressed payload
    /// bytes) into `out`; `end` says `input` holds the message's last bytes. Call again,
    /// with the unconsumed rest of `input` (empty when all was consumed), until `done`.
    ///
    /// Errors: corrupt data, or text that is not UTF-8 → 1007; more than `limit` inflated
    /// bytes in the message → 1009, as soon as the piece that crosses it is inflated.
    pub fn inflate(
        &mut self,
        pool: &mut DeflatePool,
        input: &[u8],
        end: bool,
        out: &mut [u8],
        limit: u64,
    ) -> Result<Inflated, ProtocolError> {
        let mut z = match self.rx.take() {
            Some(z) => z,
            None if self.neg.rx_no_context_takeover => pool.take_rx(),
            None => new_inflate(self.neg.rx_window_bits),
        };
        let r = self.inflate_with(&mut z, input, end, out, limit);
        match r {
            Ok(p) if p.done && end => self.end_message(pool, z),
            Ok(_) => self.rx = Some(z),
            // The connection fails: the decompressor is dropped with the stream.
            Err(_) => {}
        }
        r
    }

    fn end_message(&mut self, pool: &mut DeflatePool, mut z: Box<Inflate>) {
        if self.neg.rx_no_context_takeover {
            pool.give_rx(z);
        } else {
            if self.ended {
                // The peer ended its stream: the next message starts a new one.
                z.reset(false);
            }
            self.rx = Some(z);
        }
    }

    fn inflate_with(
        &mut self,
        z: &mut Inflate,
        input: &[u8],
        end: bool,
        out: &mut [u8],
        limit: u64,
    ) -> Result<Inflated, ProtocolError> {
        let mut consumed = 0;
        let mut produced = 0;
        self.fed |= !input.is_empty();
        if end && !self.fed {
            self.tail = 4;
        }
        loop {
            let feeding_tail = consumed == input.len();
            let src: &[u8] = if !feeding_tail {
                &input[consumed..]
            } else if end && !self.ended && self.tail < 4 {
                &TAIL[self.tail as usize..]
            } else {
                &[]
            };
            if self.ended && !feeding_tail {
                return Err(corrupt());
            }
            let (in0, out0) = (z.total_in(), z.total_out());
            let st = z
                .decompress(src, &mut out[produced..], InflateFlush::SyncFlush)
                .map_err(|_| corrupt())?;
            let used = (z.total_in() - in0) as usize;
            let made = (z.total_out() - out0) as usize;
            if feeding_tail {
                self.tail += used as u8;
            } else {
                consumed += used;
            }
            if made > 0 {
                let piece = &out[produced..produced + made];
                produced += made;
                self.total += made as u64;
                if self.total > limit {
                    return Err(ProtocolError::new(code::MESSAGE_TOO_BIG, "message too big"));
                }
                if self.text {
                    self.utf8
                        .feed(piece)
                        .map_err(|_| ProtocolError::new(code::INVALID_PAYLOAD, "invalid UTF-8 in text"))?;
                }
            }
            if st == Status::StreamEnd {
                self.ended = true;
            }
            if produced == out.len() {
                // Output may be pending inside zlib: the caller comes back with more room.
                return Ok(Inflated {
                    consumed,
                    produced,
                    done: false,
                });
            }
            let input_done = consumed == input.len() && (!end || self.ended || self.tail == 4);
            if input_done {
                if end && self.text && !self.utf8.is_complete() {
                    return Err(ProtocolError::new(
                        code::INVALID_PAYLOAD,
                        "text ends inside a UTF-8 sequence",
                    ));
                }
                return Ok(Inflated {
                    consumed,
                    produced,
                    done: true,
                });
            }
            if used == 0 && made == 0 {
                // Input left, room left, and zlib moved nothing: it cannot go on.
                return Err(corrupt());
            }
        }
    }
}

/// permessage-deflate as an [`Extension`]: what
/// [`ContextBuilder::permessage_deflate`](crate::ContextBuilder::permessage_deflate)
/// registers. The extension object holds the context's [`DeflatePool`]; each connection's
/// session is its [`DeflateStream`].
///
/// ```
/// use wsreactor::proto::deflate::{DeflateOptions, PermessageDeflate};
/// use wsreactor::proto::extension::{parse_extensions, Extension};
/// let mut ext = PermessageDeflate::new(DeflateOptions::default());
/// let offers = parse_extensions("permessage-deflate; server_max_window_bits=10");
/// let (stream, response) = ext.server_negotiate(&offers).unwrap();
/// assert_eq!(response, "permessage-deflate; server_max_window_bits=10");
/// assert_eq!(stream.negotiated().tx_window_bits, 10);
/// ```
pub struct PermessageDeflate {
    pool: DeflatePool,
}

impl std::fmt::Debug for PermessageDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PermessageDeflate")
            .field("pool", &self.pool)
            .finish()
    }
}

impl PermessageDeflate {
    /// The extension with these settings (clamped to their ranges).
    pub fn new(opts: DeflateOptions) -> Self {
        PermessageDeflate {
            pool: DeflatePool::new(opts),
        }
    }

    /// Its settings.
    pub fn options(&self) -> &DeflateOptions {
        self.pool.options()
    }
}

impl Extension for PermessageDeflate {
    type Session = DeflateStream;

    fn name(&self) -> &str {
        NAME
    }

    fn rsv(&self) -> u8 {
        RSV1
    }

    fn server_negotiate(&mut self, offers: &[ExtensionElement<'_>]) -> Option<(DeflateStream, String)> {
        let (neg, response) = server_negotiate_offers(offers, self.pool.options())?;
        Some((DeflateStream::new(neg), response))
    }

    fn client_offer(&mut self) -> String {
        client_offer(self.pool.options())
    }

    fn client_accept(&mut self, response: &ExtensionElement<'_>) -> Result<DeflateStream, String> {
        client_accept_element(response, self.pool.options()).map(DeflateStream::new)
    }

    fn rx(
        &mut self,
        s: &mut DeflateStream,
        chunk: RxChunk<'_>,
        out: &mut [u8],
    ) -> Result<RxProgress, ProtocolError> {
        if chunk.first {
            // As binary: the reactor validates text after every extension alike.
            s.begin_message(true);
        }
        let p = s.inflate(&mut self.pool, chunk.data, chunk.last, out, chunk.limit)?;
        Ok(RxProgress {
            consumed: p.consumed,
            produced: p.produced,
            done: p.done,
        })
    }

    fn tx(
        &mut self,
        s: &mut DeflateStream,
        frame: TxFrame<'_>,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProtocolError> {
        if frame.first && frame.fin && frame.data.len() < self.pool.options().threshold {
            return Ok(false);
        }
        s.compress(&mut self.pool, frame.data, frame.first, frame.fin, out);
        Ok(true)
    }

    fn tx_bound(&self, len: usize) -> usize {
        // Deflate output is at most the input plus 5 bytes per 16 KiB stored block, plus
        // the flush marker.
        len + len / 3000 + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg_of(server: &str, opts: &DeflateOptions) -> Option<Negotiated> {
        server_negotiate(server, opts).map(|(n, _)| n)
    }

    #[test]
    fn parses_elements_with_quotes_and_spaces() {
        let els = parse_extensions(" foo , permessage-deflate ;client_max_window_bits = \"10\" ; x,, ");
        assert_eq!(els.len(), 2);
        assert_eq!(els[0].name, "foo");
        assert_eq!(
            els[1].params,
            vec![("client_max_window_bits", Some("10")), ("x", None)]
        );
    }

    #[test]
    fn server_declines_bad_offers_and_takes_the_first_good_one() {
        let o = DeflateOptions::default();
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(neg_of(bad, &o), None, "{bad}");
            let two = format!("{bad}, permessage-deflate; server_no_context_takeover");
            let (n, r) = server_negotiate(&two, &o).unwrap();
            assert!(n.tx_no_context_takeover, "{two}");
            assert_eq!(r, "permessage-deflate; server_no_context_takeover");
        }
    }

    #[test]
    fn server_parameters() {
        let o = DeflateOptions::default();
        let (n, r) = server_negotiate("permessage-deflate", &o).unwrap();
        assert_eq!((n, r.as_str()), (Negotiated::default(), "permessage-deflate"));
        let (n, r) = server_negotiate("permessage-deflate; server_max_window_bits=8", &o).unwrap();
        assert_eq!(n.tx_window_bits, 8);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=8");
        let (n, r) = server_negotiate("permessage-deflate; client_no_context_takeover", &o).unwrap();
        assert!(n.rx_no_context_takeover && !n.tx_no_context_takeover);
        assert_eq!(r, "permessage-deflate; client_no_context_takeover");
        // Our limit on the client's window needs its client_max_window_bits.
        let small = DeflateOptions::dedicated(10, 4);
        assert_eq!(neg_of("permessage-deflate", &small).unwrap().rx_window_bits, 15);
        let (n, r) = server_negotiate("permessage-deflate; client_max_window_bits", &small).unwrap();
        assert_eq!((n.rx_window_bits, n.tx_window_bits), (10, 10));
        assert_eq!(r, "permessage-deflate; client_max_window_bits=10");
        let (n, r) = server_negotiate("permessage-deflate; client_max_window_bits=9", &small).unwrap();
        assert_eq!(n.rx_window_bits, 9);
        assert_eq!(r, "permessage-deflate");
        let (n, r) = server_negotiate("permessage-deflate", &DeflateOptions::shared()).unwrap();
        assert!(n.tx_no_context_takeover && n.rx_no_context_takeover);
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn client_offer_and_response_checks() {
        let o = DeflateOptions {
            peer_window_bits: 12,
            ..DeflateOptions::shared()
        };
        assert_eq!(
            client_offer(&o),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits"
        );
        let d = DeflateOptions::default();
        assert_eq!(client_accept(None, &d), Ok(None));
        let n = client_accept(
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=8"),
            &d,
        )
        .unwrap()
        .unwrap();
        assert_eq!((n.tx_window_bits, n.rx_no_context_takeover), (8, true));
        for bad in [
            "foo",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; bogus",
        ] {
            assert!(client_accept(Some(bad), &d).is_err(), "{bad}");
        }
        // We limited the server to 12 bits: it must say so, with at most 12.
        assert!(client_accept(Some("permessage-deflate"), &o).is_err());
        assert!(client_accept(Some("permessage-deflate; server_max_window_bits=13"), &o).is_err());
        let n = client_accept(Some("permessage-deflate; server_max_window_bits=11"), &o)
            .unwrap()
            .unwrap();
        assert_eq!(n.rx_window_bits, 11);
    }

    fn roundtrip(neg: Negotiated, opts: DeflateOptions, msgs: &[Vec<u8>], frag: usize, piece: usize) {
        let mut pool = DeflatePool::new(opts);
        let mut tx = DeflateStream::new(neg);
        let mut rx = DeflateStream::new(neg);
        for m in msgs {
            let chunks: Vec<&[u8]> = if m.is_empty() {
                vec![&[][..]]
            } else {
                m.chunks(frag).collect()
            };
            let mut frames = Vec::new();
            for (i, c) in chunks.iter().enumerate() {
                let mut f = Vec::new();
                tx.compress(&mut pool, c, i == 0, i + 1 == chunks.len(), &mut f);
                frames.push(f);
            }
            rx.begin_message(true);
            let mut got = Vec::new();
            let mut out = vec![0u8; piece];
            for (i, f) in frames.iter().enumerate() {
                let end = i + 1 == frames.len();
                let mut inp = &f[..];
                loop {
                    let p = rx.inflate(&mut pool, inp, end, &mut out, u64::MAX).unwrap();
                    got.extend_from_slice(&out[..p.produced]);
                    inp = &inp[p.consumed..];
                    if p.done {
                        break;
                    }
                }
                assert!(inp.is_empty());
            }
            assert_eq!(&got, m);
            if neg.tx_no_context_takeover && neg.rx_no_context_takeover {
                assert!(!tx.holds_memory() && !rx.holds_memory());
            }
        }
    }

    #[test]
    fn every_parameter_combination_round_trips() {
        let msgs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"{\"a\":1,\"a\":1,\"a\":1,\"a\":1}".repeat(200),
            (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
            b"x".to_vec(),
        ];
        for tx_bits in 8..=15 {
            for rx_bits in [8, 9, 15] {
                for tnct in [false, true] {
                    for rnct in [false, true] {
                        let neg = Negotiated {
                            tx_window_bits: tx_bits,
                            tx_no_context_takeover: tnct,
                            rx_window_bits: rx_bits.max(tx_bits),
                            rx_no_context_takeover: rnct || tnct,
                        };
                        roundtrip(neg, DeflateOptions::default(), &msgs, 777, 100);
                    }
                }
            }
        }
    }

    #[test]
    fn an_empty_last_fragment_keeps_the_stream_in_step() {
        // An echo of a message inflated in two pieces, the second empty: "data" (not
        // final) then "" (final), then a second message on the same context.
        let mut pool = DeflatePool::new(DeflateOptions::default());
        let (mut tx, mut rx) = (
            DeflateStream::new(Negotiated::default()),
            DeflateStream::new(Negotiated::default()),
        );
        let mut out = [0u8; 256];
        for msg in [
            [&b"abcabcabc"[..], b""],
            [b"second", b""],
            [b"", b""],
            [b"", b"third"],
        ] {
            let (mut f1, mut f2) = (Vec::new(), Vec::new());
            tx.compress(&mut pool, msg[0], true, false, &mut f1);
            tx.compress(&mut pool, msg[1], false, true, &mut f2);
            rx.begin_message(true);
            let a = rx.inflate(&mut pool, &f1, false, &mut out, 1 << 20).unwrap();
            let mut got = out[..a.produced].to_vec();
            let b = rx.inflate(&mut pool, &f2, true, &mut out, 1 << 20).unwrap();
            assert!(a.done && b.done);
            got.extend_from_slice(&out[..b.produced]);
            assert_eq!(got, [msg[0], msg[1]].concat());
            // A peer that always appends the tail (as zlib users do) must be able to inflate
            // what we sent: never an empty payload for a whole message.
            assert!(!(f1.is_empty() && f2.is_empty()), "{msg:?}");
        }
    }

    #[test]
    fn a_bomb_fails_with_1009_after_one_piece() {
        let opts = DeflateOptions::default();
        let mut pool = DeflatePool::new(opts);
        let mut tx = DeflateStream::new(Negotiated::default());
        let mut wire = Vec::new();
        let zeros = vec![0u8; 4 << 20];
        tx.compress(&mut pool, &zeros, true, true, &mut wire);
        assert!(wire.len() < 8 << 10, "{} bytes", wire.len());
        let mut rx = DeflateStream::new(Negotiated::default());
        rx.begin_message(true);
        let mut out = vec![0u8; 16 << 10];
        let mut inp = &wire[..];
        let mut pieces = 0;
        let err = loop {
            match rx.inflate(&mut pool, inp, true, &mut out, 1 << 20) {
                Ok(p) => {
                    assert!(!p.done);
                    inp = &inp[p.consumed..];
                    pieces += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err.code, 1009);
        // 1 MiB in 16 KiB pieces: the 65th crosses the limit.
        assert_eq!(pieces, 64);
    }

    #[test]
    fn corrupt_data_and_bad_utf8_fail_with_1007() {
        let mut pool = DeflatePool::new(DeflateOptions::default());
        let mut rx = DeflateStream::new(Negotiated::default());
        rx.begin_message(true);
        let mut out = [0u8; 64];
        // BTYPE 11 is reserved.
        assert_eq!(
            rx.inflate(&mut pool, &[0xff, 0xff], true, &mut out, 1 << 20)
                .unwrap_err()
                .code,
            1007
        );
        let mut tx = DeflateStream::new(Negotiated::default());
        let mut wire = Vec::new();
        tx.compress(&mut pool, b"ok \xff", true, true, &mut wire);
        let mut rx = DeflateStream::new(Negotiated::default());
        rx.begin_message(false);
        assert_eq!(
            rx.inflate(&mut pool, &wire, true, &mut out, 1 << 20)
                .unwrap_err()
                .code,
            1007
        );
        // Cut inside a code point: 1007 at the end of the message.
        let mut wire = Vec::new();
        tx.compress(&mut pool, "é".as_bytes().get(..1).unwrap(), true, true, &mut wire);
        let mut rx = DeflateStream::new(Negotiated::default());
        rx.begin_message(false);
        assert_eq!(
            rx.inflate(&mut pool, &wire, true, &mut out, 1 << 20)
                .unwrap_err()
                .code,
            1007
        );
    }

    #[test]
    fn a_final_block_from_the_peer_is_accepted_and_the_stream_restarts() {
        // A peer may end each message with BFINAL (here: raw deflate "Finish" streams).
        let mut pool = DeflatePool::new(DeflateOptions::default());
        let mut rx = DeflateStream::new(Negotiated::default());
        for msg in [&b"first message"[..], b"second"] {
            let mut z = Deflate::new(6, false, 15);
            let mut wire = vec![0u8; 256];
            z.compress(msg, &mut wire, DeflateFlush::Finish).unwrap();
            wire.truncate(z.total_out() as usize);
            rx.begin_message(true);
            let mut out = [0u8; 64];
            let p = rx.inflate(&mut pool, &wire, true, &mut out, 1 << 20).unwrap();
            assert!(p.done);
            assert_eq!(&out[..p.produced], msg);
        }
    }

    #[test]
    fn the_empty_message_is_an_empty_payload() {
        let mut pool = DeflatePool::new(DeflateOptions::default());
        let mut tx = DeflateStream::new(Negotiated::default());
        let mut wire = Vec::new();
        tx.compress(&mut pool, b"", true, true, &mut wire);
        // RFC 7692 §7.2.3.6: one 0x00 byte (an empty stored block's first bits, its tail cut).
        assert_eq!(wire, [0]);
        let mut rx = DeflateStream::new(Negotiated::default());
        for empty in [&[0u8][..], &[]] {
            rx.begin_message(false);
            let p = rx.inflate(&mut pool, empty, true, &mut [0u8; 8], 10).unwrap();
            assert_eq!((p.produced, p.done), (0, true));
        }
        // The deflate encoding of nothing in a fixed block, as some peers send it.
        rx.begin_message(false);
        let p = rx
            .inflate(&mut pool, &[0x02, 0x00], true, &mut [0u8; 8], 10)
            .unwrap();
        assert_eq!((p.produced, p.done), (0, true));
    }
}
