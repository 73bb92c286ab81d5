//! Outgoing connections: what to connect to (libwebsockets' `libwebsocket_client_connect`
//! arguments, or a `ws://` / `wss://` URL).
//!
//! The connection itself is driven by the same `service()` loop as accepted ones, by the
//! client role (`src/roles/client.rs`); its protocol gets the `Client*` reasons.

use crate::proxy::Proxy;
use std::fmt;

/// How a client connection uses TLS (libwebsockets' `ssl_connection` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// `0`: plain `ws://`.
    #[default]
    Plain,
    /// `1`: `wss://`, the server's certificate verified against the web PKI roots, or
    /// against [`ssl_ca_filepath`](crate::ContextBuilder::ssl_ca_filepath) when the context
    /// has one.
    Verified,
    /// `2`: `wss://` accepting any certificate, self-signed included (for tests and
    /// development; the connection is encrypted but the server is not authenticated).
    AllowSelfSigned,
}

impl SslMode {
    /// The mode of libwebsockets' integer `ssl_connection` argument (0, 1, 2; anything
    /// else is treated as 1).
    pub fn from_lws(ssl: i32) -> SslMode {
        match ssl {
            0 => SslMode::Plain,
            2 => SslMode::AllowSelfSigned,
            _ => SslMode::Verified,
        }
    }
}

/// A URL that is not a usable `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad WebSocket URL: {}", self.0)
    }
}

impl std::error::Error for UrlError {}

/// An outgoing WebSocket connection to make.
///
/// ```
/// use wsreactor::{ClientConnect, SslMode};
/// let c = ClientConnect::url("wss://[::1]:8443/chat?room=a").unwrap().protocols("chat");
/// assert_eq!((c.host(), c.port(), c.path()), ("::1", 8443, "/chat?room=a"));
/// assert_eq!(c.ssl_mode(), SslMode::Verified);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConnect {
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) ssl: SslMode,
    pub(crate) path: String,
    pub(crate) host: Option<String>,
    pub(crate) origin: Option<String>,
    pub(crate) protocols: Option<String>,
    pub(crate) bind: Option<String>,
    pub(crate) proxy: ProxyChoice,
    pub(crate) addresses: Vec<std::net::SocketAddr>,
    pub(crate) no_deflate: bool,
}

/// Which proxy a connection uses.
#[derive(Debug, Clone, Default)]
pub(crate) enum ProxyChoice {
    /// The context's (see [`ContextBuilder::proxy`](crate::ContextBuilder::proxy)).
    #[default]
    Context,
    /// None: straight to the target.
    Direct,
    /// This one.
    Via(Proxy),
}

impl ClientConnect {
    /// A connection to `address` (a host name, or an IPv4 or IPv6 literal) on `port`,
    /// plain, path `/`.
    pub fn new(address: &str, port: u16) -> Self {
        ClientConnect {
            address: address.trim_matches(|c| c == '[' || c == ']').to_owned(),
            port,
            ssl: SslMode::Plain,
            path: "/".to_owned(),
            host: None,
            origin: None,
            protocols: None,
            bind: None,
            proxy: ProxyChoice::Context,
            addresses: Vec::new(),
            no_deflate: false,
        }
    }

    /// From a URL: `ws://host[:port][/path][?query]` or `wss://…` (verified TLS); IPv6
    /// literals in brackets; default ports 80 and 443.
    pub fn url(url: &str) -> Result<Self, UrlError> {
        let bad = |why: &str| UrlError(format!("{url:?}: {why}"));
        let (ssl, rest) = if let Some(r) = strip_prefix_ci(url, "ws://") {
            (SslMode::Plain, r)
        } else if let Some(r) = strip_prefix_ci(url, "wss://") {
            (SslMode::Verified, r)
        } else {
            return Err(bad("the scheme must be ws:// or wss://"));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let cut = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(cut);
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let default_port = if ssl == SslMode::Plain { 80 } else { 443 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
            let port = match after {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad("bad port"))?,
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let mut c = ClientConnect::new(&host, port);
        c.ssl = ssl;
        c.path = path;
        if port != default_port {
            c.host = Some(authority.to_owned());
        }
        Ok(c)
    }

    /// TLS mode (default: plain for `new` and `ws://`, verified for `wss://`).
    pub fn ssl(mut self, mode: SslMode) -> Self {
        self.ssl = mode;
        self
    }

    /// The request path, with its query (default `/`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sets the request path, with its query.
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self
    }

    /// The `Host` header to send (default: the address, with the port when not the
    /// default one).
    pub fn host_header(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// The `Origin` header to send (default: none).
    pub fn origin(mut self, origin: &str) -> Self {
        self.origin = Some(origin.to_owned());
        self
    }

    /// The sub-protocols to offer, comma-separated (`Sec-WebSocket-Protocol`). Unless
    /// [`bind`](Self::bind) says otherwise, the connection is handled by the registered
    /// protocol of the first offered name that is registered, else by the first protocol.
    pub fn protocols(mut self, names: &str) -> Self {
        self.protocols = Some(names.to_owned());
        self
    }

    /// The registered protocol that handles this connection's callbacks.
    pub fn bind(mut self, protocol_name: &str) -> Self {
        self.bind = Some(protocol_name.to_owned());
        self
    }

    /// Connects to these addresses instead of resolving the host (which still goes into
    /// `Host` and, for wss://, the certificate check and SNI), tried as resolved ones are:
    /// one after another, a new attempt started every 250 ms while none has connected
    /// (curl's `--connect-to`). Ignored through a proxy.
    pub fn addresses(mut self, addrs: Vec<std::net::SocketAddr>) -> Self {
        self.addresses = addrs;
        self
    }

    /// Leaves permessage-deflate out of this connection's offer, though the context
    /// offers it ([`ContextBuilder::permessage_deflate`](crate::ContextBuilder::permessage_deflate)).
    pub fn no_deflate(mut self) -> Self {
        self.no_deflate = true;
        self
    }

    /// Connects straight to the target, whatever proxy the context has (its
    /// [`proxy`](crate::ContextBuilder::proxy) setting or the environment's).
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyChoice::Direct;
        self
    }

    /// Tunnels this connection through the HTTP proxy `proxy` (`host:port` or
    /// `http://[user:password@]host[:port]`, as for
    /// [`Context::set_proxy`](crate::Context::set_proxy)), whatever the context's setting
    /// is; `no_proxy` does not apply. Empty: the same as [`no_proxy`](Self::no_proxy).
    pub fn via_proxy(mut self, proxy: &str) -> Result<Self, UrlError> {
        self.proxy = match Proxy::parse(proxy).map_err(|e| UrlError(e.to_string()))? {
            Some(p) => ProxyChoice::Via(p),
            None => ProxyChoice::Direct,
        };
        Ok(self)
    }

    /// The host (name or IP literal) connected to.
    pub fn host(&self) -> &str {
        &self.address
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS mode.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl
    }

    /// The `Host` header that will be sent.
    pub(crate) fn host_value(&self) -> String {
        if let Some(h) = &self.host {
            return h.clone();
        }
        let default_port = if self.ssl == SslMode::Plain { 80 } else { 443 };
        let h = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        if self.port == default_port {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = ClientConnect::url("ws://example.com").unwrap();
        assert_eq!(
            (c.host(), c.port(), c.path(), c.ssl_mode()),
            ("example.com", 80, "/", SslMode::Plain)
        );
        assert_eq!(c.host_value(), "example.com");
        let c = ClientConnect::url("WSS://example.com:8443?x=1").unwrap();
        assert_eq!(
            (c.port(), c.path(), c.ssl_mode()),
            (8443, "/?x=1", SslMode::Verified)
        );
        assert_eq!(c.host_value(), "example.com:8443");
        let c = ClientConnect::url("ws://[fe80::1]/a/b?c#frag").unwrap();
        assert_eq!((c.host(), c.port(), c.path()), ("fe80::1", 80, "/a/b?c"));
        assert_eq!(c.host_value(), "[fe80::1]");
        let c = ClientConnect::url("ws://127.0.0.1:9001/").unwrap();
        assert_eq!(c.host_value(), "127.0.0.1:9001");
        for bad in [
            "http://x",
            "ws://",
            "ws://x:99999",
            "ws://[::1",
            "ws://u:p@x/",
            "ws://x:y",
        ] {
            assert!(ClientConnect::url(bad).is_err(), "{bad}");
        }
        assert_eq!(SslMode::from_lws(2), SslMode::AllowSelfSigned);
    }
}
