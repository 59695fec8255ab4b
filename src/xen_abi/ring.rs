//! The shared-ring header of `xen/include/public/io/ring.h`
//! (`DEFINE_RING_TYPES`: `struct *_sring`), common to blkif, netif and the
//! demo ring. The slots (`ring[]`, a union of request and response) follow
//! it; their layout depends on the protocol ([`crate::ring`]).

use core::mem::{offset_of, size_of};

/// The fixed part of `struct *_sring` (Xen 4.17: the indices and
/// `__pad[48]`; older headers named the first 4 pad bytes `private`).
#[repr(C)]
pub struct SringHeader {
    /// Requests produced by the frontend.
    pub req_prod: u32,
    /// The backend wants an event when `req_prod` passes this.
    pub req_event: u32,
    /// Responses produced by the backend.
    pub rsp_prod: u32,
    /// The frontend wants an event when `rsp_prod` passes this.
    pub rsp_event: u32,
    /// `__pad`, zeroed by `SHARED_RING_INIT`.
    pub pad: [u8; 48],
}

/// Offset of `req_prod`.
pub const REQ_PROD: usize = offset_of!(SringHeader, req_prod);
/// Offset of `req_event`.
pub const REQ_EVENT: usize = offset_of!(SringHeader, req_event);
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = offset_of!(SringHeader, rsp_prod);
/// Offset of `rsp_event`.
pub const RSP_EVENT: usize = offset_of!(SringHeader, rsp_event);
/// Offset of `__pad` (the old `private` bytes).
pub const PAD: usize = offset_of!(SringHeader, pad);
/// Offset of `ring[0]`, the first slot.
pub const HEADER_SIZE: usize = size_of::<SringHeader>();

// guest-abi.md §8.
const _: () = {
    assert!(REQ_PROD == 0);
    assert!(REQ_EVENT == 4);
    assert!(RSP_PROD == 8);
    assert!(RSP_EVENT == 12);
    assert!(PAD == 16);
    assert!(HEADER_SIZE == 64);
};
