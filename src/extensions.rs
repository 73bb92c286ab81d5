//! Registered extensions ([`ContextBuilder::extension`](crate::ContextBuilder::extension)):
//! each one type-erased next to a slab of its sessions (as protocols are, see `dispatch`),
//! the negotiation of both roles over all of them, and `DESTROY`. The transforms are called
//! from the data path: `roles::websocket` (received messages) and `wsi` (sent ones).

use crate::proto::extension::{parse_extensions, Element, Extension, RxChunk, RxProgress, TxFrame};
use crate::proto::utf8::Utf8Validator;
use crate::proto::ProtocolError;
use slab::Slab;
use std::any::Any;

pub(crate) trait ErasedExtension {
    fn name(&self) -> &str;
    fn rsv(&self) -> u8;
    fn server_negotiate(&mut self, offers: &[Element<'_>]) -> Option<(u32, String)>;
    fn client_offer(&mut self) -> String;
    fn client_accept(&mut self, response: &Element<'_>) -> Result<u32, String>;
    fn destroy(&mut self, session: u32);
    fn rx(&mut self, session: u32, chunk: RxChunk<'_>, out: &mut [u8]) -> Result<RxProgress, ProtocolError>;
    fn tx(&mut self, session: u32, frame: TxFrame<'_>, out: &mut Vec<u8>) -> Result<bool, ProtocolError>;
    fn tx_bound(&self, len: usize) -> usize;
    fn session_any(&mut self, session: u32) -> Option<&mut dyn Any>;
    /// The `TypeId` of the registered extension's type.
    fn ext_type(&self) -> std::any::TypeId;
}

struct ExtSlot<E: Extension> {
    ext: E,
    sessions: Slab<E::Session>,
}

fn lost() -> ProtocolError {
    ProtocolError::new(
        crate::proto::close::code::INTERNAL_ERROR,
        "extension session lost",
    )
}

impl<E: Extension> ErasedExtension for ExtSlot<E> {
    fn name(&self) -> &str {
        self.ext.name()
    }

    fn rsv(&self) -> u8 {
        self.ext.rsv() & 7
    }

    fn server_negotiate(&mut self, offers: &[Element<'_>]) -> Option<(u32, String)> {
        let (s, response) = self.ext.server_negotiate(offers)?;
        Some((self.sessions.insert(s) as u32, response))
    }

    fn client_offer(&mut self) -> String {
        self.ext.client_offer()
    }

    fn client_accept(&mut self, response: &Element<'_>) -> Result<u32, String> {
        let s = self.ext.client_accept(response)?;
        Ok(self.sessions.insert(s) as u32)
    }

    fn destroy(&mut self, session: u32) {
        if let Some(s) = self.sessions.try_remove(session as usize) {
            self.ext.destroy(s);
        }
    }

    fn rx(&mut self, session: u32, chunk: RxChunk<'_>, out: &mut [u8]) -> Result<RxProgress, ProtocolError> {
        let s = self.sessions.get_mut(session as usize).ok_or_else(lost)?;
        self.ext.rx(s, chunk, out)
    }

    fn tx(&mut self, session: u32, frame: TxFrame<'_>, out: &mut Vec<u8>) -> Result<bool, ProtocolError> {
        let s = self.sessions.get_mut(session as usize).ok_or_else(lost)?;
        self.ext.tx(s, frame, out)
    }

    fn tx_bound(&self, len: usize) -> usize {
        self.ext.tx_bound(len)
    }

    fn session_any(&mut self, session: u32) -> Option<&mut dyn Any> {
        self.sessions.get_mut(session as usize).map(|s| s as &mut dyn Any)
    }

    fn ext_type(&self) -> std::any::TypeId {
        std::any::TypeId::of::<E>()
    }
}

/// One extension negotiated on a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExtRef {
    /// Index in [`Extensions::list`].
    pub(crate) ext: u16,
    /// Its RSV bits.
    pub(crate) rsv: u8,
    pub(crate) session: u32,
}

/// A connection's extensions (boxed behind one pointer in `Conn`, absent without any).
#[derive(Debug)]
pub(crate) struct ConnExt {
    /// Negotiated, in the order they apply (registration order on a server, the response's
    /// on a client).
    pub(crate) on: Vec<ExtRef>,
    /// 1 + the index in `on` of the extension transforming the outgoing message, 0: none.
    pub(crate) tx: u8,
    /// The outgoing message is binary.
    pub(crate) tx_binary: bool,
    /// The incoming transformed message has delivered its first piece.
    pub(crate) rx_started: bool,
    /// Bytes the incoming transformed message has delivered (against the size limit).
    pub(crate) rx_total: u64,
    /// The incoming transformed text message's UTF-8 so far.
    pub(crate) utf8: Utf8Validator,
}

impl ConnExt {
    fn new(on: Vec<ExtRef>) -> Box<ConnExt> {
        Box::new(ConnExt {
            on,
            tx: 0,
            tx_binary: false,
            rx_started: false,
            rx_total: 0,
            utf8: Utf8Validator::new(),
        })
    }

    /// The union of the negotiated extensions' RSV bits, for the decoder.
    pub(crate) fn rsv(&self) -> u8 {
        self.on.iter().fold(0, |a, r| a | r.rsv)
    }
}

/// The context's extensions, in registration (offer) order, and the buffers every
/// connection uses in turn (a frame is transformed, or a piece of a received message, within
/// one call, so one of each is enough).
#[derive(Default)]
pub(crate) struct Extensions {
    pub(crate) list: Vec<Option<Box<dyn ErasedExtension>>>,
    /// A frame's transformed payload, before its header is written.
    pub(crate) tx: Vec<u8>,
    /// A piece of a received message, transformed, for `RECEIVE`.
    pub(crate) rx: Vec<u8>,
}

impl Extensions {
    pub(crate) fn register<E: Extension>(&mut self, ext: E) {
        self.list.push(Some(Box::new(ExtSlot {
            ext,
            sessions: Slab::new(),
        })));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn get(&mut self, i: u16) -> Option<&mut Box<dyn ErasedExtension>> {
        self.list.get_mut(i as usize).and_then(Option::as_mut)
    }

    /// The server's negotiation (`CONSTRUCT`): for each registered extension the client
    /// offered, the first of its offers it accepts; one whose RSV bits a previous one took
    /// is declined. Returns what was negotiated (indices in `list`, with their response
    /// elements), for `CONFIRM_EXTENSION_OKAY` to thin out.
    pub(crate) fn server_negotiate(&mut self, header: &str) -> Vec<(ExtRef, String)> {
        let els = parse_extensions(header);
        let mut got: Vec<(ExtRef, String)> = Vec::new();
        let mut used = 0u8;
        for (i, slot) in self.list.iter_mut().enumerate() {
            let Some(ext) = slot.as_mut() else { continue };
            let offers: Vec<Element<'_>> = els
                .iter()
                .filter(|e| e.name.eq_ignore_ascii_case(ext.name()))
                .cloned()
                .collect();
            if offers.is_empty() {
                continue;
            }
            let rsv = ext.rsv();
            if rsv & used != 0 {
                log::debug!("extension {} declined: its RSV bits are taken", ext.name());
                continue;
            }
            if let Some((session, response)) = ext.server_negotiate(&offers) {
                used |= rsv;
                got.push((
                    ExtRef {
                        ext: i as u16,
                        rsv,
                        session,
                    },
                    response,
                ));
            } else {
                log::debug!("extension {}: every offer declined", ext.name());
            }
        }
        got
    }

    /// The client's check of the server's response to an offer of the extensions
    /// `offered` (indices in `list`): every element must name one of them, once, with
    /// RSV bits no other took, and be accepted by it (`CLIENT_CONSTRUCT`). On an error the
    /// sessions made so far are destroyed.
    pub(crate) fn client_accept(
        &mut self,
        offered: &[u16],
        header: Option<&str>,
    ) -> Result<Option<Box<ConnExt>>, String> {
        let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
            return Ok(None);
        };
        let mut on: Vec<ExtRef> = Vec::new();
        let r = self.client_accept_into(offered, header, &mut on);
        if let Err(e) = r {
            for x in on {
                if let Some(ext) = self.get(x.ext) {
                    ext.destroy(x.session);
                }
            }
            return Err(e);
        }
        Ok((!on.is_empty()).then(|| ConnExt::new(on)))
    }

    fn client_accept_into(
        &mut self,
        offered: &[u16],
        header: &str,
        on: &mut Vec<ExtRef>,
    ) -> Result<(), String> {
        let mut used = 0u8;
        for el in parse_extensions(header) {
            let found = offered.iter().copied().find(|&i| {
                self.list[i as usize]
                    .as_ref()
                    .is_some_and(|e| e.name().eq_ignore_ascii_case(el.name))
            });
            let Some(i) = found else {
                return Err(format!(
                    "the server named extension {:?}, which we did not offer",
                    el.name
                ));
            };
            if on.iter().any(|x| x.ext == i) {
                return Err(format!("the server accepted extension {:?} twice", el.name));
            }
            let ext = self.get(i).expect("offered");
            let rsv = ext.rsv();
            if rsv & used != 0 {
                return Err(format!(
                    "the server accepted extension {:?}, whose RSV bits another one it accepted uses",
                    el.name
                ));
            }
            used |= rsv;
            let session = ext.client_accept(&el)?;
            on.push(ExtRef { ext: i, rsv, session });
        }
        Ok(())
    }

    /// The connection's extensions, as a `ConnExt` (`None` if none is left).
    pub(crate) fn conn_ext(on: Vec<ExtRef>) -> Option<Box<ConnExt>> {
        (!on.is_empty()).then(|| ConnExt::new(on))
    }

    /// `DESTROY` of every extension session of a connection that is gone.
    pub(crate) fn destroy(&mut self, ce: &ConnExt) {
        for x in &ce.on {
            if let Some(ext) = self.get(x.ext) {
                ext.destroy(x.session);
            }
        }
    }

    /// The negotiated extensions' names, `", "`-separated (the browser's `ws.extensions`).
    pub(crate) fn names(&self, ce: &ConnExt) -> String {
        let mut s = String::new();
        for x in &ce.on {
            if let Some(Some(ext)) = self.list.get(x.ext as usize) {
                if !s.is_empty() {
                    s.push_str(", ");
                }
                s.push_str(ext.name());
            }
        }
        s
    }
}
