//! Listen sockets: address selection (IPv4/IPv6 literal or interface name) and socket
//! options, through socket2; and accepting connections from them.

use crate::connection::{flag, Conn, State};
use crate::context::Context;
use crate::proto::{Receiver, Role};
use crate::readiness::MAX_CONN_KEY;
use crate::reason::{ProtocolEvent, ProtocolId, Reason};
use crate::transport::Transport;
use crate::wsi::ProtocolContext;
use mio::net::TcpListener;
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

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

impl Context {
    /// Accepts every pending connection of listener `i`: `FILTER_NETWORK_CONNECTION`,
    /// registration, `WSI_CREATE` and `SERVER_NEW_CLIENT_INSTANTIATED`, and the handshake
    /// deadline.
    pub(crate) fn accept(&mut self, i: usize) {
        loop {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            let (sock, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the listener stays readable; try again next cycle.
                    log::warn!("accept: {e}");
                    return;
                }
            };
            let filter = ProtocolEvent::FilterNetworkConnection {
                peer,
                fd: sock.as_raw_fd(),
            };
            let mut pc = ProtocolContext {
                shared: &mut self.shared,
                protocol: ProtocolId(0),
            };
            if self.protocols[0].handler.call_protocol(&mut pc, filter).is_err() {
                log::debug!("{peer}: refused by FILTER_NETWORK_CONNECTION");
                continue;
            }
            // Linux copies TCP_NODELAY from the listener to accepted sockets (set in
            // `open`): one setsockopt per connection saved.
            #[cfg(not(target_os = "linux"))]
            let _ = sock.set_nodelay(true);
            let mut transport = match &self.tls {
                None => Transport::tcp(sock),
                Some(tls) => match Transport::tls(sock, tls) {
                    Ok(t) => t,
                    Err(e) => {
                        log::warn!("{peer}: TLS session: {e}");
                        continue;
                    }
                },
            };
            let entry = self.conns.vacant_entry();
            let k = entry.key();
            if k > MAX_CONN_KEY {
                return;
            }
            if let Err(e) = self.readiness.add_conn(transport.source(), k) {
                log::warn!("register: {e}");
                continue;
            }
            let gen = self.next_gen;
            self.next_gen = self.next_gen.wrapping_add(1);
            let deadline = self.timers.tick(Instant::now() + self.cfg.handshake_timeout);
            entry.insert(Conn {
                transport,
                out: Vec::new(),
                stash: Vec::new(),
                rx: Receiver::new(Role::Server, self.cfg.limits),
                http: None,
                deadline: Some(deadline),
                out_pos: 0,
                drained: 0,
                gen,
                session: self.protocols[0].handler.new_session(),
                proto: 0,
                flags: flag::MAY_READ | flag::TIMER_ARMED,
                state: State::Http,
            });
            self.timers.push(deadline, k, gen);
            log::debug!("{peer}: accepted as {k}.{gen}");
            if self.call(k, Reason::WsiCreate).is_err()
                || self.call(k, Reason::ServerNewClientInstantiated).is_err()
            {
                self.remove(k);
            }
        }
    }
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
