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
