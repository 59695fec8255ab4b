//! The shared byte ring: `struct xenstore_domain_interface`
//! (xen/include/public/io/xs_wire.h), two 1024-byte byte rings with
//! free-running u32 indices; the peer's index is validated
//! (`prod − cons ≤ 1024`) before any byte is copied.

use super::wire::Error;
use crate::shared::{mb, rmb, wmb, SharedMem};
use crate::xen_abi::xs_wire;
pub use crate::xen_abi::xs_wire::XENSTORE_RING_SIZE;

/// The guest side of the XenStore interface page, over a view valid for
/// `'a`.
pub struct XsRing<'a> {
    mem: SharedMem<'a>,
}

/// `MASK_XENSTORE_IDX`.
pub(super) fn mask(i: u32) -> usize {
    (i as usize) & (XENSTORE_RING_SIZE - 1)
}

impl<'a> XsRing<'a> {
    /// Wraps the interface page (PV `start_info.store_mfn`, PVH
    /// `HVM_PARAM_STORE_PFN`).
    pub fn new(mem: SharedMem<'a>) -> Result<XsRing<'a>, Error> {
        if mem.len() < xs_wire::INTERFACE_SIZE {
            return Err(Error::BadRingPage);
        }
        Ok(XsRing { mem })
    }

    /// `server_features` (1 = XENSTORE_SERVER_FEATURE_RECONNECTION, 2 = ERROR).
    pub fn server_features(&self) -> u32 {
        self.mem.load_u32(xs_wire::SERVER_FEATURES)
    }

    /// `connection` (0 connected, 1 reconnect in progress).
    pub fn connection(&self) -> u32 {
        self.mem.load_u32(xs_wire::CONNECTION)
    }

    /// `error` (0 none, 1 COMM, 2 RINGIDX, 3 PROTO).
    pub fn error(&self) -> u32 {
        self.mem.load_u32(xs_wire::ERROR)
    }

    /// Free bytes in the request ring (what [`write`](Self::write) would
    /// take now).
    pub fn space(&self) -> Result<usize, Error> {
        let cons = self.mem.load_u32(xs_wire::REQ_CONS);
        let prod = self.mem.load_u32(xs_wire::REQ_PROD);
        let used = prod.wrapping_sub(cons);
        if used as usize > XENSTORE_RING_SIZE {
            return Err(Error::BadRingIndex { prod, cons });
        }
        Ok(XENSTORE_RING_SIZE - used as usize)
    }

    /// Copies as much of `data` as fits into the request ring; returns the
    /// number of bytes queued (0 if full). Caller notifies if > 0.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        let cons = self.mem.load_u32(xs_wire::REQ_CONS);
        let prod = self.mem.load_u32(xs_wire::REQ_PROD);
        mb(); // read cons before overwriting the bytes it frees
        let used = prod.wrapping_sub(cons);
        if used as usize > XENSTORE_RING_SIZE {
            return Err(Error::BadRingIndex { prod, cons });
        }
        let n = data.len().min(XENSTORE_RING_SIZE - used as usize);
        let mut done = 0;
        while done < n {
            let off = mask(prod.wrapping_add(done as u32));
            let chunk = (n - done).min(XENSTORE_RING_SIZE - off);
            self.mem
                .copy_in(xs_wire::REQ + off, &data[done..done + chunk]);
            done += chunk;
        }
        wmb(); // bytes before the index
        self.mem
            .store_u32(xs_wire::REQ_PROD, prod.wrapping_add(n as u32));
        Ok(n)
    }

    /// Copies available response bytes into `buf`; returns the count (0 if
    /// none). Caller notifies if > 0 (xenstored may be waiting for space).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let prod = self.mem.load_u32(xs_wire::RSP_PROD);
        rmb(); // index before bytes
        let cons = self.mem.load_u32(xs_wire::RSP_CONS);
        let avail = prod.wrapping_sub(cons);
        if avail as usize > XENSTORE_RING_SIZE {
            return Err(Error::BadRingIndex { prod, cons });
        }
        let n = buf.len().min(avail as usize);
        let mut done = 0;
        while done < n {
            let off = mask(cons.wrapping_add(done as u32));
            let chunk = (n - done).min(XENSTORE_RING_SIZE - off);
            self.mem
                .copy_out(xs_wire::RSP + off, &mut buf[done..done + chunk]);
            done += chunk;
        }
        mb(); // finish reading before releasing the space
        self.mem
            .store_u32(xs_wire::RSP_CONS, cons.wrapping_add(n as u32));
        Ok(n)
    }
}
