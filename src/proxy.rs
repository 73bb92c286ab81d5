//! HTTP `CONNECT` proxies for outgoing connections (libwebsockets' `libwebsocket_set_proxy`).
//!
//! A proxy is named `host:port` or `http://[user:password@]host[:port][/]` (credentials
//! percent-decoded and sent as `Proxy-Authorization: Basic`; port 1080 when none is given,
//! as curl does). The connection goes to the proxy, asks it for a tunnel with
//! `CONNECT target:port HTTP/1.1`, and after a 2xx answer carries on as if connected to the
//! target: TLS (for `wss://`) starts only then, inside the tunnel.
//!
//! Which connections use one: see [`ContextBuilder::proxy`](crate::ContextBuilder::proxy).
//! `no_proxy` follows curl: a comma-separated list of host names (each also matching its
//! sub-domains; a leading `.` is optional), IP literals (exact match), CIDR ranges (`10.0.0.0/8`, `fd00::/8`), or `*` for every
//! host. Nothing else is exempt: `localhost`, `127.0.0.1` and `::1` go through the proxy
//! unless `no_proxy` names them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt;
use std::io;
use std::net::IpAddr;

/// An HTTP proxy to tunnel through.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// Host name or IP literal (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Proxy-Authorization` value (`Basic …`).
    pub(crate) auth: Option<String>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        write!(f, "Proxy({})", self.addr())
    }
}

impl Proxy {
    /// Parses a proxy setting; `Ok(None)` for an empty one.
    pub(crate) fn parse(s: &str) -> io::Result<Option<Proxy>> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("bad proxy: {why}"));
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let rest = match s.find("://") {
            Some(i) if s[..i].eq_ignore_ascii_case("http") => &s[i + 3..],
            Some(_) => return Err(bad("only http:// proxies (HTTP CONNECT) are supported")),
            None => s,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("a proxy URL has no path"));
        }
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let (user, pass) = cred.split_once(':').unwrap_or((cred, ""));
                let decode = |p: &str| {
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .map_err(|_| bad("the credentials are not UTF-8 once decoded"))
                };
                let plain = format!("{}:{}", decode(user)?, decode(pass)?);
                (Some(format!("Basic {}", STANDARD.encode(plain))), hp)
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in the host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
            };
            (h, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            None => 1080,
            Some(p) => p
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        if host.is_empty() || host.contains(['@', ' ', '[', ']']) {
            return Err(bad("no usable host"));
        }
        Ok(Some(Proxy {
            host: host.to_owned(),
            port,
            auth,
        }))
    }

    /// `host:port`, IPv6 in brackets.
    pub(crate) fn addr(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// `host:port`, an IPv6 literal in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `CONNECT` request for a tunnel to `host:port`.
pub(crate) fn write_connect(out: &mut Vec<u8>, host: &str, port: u16, auth: Option<&str>) {
    let target = authority(host, port);
    out.extend_from_slice(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").as_bytes());
    if let Some(a) = auth {
        out.extend_from_slice(format!("Proxy-Authorization: {a}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A `no_proxy` list (see the [module](self) documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    all: bool,
    entries: Vec<String>,
    /// CIDR ranges (`10.0.0.0/8`, `fd00::/8`), as curl takes them since 7.86.
    ranges: Vec<(IpAddr, u8)>,
}

/// `a` is inside `net/bits` (both of one family).
fn in_range(a: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl NoProxy {
    pub(crate) fn parse(s: &str) -> NoProxy {
        let mut n = NoProxy::default();
        for e in s.split([',', ' ', '\t']).map(str::trim).filter(|e| !e.is_empty()) {
            if e == "*" {
                n.all = true;
                continue;
            }
            let e = e.trim_start_matches("*.").trim_start_matches('.');
            let e = e.trim_matches(|c| c == '[' || c == ']');
            if let Some((net, bits)) = e.split_once('/') {
                // A range that does not parse, or a prefix longer than the address, is
                // ignored (as curl does), not taken for a name.
                let net = net.trim_end_matches(']').trim_start_matches('[');
                if let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u8>()) {
                    if bits <= if net.is_ipv4() { 32 } else { 128 } {
                        n.ranges.push((net, bits));
                    }
                }
                continue;
            }
            if !e.is_empty() {
                n.entries.push(e.to_ascii_lowercase());
            }
        }
        n
    }

    /// True when `host` (a name or an IP literal, IPv6 without brackets) is exempt.
    pub(crate) fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        if let Some(ip) = ip {
            if self.ranges.iter().any(|&(net, bits)| in_range(ip, net, bits)) {
                return true;
            }
        }
        self.entries.iter().any(|e| {
            if let Some(ip) = ip {
                // An IP literal matches itself, or a range above; never a name's suffix.
                return e.parse::<IpAddr>().ok() == Some(ip);
            }
            host == *e
                || (host.len() > e.len()
                    && host.ends_with(e.as_str())
                    && host.as_bytes()[host.len() - e.len() - 1] == b'.')
        })
    }
}

/// The context's proxy settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxyConfig {
    /// For `ws://`.
    pub(crate) plain: Option<Proxy>,
    /// For `wss://`.
    pub(crate) tls: Option<Proxy>,
    pub(crate) no_proxy: NoProxy,
}

fn env(names: [&str; 2]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

impl ProxyConfig {
    /// From `http_proxy` / `HTTP_PROXY` (ws://), `https_proxy` / `HTTPS_PROXY` (wss://) and
    /// `no_proxy` / `NO_PROXY`; an unusable value is logged and ignored.
    pub(crate) fn from_env() -> ProxyConfig {
        let get = |names: [&str; 2]| {
            env(names).and_then(|v| match Proxy::parse(&v) {
                Ok(p) => p,
                Err(e) => {
                    log::warn!("{}: {e}; ignored", names[0]);
                    None
                }
            })
        };
        ProxyConfig {
            plain: get(["http_proxy", "HTTP_PROXY"]),
            tls: get(["https_proxy", "HTTPS_PROXY"]),
            no_proxy: NoProxy::parse(&env(["no_proxy", "NO_PROXY"]).unwrap_or_default()),
        }
    }

    /// The proxy for a connection to `host`, TLS or not.
    pub(crate) fn for_target(&self, host: &str, tls: bool) -> Option<&Proxy> {
        let p = if tls {
            self.tls.as_ref()
        } else {
            self.plain.as_ref()
        }?;
        (!self.no_proxy.matches(host)).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let p = Proxy::parse("127.0.0.1:3128").unwrap().unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.auth.as_deref()),
            ("127.0.0.1", 3128, None)
        );
        let p = Proxy::parse("http://us%40er:p%3Ass@proxy.test:8080/")
            .unwrap()
            .unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.test", 8080));
        // base64("us@er:p:ss")
        assert_eq!(p.auth.as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
        assert!(!format!("{p:?}").contains("Basic"));
        let p = Proxy::parse("HTTP://[::1]:3128").unwrap().unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.addr().as_str()),
            ("::1", 3128, "[::1]:3128")
        );
        assert_eq!(Proxy::parse("proxy").unwrap().unwrap().port, 1080);
        assert_eq!(Proxy::parse("  ").unwrap(), None);
        for bad in [
            "socks5://h:1",
            "https://h:1",
            "h:x",
            "h:0",
            ":3128",
            "http://h:1/path",
            "[::1",
        ] {
            assert!(Proxy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_request() {
        let mut out = Vec::new();
        write_connect(&mut out, "::1", 443, Some("Basic eA=="));
        assert_eq!(
            out,
            b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic eA==\r\n\r\n"
        );
    }

    #[test]
    fn no_proxy() {
        let n = NoProxy::parse("example.com, .internal.test,10.0.0.1 ,[::1]");
        assert!(n.matches("example.com"));
        assert!(n.matches("WWW.Example.COM"));
        assert!(!n.matches("badexample.com"));
        assert!(n.matches("internal.test"));
        assert!(n.matches("a.b.internal.test"));
        assert!(n.matches("10.0.0.1"));
        assert!(!n.matches("10.0.0.10"));
        assert!(n.matches("::1"));
        assert!(n.matches("0:0::1"));
        // as curl: localhost is not special
        assert!(!n.matches("localhost"));
        assert!(!n.matches("127.0.0.1"));
        assert!(NoProxy::parse("*").matches("anything"));
        // CIDR ranges, IPv4 and IPv6; a bad one is ignored, not taken for a name.
        let r = NoProxy::parse("10.0.0.0/8, 192.168.1.0/24, [fd00::]/8, 172.16.0.0/40, 1.2.3.4/x");
        assert!(r.matches("10.200.3.4"));
        assert!(!r.matches("11.0.0.1"));
        assert!(r.matches("192.168.1.77"));
        assert!(!r.matches("192.168.2.1"));
        assert!(r.matches("fd12::1"));
        assert!(!r.matches("fe80::1"));
        assert!(!r.matches("172.16.0.1"));
        assert!(!r.matches("10.example"));
        assert!(NoProxy::parse("0.0.0.0/0").matches("8.8.8.8"));
        assert!(!NoProxy::parse("0.0.0.0/0").matches("::1"));
        assert!(NoProxy::parse("127.0.0.1/32").matches("127.0.0.1"));
        assert!(!NoProxy::parse("127.0.0.1/32").matches("127.0.0.2"));
        assert!(!NoProxy::parse("").matches("anything"));
        let cfg = ProxyConfig {
            plain: Proxy::parse("p:1").unwrap(),
            tls: None,
            no_proxy: NoProxy::parse("skip.test"),
        };
        assert!(cfg.for_target("x.test", false).is_some());
        assert!(cfg.for_target("x.test", true).is_none());
        assert!(cfg.for_target("a.skip.test", false).is_none());
    }
}
