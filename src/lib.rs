//! wsreactor: WebSockets and HTTP from a single-threaded poll reactor, in the tradition of
//! libwebsockets.
//!
//! A [`Context`] owns a mio poll loop with the listen sockets and every connection; the
//! program calls [`Context::service`] from its own main loop. Protocols (a name, a
//! [`Protocol`] handler with a per-session data type, an rx buffer size) get libwebsockets'
//! callback reasons as a [`Reason`] enum, with a short-lived [`Wsi`] handle for the
//! connection. Underneath, [`proto`] is a sans-IO RFC 6455 implementation usable on its own.
//!
//! TLS (wss:// and https://, with rustls) is a property of the context's listener: give it
//! a certificate ([`ContextBuilder::ssl_cert_filepath`]) and every connection is TLS, with
//! the same protocols and callbacks; a protocol never sees whether its bytes were encrypted
//! unless it asks ([`Wsi::is_ssl`]).
//!
//! | libwebsockets | wsreactor |
//! | --- | --- |
//! | `libwebsocket_create_context` | [`Context::builder`] … [`ContextBuilder::build`] |
//! | `libwebsocket_service` | [`Context::service`] |
//! | `struct libwebsocket_protocols` | [`ContextBuilder::protocol`], [`ProtocolSpec`] |
//! | `LWS_CALLBACK_*` | [`Reason`], [`ProtocolEvent`] |
//! | `libwebsocket_write` | [`Wsi::write`], [`Wsi::write_fragment`] |
//! | `libwebsocket_callback_on_writable` | [`Wsi::callback_on_writable`] |
//! | `libwebsocket_rx_flow_control` | [`Wsi::rx_flow_control`] |
//! | `libwebsocket_cancel_service` | [`CancelHandle::cancel`] |
//! | `struct libwebsocket_extension`, `LWS_EXT_CALLBACK_*` | [`proto::extension::Extension`], [`ContextBuilder::extension`] |
//! | uWebSockets' `subscribe` / `publish` / `numSubscribers` | [`Wsi::subscribe`], [`Wsi::publish`], [`Context::publish`], [`Context::num_subscribers`] ([`topics`]) |
//! | `lws_set_log_level` | [`set_log_level`] |
//! | `ssl_cert_filepath`, `ssl_private_key_filepath`, `ssl_ca_filepath`, `ssl_cipher_list` | [`ContextBuilder::ssl_cert_filepath`] and friends |
//! | `LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT` | [`ContextBuilder::ssl_client_certs`] |
//! | `LWS_SERVER_OPTION_ALLOW_NON_SSL_ON_SSL_PORT`, `…_REDIRECT_HTTP_TO_HTTPS` | [`ContextBuilder::ssl_plain_http`] |
//! | `lws_is_ssl`, `lws_get_peer_cert` | [`Wsi::is_ssl`], [`Wsi::peer_certificates`] |
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod adopt;
#[cfg(feature = "redis")]
pub mod backplane;
pub mod blocking;
mod builder;
mod client;
mod connection;
mod context;
mod dispatch;
mod driver;
mod extensions;
pub mod fileserver;
pub mod http;
mod listener;
pub mod proto;
mod protocol;
mod proxy;
mod readiness;
mod reason;
mod roles;
mod shared;
mod stats;
mod timers;
mod tls;
pub mod topics;
mod transport;
mod wsi;

pub use builder::{ContextBuilder, ProtocolSpec};
pub use client::{ClientConnect, SslMode, UrlError};
pub use context::{CancelHandle, Context};
pub use listener::{Listen, ListenAddr};
pub use protocol::Protocol;
pub use reason::{Close, ConnId, PollArgs, ProtocolEvent, ProtocolId, Reason};
/// The rustls types that appear in this API ([`ContextBuilder::ssl_server_config`],
/// certificate chains), re-exported so that they match the version used here.
pub use rustls;
pub use stats::Stats;
pub use timers::{PendingTimeout, TimerHandle};
pub use tls::{ClientCerts, PlainHttp};
pub use topics::{Published, SlowPolicy, TopicOptions};
pub use wsi::{ConnRequests, ProtocolContext, WriteError, WriteProtocol, Wsi};

/// The library version (`lws_get_library_version`).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Sets the log level (`lws_set_log_level`). Messages go through the `log` crate; install
/// any logger (e.g. `env_logger`) to see them.
pub fn set_log_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

/// Maps a libwebsockets log bitmask (`LLL_ERR` = 1, `LLL_WARN` = 2, `LLL_NOTICE` = 4,
/// `LLL_INFO` = 8, `LLL_DEBUG` = 16, …) to the most verbose `log` level it enables.
///
/// ```
/// use wsreactor::lws_log_level;
/// assert_eq!(lws_log_level(7), log::LevelFilter::Info);
/// assert_eq!(lws_log_level(0), log::LevelFilter::Off);
/// ```
pub fn lws_log_level(mask: u32) -> log::LevelFilter {
    use log::LevelFilter::*;
    match mask {
        0 => Off,
        1 => Error,
        2..=3 => Warn,
        4..=15 => Info,
        16..=63 => Debug,
        _ => Trace,
    }
}
