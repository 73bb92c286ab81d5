//! The sans-IO WebSocket protocol core (RFC 6455).
//!
//! Nothing here touches a socket, a clock or the reactor: bytes go in through
//! [`Receiver::decode`] (or the frame-level [`FrameDecoder`]), events come out, and frames
//! to send are appended to a caller's buffer by the [`encoder`] functions. The reactor uses
//! it, and so can any other transport, in the manner of wslay's event API.
//!
//! | module | what |
//! | --- | --- |
//! | [`frame`] | frame header codec, opcodes |
//! | [`mask`] | masking / unmasking, a block at a time |
//! | [`utf8`] | streaming UTF-8 validation that fails fast |
//! | [`close`] | close codes and close payloads |
//! | [`decoder`] | frame and message decoders |
//! | [`encoder`] | frame encoding |
//! | [`handshake`] | key/accept, upgrade request validation, 101 response |
//! | [`extension`] | the extension mechanism (libwebsockets' `libwebsocket_extension`): the [`extension::Extension`] trait, header grammar |
//! | [`deflate`] | permessage-deflate (RFC 7692) on it: negotiation, compression, bounded inflation |
//!
//! A complete echo over an in-memory "transport":
//!
//! ```
//! use wsreactor::proto::{encoder, Event, OpCode, Receiver, Role};
//! let mut client_bytes = Vec::new();
//! encoder::encode_frame(&mut client_bytes, OpCode::Text, true, Some([7, 7, 7, 7]), b"ping me");
//!
//! let mut rx = Receiver::new(Role::Server, Default::default());
//! let mut reply = Vec::new();
//! let mut pos = 0;
//! while let (n, Some(ev)) = rx.decode(&mut client_bytes[pos..]).unwrap() {
//!     pos += n;
//!     if let Event::Data { data, first, last, binary, .. } = ev {
//!         let op = match (first, binary) {
//!             (false, _) => OpCode::Continuation,
//!             (true, false) => OpCode::Text,
//!             (true, true) => OpCode::Binary,
//!         };
//!         encoder::encode_frame(&mut reply, op, last, None, data);
//!     }
//! }
//! assert_eq!(reply, b"\x81\x07ping me");
//! ```

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod encoder;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use decoder::{Event, FrameDecoder, FrameEvent, Limits, ProtocolError, Receiver, Role};
pub use frame::{FrameHeader, OpCode};
