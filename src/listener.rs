//! Listen sockets: address selection (IPv4/IPv6 literal or interface name) and socket
//! options, through socket2.

use mio::net::TcpListener;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Opens a non-blocking listener on `port` (0 = any free port).
///
/// `interface` is an IP literal (IPv4 or IPv6), an interface name (bound with
/// `SO_BINDTODEVICE`, Linux only, which needs `CAP_NET_RAW`), or `None` for all
/// interfaces (a dual-stack IPv6 socket where the system allows, else IPv4).
pub(crate) fn bind(interface: Option<&str>, port: u16, backlog: i32) -> io::Result<TcpListener> {
    let (addr, device) = match interface {
        None => (SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), None),
        Some(s) => match s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            Ok(ip) => (SocketAddr::new(ip, port), None),
            Err(_) => (SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), Some(s)),
        },
    };
    let sock = match open(addr, device, backlog) {
        Ok(s) => s,
        // No IPv6 on this host: fall back to IPv4 for the wildcard.
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            log::debug!("IPv6 wildcard bind failed ({e}), using IPv4");
            open(SocketAddr::from(([0, 0, 0, 0], port)), device, backlog)?
        }
        Err(e) => return Err(e),
    };
    Ok(TcpListener::from_std(sock.into()))
}

fn open(addr: SocketAddr, device: Option<&str>, backlog: i32) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(SockProtocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        sock.set_only_v6(false)?;
    }
    sock.set_reuse_address(true)?;
    if let Some(dev) = device {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        sock.bind_device(Some(dev.as_bytes()))?;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("binding to interface {dev} needs Linux"),
        ));
    }
    // Inherited by accepted sockets on Linux, so they need no setsockopt of their own.
    sock.set_tcp_nodelay(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    Ok(sock)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The accept path relies on this: it no longer sets TCP_NODELAY itself.
    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let l = bind(Some("127.0.0.1"), 0, 16).unwrap();
        let addr = l.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
