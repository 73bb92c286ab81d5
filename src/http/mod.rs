//! Sans-IO HTTP/1.1 server side: everything between bytes read from a
//! socket and bytes to write back, with no sockets, no filesystem and no
//! clock here (the time is always an argument).
//!
//! * [`request`]: finding the end of a request head incrementally
//!   ([`HeadScanner`]) and parsing it with its smuggling checks
//!   ([`parse_head`]), RFC 9112 §2–§7.
//! * [`chunked`]: decoding chunked request bodies, RFC 9112 §7.1.
//! * [`response`]: writing response heads (the one writer of status line,
//!   `Date` and `Server`, also used for the WebSocket 101) and small HTML
//!   status pages.
//! * [`files`]: static-file responses from a file's metadata
//!   ([`Resolved`]): conditional requests (RFC 9110 §13) and byte ranges
//!   (RFC 9110 §14), judged at a given `now`. Finding and reading the file
//!   is [`crate::fileserver`]'s.
//! * [`date`]: HTTP-date formatting and parsing (RFC 9110 §5.6.7) with the
//!   `httpdate` crate, and [`DateCache`], formatting once per second.
//!
//! A connection typically: appends reads to its buffer and calls
//! [`HeadScanner::scan`]; on `Complete(n)` calls [`parse_head`] on
//! `buf[..n]`; answers errors with [`status_page`] using the error's
//! status; reads a body by `Content-Length` or with [`ChunkedDecoder`];
//! drains the request and [`HeadScanner::reset`]s for the next one.

pub mod chunked;
pub mod date;
pub mod files;
pub mod request;
pub mod response;

pub use chunked::{Chunk, ChunkedDecoder};
pub use date::{http_date, parse_http_date, DateCache, ImfFixdate};
pub use files::{etag, plan, Plan, Resolved};
pub use request::{parse_head, HeadScanner, HttpError, Limits, Method, Request, Scan};
pub use response::{reason_phrase, status_page, write_head};
