//! A small blocking WebSocket client for scripts and tests, in the shape of the reference's
//! ws/wss client API: `connect(url)`, then `send_text` / `send_binary` / `ping` /
//! `receive` / `close`.
//!
//! It is not a second implementation: it owns a [`Context`] with no listener and one
//! outgoing connection on the client role (`src/roles/client.rs`), and each call runs
//! `service()` until what it waits for has happened.

use crate::client::{ClientConnect, SslMode};
use crate::context::Context;
use crate::protocol::Protocol;
use crate::reason::{Close, ConnId, ProtocolId, Reason};
use crate::wsi::{WriteError, WriteProtocol, Wsi};
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A whole message received by a [`BlockingClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A pong (the answer to [`BlockingClient::ping`]).
    Pong(Vec<u8>),
}

#[derive(Default)]
struct Inner {
    established: bool,
    error: Option<String>,
    closed: Option<(Option<u16>, String)>,
    incoming: VecDeque<Message>,
    partial: Vec<u8>,
    partial_binary: bool,
    outgoing: VecDeque<(WriteProtocol, Vec<u8>)>,
    close: Option<(u16, String)>,
    id: Option<ConnId>,
    /// The extensions negotiated (`wsi.extensions()` at ESTABLISHED).
    extensions: String,
}

/// The client's state lives in its protocol handler, which the context owns; the
/// [`BlockingClient`] reads it between `service()` calls.
#[derive(Default)]
struct Handler(Inner);

impl Protocol for Handler {
    type Session = ();

    fn callback(&mut self, wsi: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
        let s = &mut self.0;
        match reason {
            Reason::ClientEstablished => {
                s.established = true;
                s.id = Some(wsi.id());
                s.extensions = wsi.extensions();
                if !s.outgoing.is_empty() || s.close.is_some() {
                    wsi.callback_on_writable();
                }
            }
            Reason::ClientConnectionError { reason } => s.error = Some(reason.to_owned()),
            Reason::ClientReceive {
                data,
                binary,
                first,
                last,
                ..
            } => {
                if first {
                    s.partial.clear();
                    s.partial_binary = binary;
                }
                s.partial.extend_from_slice(data);
                if last {
                    let body = std::mem::take(&mut s.partial);
                    let m = if s.partial_binary {
                        Message::Binary(body)
                    } else {
                        // The decoder validated the UTF-8 already.
                        Message::Text(String::from_utf8(body).map_err(|_| Close::new(1007, "invalid UTF-8"))?)
                    };
                    s.incoming.push_back(m);
                }
            }
            Reason::ClientReceivePong { data } => s.incoming.push_back(Message::Pong(data.to_vec())),
            Reason::ClientWriteable => {
                while let Some((wp, data)) = s.outgoing.pop_front() {
                    match wsi.write(&data, wp) {
                        Ok(()) => {}
                        Err(WriteError::BackPressure) => {
                            s.outgoing.push_front((wp, data));
                            wsi.callback_on_writable();
                            return Ok(());
                        }
                        Err(e) => return Err(Close::new(1011, e.to_string())),
                    }
                }
                if let Some((code, reason)) = s.close.take() {
                    wsi.close(code, &reason);
                }
            }
            Reason::Closed { code, reason } => {
                s.closed = Some((code, String::from_utf8_lossy(reason).into_owned()));
            }
            _ => {}
        }
        Ok(())
    }
}

/// A blocking WebSocket client (ws:// and wss://).
///
/// ```no_run
/// use wsreactor::blocking::{BlockingClient, Message};
/// let mut c = BlockingClient::connect("ws://127.0.0.1:9001/")?;
/// c.send_text("hello")?;
/// assert_eq!(c.receive()?, Some(Message::Text("hello".into())));
/// c.close()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct BlockingClient {
    ctx: Context,
    proto: ProtocolId,
    timeout: Duration,
}

impl BlockingClient {
    /// Connects to a `ws://` or `wss://` URL (certificate verified against the web PKI) and
    /// waits for the handshake, at most 10 s.
    pub fn connect(url: &str) -> io::Result<BlockingClient> {
        let info = ClientConnect::url(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        BlockingClient::connect_with(info, Duration::from_secs(10))
    }

    /// [`connect`](Self::connect) to a `wss://` URL accepting a self-signed certificate.
    pub fn connect_insecure(url: &str) -> io::Result<BlockingClient> {
        let info = ClientConnect::url(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let info = if info.ssl_mode() == SslMode::Plain {
            info
        } else {
            info.ssl(SslMode::AllowSelfSigned)
        };
        BlockingClient::connect_with(info, Duration::from_secs(10))
    }

    /// Connects as `info` says and waits for the handshake, at most `timeout` (also the
    /// limit of each later blocking call). [`options`](Self::options) gives the other
    /// settings.
    pub fn connect_with(info: ClientConnect, timeout: Duration) -> io::Result<BlockingClient> {
        BlockingClient::options().timeout(timeout).connect(info)
    }

    /// The extensions the server accepted, as [`Wsi::extensions`] gives them (`""`: none).
    pub fn extensions(&self) -> String {
        self.inner().extensions.clone()
    }

    /// Settings beyond the URL: the timeout, a CA file to verify `wss://` servers against,
    /// permessage-deflate.
    ///
    /// ```no_run
    /// use wsreactor::blocking::BlockingClient;
    /// use std::time::Duration;
    /// let c = BlockingClient::options()
    ///     .ca_file("ca.pem")
    ///     .timeout(Duration::from_secs(3))
    ///     .connect_url("wss://localhost:9001/")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn options() -> BlockingOptions {
        BlockingOptions {
            timeout: Duration::from_secs(10),
            ca_file: None,
            deflate: None,
        }
    }

    fn inner(&self) -> &Inner {
        // The context was built with this one protocol, of this type.
        &self
            .ctx
            .protocol_ref::<Handler>(self.proto)
            .expect("the client's protocol")
            .0
    }

    fn inner_mut(&mut self) -> &mut Inner {
        &mut self
            .ctx
            .protocol_mut::<Handler>(self.proto)
            .expect("the client's protocol")
            .0
    }

    fn wait(&mut self, done: impl Fn(&Inner) -> bool) -> io::Result<()> {
        let end = Instant::now() + self.timeout;
        while !done(self.inner()) {
            let now = Instant::now();
            if now >= end {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            self.ctx.service((end - now).min(Duration::from_millis(100)))?;
        }
        Ok(())
    }

    fn queue(&mut self, wp: WriteProtocol, data: &[u8]) -> io::Result<()> {
        {
            let s = self.inner_mut();
            if s.closed.is_some() || s.error.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the connection is closed",
                ));
            }
            s.outgoing.push_back((wp, data.to_vec()));
        }
        self.kick()
    }

    fn kick(&mut self) -> io::Result<()> {
        if let Some(id) = self.inner().id {
            self.ctx.callback_on_writable(id);
        }
        // Run the loop until the queue is handed to the connection.
        self.wait(|s| (s.outgoing.is_empty() && s.close.is_none()) || s.closed.is_some())
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.queue(WriteProtocol::Text, text.as_bytes())
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.queue(WriteProtocol::Binary, data)
    }

    /// Sends a ping (at most 125 bytes); its pong comes back through [`receive`](Self::receive).
    pub fn ping(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > 125 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a ping carries at most 125 bytes",
            ));
        }
        self.queue(WriteProtocol::Ping, data)
    }

    /// The next whole message, or `None` once the connection is closed (see
    /// [`close_reason`](Self::close_reason)). Waits at most the timeout.
    pub fn receive(&mut self) -> io::Result<Option<Message>> {
        self.wait(|s| !s.incoming.is_empty() || s.closed.is_some())?;
        Ok(self.inner_mut().incoming.pop_front())
    }

    /// The close code and reason the server sent, once closed.
    pub fn close_reason(&self) -> Option<(Option<u16>, String)> {
        self.inner().closed.clone()
    }

    /// Sends a close frame (1000) and waits for the server's, then for the connection to
    /// end.
    pub fn close(mut self) -> io::Result<()> {
        self.close_with(1000, "")
    }

    /// [`close`](Self::close) with a code and reason.
    pub fn close_with(&mut self, code: u16, reason: &str) -> io::Result<()> {
        if self.inner().closed.is_some() {
            return Ok(());
        }
        self.inner_mut().close = Some((code, reason.to_owned()));
        self.kick()?;
        self.wait(|s| s.closed.is_some())?;
        // Let the connection finish (the server closes the TCP connection first).
        let end = Instant::now() + self.timeout;
        while self.ctx.connection_count() > 0 && Instant::now() < end {
            self.ctx.service(Duration::from_millis(50))?;
        }
        Ok(())
    }
}

/// The settings of a [`BlockingClient`], from [`BlockingClient::options`].
#[derive(Debug, Clone)]
pub struct BlockingOptions {
    timeout: Duration,
    ca_file: Option<PathBuf>,
    deflate: Option<crate::proto::deflate::DeflateOptions>,
}

impl BlockingOptions {
    /// The limit of the handshake (connect, proxy, TLS and HTTP upgrade together) and of
    /// each later blocking call. Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Verifies `wss://` servers against the CA certificates of this PEM file instead of
    /// the web PKI roots (the context's
    /// [`ssl_ca_filepath`](crate::ContextBuilder::ssl_ca_filepath)). With
    /// [`SslMode::AllowSelfSigned`] nothing is verified and the file is not used.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Offers permessage-deflate with these settings
    /// ([`ContextBuilder::permessage_deflate`](crate::ContextBuilder::permessage_deflate));
    /// [`BlockingClient::extensions`] says whether the server took it.
    pub fn permessage_deflate(mut self, opts: crate::proto::deflate::DeflateOptions) -> Self {
        self.deflate = Some(opts);
        self
    }

    /// Connects to a `ws://` or `wss://` URL.
    pub fn connect_url(self, url: &str) -> io::Result<BlockingClient> {
        let info = ClientConnect::url(url).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.connect(info)
    }

    /// Connects as `info` says and waits for the handshake.
    pub fn connect(self, info: ClientConnect) -> io::Result<BlockingClient> {
        let mut b = Context::builder()
            .no_listen()
            .handshake_timeout(self.timeout)
            .connect_timeout(self.timeout)
            .protocol("wsreactor-blocking-client", Handler::default());
        if let Some(ca) = self.ca_file {
            b = b.ssl_ca_filepath(ca);
        }
        if let Some(d) = self.deflate {
            b = b.permessage_deflate(d);
        }
        let mut ctx = b.build()?;
        let proto = ctx
            .protocol_by_name("wsreactor-blocking-client")
            .expect("registered above");
        ctx.connect(info.bind("wsreactor-blocking-client"))?;
        let mut c = BlockingClient {
            ctx,
            proto,
            timeout: self.timeout,
        };
        c.wait(|s| s.established || s.error.is_some())?;
        if let Some(e) = c.inner_mut().error.take() {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, e));
        }
        Ok(c)
    }
}
