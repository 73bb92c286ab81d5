//! wsreactor: WebSockets and HTTP from a single-threaded poll reactor.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod proto;
