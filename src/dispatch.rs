//! Type-erased protocol storage and the calls into user handlers.
//!
//! Each protocol lives in a [`Slot`] next to a slab of its sessions, so a connection only
//! stores a small session index, sessions of a zero-sized type cost no allocation, and the
//! handler call is one virtual call with no downcast.

use crate::protocol::{Close, Protocol, ProtocolEvent, Reason};
use crate::wsi::{ProtocolContext, Wsi};
use slab::Slab;
use std::any::Any;

pub(crate) trait ErasedProtocol {
    fn new_session(&mut self) -> u32;
    fn drop_session(&mut self, session: u32);
    fn call(&mut self, wsi: &mut Wsi<'_>, session: u32, reason: Reason<'_>) -> Result<(), Close>;
    fn call_protocol(&mut self, ctx: &mut ProtocolContext<'_>, event: ProtocolEvent) -> Result<(), Close>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn sessions(&self) -> usize;
}

pub(crate) struct Slot<P: Protocol> {
    pub(crate) proto: P,
    sessions: Slab<P::Session>,
}

impl<P: Protocol> Slot<P> {
    pub(crate) fn new(proto: P) -> Self {
        Slot {
            proto,
            sessions: Slab::new(),
        }
    }
}

impl<P: Protocol> ErasedProtocol for Slot<P> {
    fn new_session(&mut self) -> u32 {
        self.sessions.insert(P::Session::default()) as u32
    }

    fn drop_session(&mut self, session: u32) {
        self.sessions.try_remove(session as usize);
    }

    #[inline]
    fn call(&mut self, wsi: &mut Wsi<'_>, session: u32, reason: Reason<'_>) -> Result<(), Close> {
        match self.sessions.get_mut(session as usize) {
            Some(s) => self.proto.callback(wsi, s, reason),
            None => Ok(()),
        }
    }

    fn call_protocol(&mut self, ctx: &mut ProtocolContext<'_>, event: ProtocolEvent) -> Result<(), Close> {
        self.proto.protocol_callback(ctx, event)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        &mut self.proto
    }

    fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// A registered protocol: handler plus the settings of its `libwebsocket_protocols` entry.
pub(crate) struct Registered {
    pub(crate) name: String,
    pub(crate) rx_buffer_size: usize,
    pub(crate) id: u32,
    pub(crate) handler: Box<dyn ErasedProtocol>,
}
