//! The kernel's implementation of the drivers' environment traits
//! ([`Events`], [`PeerProbe`], [`VchanEnv`]): event channels, the grant
//! table and XenStore, for the demo ring and vchan drivers (guest only).

extern crate alloc;

use alloc::vec::Vec;

use crate::drivers::vchan::{EnvError, PortState, VchanEnv};
use crate::event::{self, Events, PeerProbe, XenEvents};
use crate::grant_table::{self, ForeignMapping, Grant, GrantRef};
use crate::hypercall::EvtchnState;
use crate::mm;
use crate::time;
use crate::xenstore::{self, Error, Perm, TxId, XsError};

/// The kernel's implementation of the driver traits.
#[derive(Debug, Default)]
pub struct XenChan;

impl Events for XenChan {
    fn notify(&self, port: u32) {
        XenEvents.notify(port)
    }
    fn clear(&self, port: u32) {
        XenEvents.clear(port)
    }
    fn wait(&self, port: u32, deadline_ns: u64) {
        XenEvents.wait(port, deadline_ns)
    }
    fn now_ns(&self) -> u64 {
        time::now_ns()
    }
}

impl PeerProbe for XenChan {
    /// The remote end closed → our port fell back to unbound.
    fn peer_gone(&self, port: u32) -> bool {
        !matches!(event::status(port), Ok(EvtchnState::Interdomain { .. }))
    }
}

/// [`XenChan`] for a port we offered (`alloc_unbound`): it is unbound
/// until the peer binds, which is "not connected yet", not "gone". Gone =
/// seen interdomain once, then no longer.
#[derive(Debug, Default)]
pub struct OfferedPort {
    seen: core::cell::Cell<bool>,
}

impl Events for OfferedPort {
    fn notify(&self, port: u32) {
        XenChan.notify(port)
    }
    fn clear(&self, port: u32) {
        XenChan.clear(port)
    }
    fn wait(&self, port: u32, deadline_ns: u64) {
        // Until the peer was seen: probe before every sleep, so a peer that
        // binds, works and dies between two liveness checks is still seen.
        if !self.seen.get() {
            let _ = self.peer_gone(port);
        }
        XenChan.wait(port, deadline_ns)
    }
    fn now_ns(&self) -> u64 {
        XenChan.now_ns()
    }
}

impl PeerProbe for OfferedPort {
    fn peer_gone(&self, port: u32) -> bool {
        if XenChan.peer_gone(port) {
            self.seen.get()
        } else {
            self.seen.set(true);
            false
        }
    }
}

fn xs_err(what: &'static str) -> impl Fn(xenstore::StoreError) -> EnvError {
    move |e| EnvError::new(what, e)
}

impl VchanEnv for XenChan {
    type Share = Grant;
    type Map = ForeignMapping;

    fn self_domid(&mut self) -> Result<u16, EnvError> {
        let d =
            xenstore::with(|c| c.read_u64(TxId::NONE, "domid")).map_err(xs_err("read domid"))?;
        u16::try_from(d).map_err(|_| EnvError::new("read domid", d))
    }

    fn share_page(&mut self, domid: u16) -> Result<(u32, Grant), EnvError> {
        let page = mm::alloc_shared_page().map_err(|e| EnvError::new("alloc page", e))?;
        let g =
            grant_table::grant_page(domid, &page, false).map_err(|e| EnvError::new("grant", e))?;
        Ok((g.gref().0, g))
    }

    fn unshare_page(&mut self, g: Grant) {
        // Still mapped by the peer → parked on the deferred list, freed by
        // poll_deferred once it unmaps.
        let _ = grant_table::revoke(g);
    }

    fn map_page(
        &mut self,
        domid: u16,
        gref: u32,
        readonly: bool,
    ) -> Result<ForeignMapping, EnvError> {
        grant_table::map_grant(domid, GrantRef(gref), readonly)
            .map_err(|e| EnvError::new("map_grant_ref", e))
    }

    fn unmap_page(&mut self, m: ForeignMapping) {
        let _ = grant_table::unmap(m);
    }

    fn alloc_unbound(&mut self, remote: u16) -> Result<u32, EnvError> {
        event::alloc_unbound(remote).map_err(|e| EnvError::new("alloc_unbound", e))
    }

    fn bind_interdomain(&mut self, remote: u16, port: u32) -> Result<u32, EnvError> {
        event::bind_interdomain(remote, port).map_err(|e| EnvError::new("bind_interdomain", e))
    }

    fn close_port(&mut self, port: u32) {
        let _ = event::close(port);
    }

    fn port_state(&mut self, port: u32) -> PortState {
        match event::status(port) {
            Ok(EvtchnState::Interdomain { .. }) => PortState::Interdomain,
            Ok(EvtchnState::Unbound { .. }) => PortState::Unbound,
            Ok(_) | Err(_) => PortState::Closed,
        }
    }

    fn xs_publish(&mut self, entries: &[(&str, &str)], perms: &[Perm]) -> Result<(), EnvError> {
        xenstore::with(|c| {
            c.transaction(|c, tx| {
                for (k, v) in entries {
                    c.write(tx, k, v.as_bytes())?;
                    c.set_perms(tx, k, perms)?;
                }
                Ok(())
            })
        })
        .map_err(xs_err("publish"))
    }

    fn xs_read(&mut self, path: &str) -> Result<Option<Vec<u8>>, EnvError> {
        match xenstore::with(|c| c.read(TxId::NONE, path)) {
            Ok(v) => Ok(Some(v)),
            Err(xenstore::StoreError::Xs(Error::Xs(XsError::ENOENT | XsError::EACCES))) => Ok(None),
            Err(e) => Err(EnvError::new("read", e)),
        }
    }

    fn xs_rm(&mut self, path: &str) {
        let _ = xenstore::with(|c| c.rm(TxId::NONE, path));
    }
}
