//! The protocol trait: the user-facing side of dispatch.
//!
//! A protocol is what libwebsockets calls a `struct libwebsocket_protocols` entry: a name
//! (the `Sec-WebSocket-Protocol` it answers to), a handler, a per-session data type and an
//! rx buffer size. Its handler gets every callback reason of the connections bound to it,
//! as [`Reason`]s through [`Protocol::callback`], and the context-wide ones, which concern
//! no single connection, as [`ProtocolEvent`]s through [`Protocol::protocol_callback`].

use crate::reason::{Close, ProtocolEvent, Reason};
use crate::wsi::{ProtocolContext, Wsi};

/// A protocol handler (libwebsockets: the `callback` of a protocol).
///
/// ```
/// use wsreactor::{Close, Protocol, Reason, Wsi};
///
/// /// Counts the messages each client sends and answers with the count.
/// #[derive(Default)]
/// struct Counter;
///
/// impl Protocol for Counter {
///     type Session = u64; // per-session data: created on connect, dropped on close
///
///     fn callback(&mut self, wsi: &mut Wsi<'_>, count: &mut u64, reason: Reason<'_>) -> Result<(), Close> {
///         if let Reason::Receive { last: true, .. } = reason {
///             *count += 1;
///             wsi.send_text(&count.to_string())?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Protocol: 'static {
    /// Per-session user data (libwebsockets' `per_session_data_size`), created with
    /// `Default` when a connection is bound to this protocol and dropped after the last
    /// callback of that connection.
    type Session: Default + 'static;

    /// Called for each callback reason of a connection bound to this protocol.
    ///
    /// Returning an error closes this connection (with the error's close code on a
    /// WebSocket, or by dropping an HTTP connection) and no other; for the `Filter*`
    /// reasons (and `HTTP`) an error refuses the request, with the status of
    /// [`Close::http_status`] or a plain 403. A full send queue passed on with `?`
    /// ([`WriteError::BackPressure`](crate::WriteError::BackPressure)) is not a close: one
    /// WRITEABLE callback follows once the queue has drained (see [`Close`]). A panic is
    /// caught: the connection is closed with 1011 and one error is logged; the context and
    /// every other connection go on.
    fn callback(
        &mut self,
        wsi: &mut Wsi<'_>,
        session: &mut Self::Session,
        reason: Reason<'_>,
    ) -> Result<(), Close>;

    /// Whether whole messages that arrive in one piece may come through
    /// [`receive_with_nul`](Self::receive_with_nul), followed by a 0 byte (default false).
    /// For handing messages to C as NUL-terminated strings without copying them.
    const RECEIVE_WITH_NUL: bool = false;

    /// With [`RECEIVE_WITH_NUL`](Self::RECEIVE_WITH_NUL): a whole message that arrived in
    /// one piece, as `msg` = its payload followed by one 0 byte (so the payload is
    /// `&msg[..msg.len() - 1]`). It takes the place of the
    /// `Reason::Receive { first: true, last: true, .. }` callback for a server-side,
    /// uncompressed message that was one frame within one read with more bytes behind it
    /// in the read buffer: the 0 is written over the first of those for the call, and put
    /// back after it. Every other message (fragmented, compressed, split over reads, or
    /// ending the read) comes as [`Reason::Receive`], so a protocol must handle both. The
    /// [`Wsi`]'s receive accessors answer as for `Receive` (final, not binary or binary,
    /// nothing remaining).
    ///
    /// The default passes the payload on to [`callback`](Self::callback) as that
    /// `Receive`.
    ///
    /// ```
    /// use wsreactor::{Close, Protocol, Reason, Wsi};
    ///
    /// /// Hands every text message to a C-style consumer that wants a NUL at its end.
    /// struct CStrings(Vec<usize>);
    ///
    /// impl Protocol for CStrings {
    ///     type Session = ();
    ///     const RECEIVE_WITH_NUL: bool = true;
    ///
    ///     fn receive_with_nul(&mut self, _: &mut Wsi<'_>, _: &mut (), msg: &[u8], _: bool) -> Result<(), Close> {
    ///         let c = std::ffi::CStr::from_bytes_with_nul(msg).map_err(|_| Close::new(1007, "NUL inside"))?;
    ///         self.0.push(c.to_bytes().len());
    ///         Ok(())
    ///     }
    ///
    ///     fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), reason: Reason<'_>) -> Result<(), Close> {
    ///         if let Reason::Receive { data, .. } = reason {
    ///             // (a real one would collect pieces until `last` and add the NUL itself)
    ///             self.0.push(data.len());
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn receive_with_nul(
        &mut self,
        wsi: &mut Wsi<'_>,
        session: &mut Self::Session,
        msg: &[u8],
        binary: bool,
    ) -> Result<(), Close> {
        let data = msg.split_last().map_or(msg, |(_, payload)| payload);
        let reason = Reason::Receive {
            data,
            binary,
            first: true,
            last: true,
            remaining: 0,
        };
        self.callback(wsi, session, reason)
    }

    /// Called for context-wide events that concern no single connection: protocol init and
    /// destroy, `cancel_service`, and (for the first protocol) new TCP connections.
    fn protocol_callback(
        &mut self,
        ctx: &mut ProtocolContext<'_>,
        event: ProtocolEvent,
    ) -> Result<(), Close> {
        let _ = (ctx, event);
        Ok(())
    }
}
