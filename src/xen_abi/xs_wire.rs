//! XenStore wire structs (`xen/include/public/io/xs_wire.h`): the ring page
//! shared with xenstored, and the header of every message on it.

use core::mem::{offset_of, size_of};

/// `XENSTORE_RING_SIZE`: size of each byte ring in the interface page.
pub const XENSTORE_RING_SIZE: usize = 1024;

/// `struct xenstore_domain_interface` (the fields up to `error`, Xen 4.17).
/// Indices (`XENSTORE_RING_IDX`) are free-running; a byte's slot is
/// `idx & (XENSTORE_RING_SIZE - 1)` (`MASK_XENSTORE_IDX`).
#[repr(C)]
pub struct XenstoreDomainInterface {
    /// Requests to xenstored.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events from xenstored.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// xenstored's consumer index of `req`.
    pub req_cons: u32,
    /// Our producer index of `req`.
    pub req_prod: u32,
    /// Our consumer index of `rsp`.
    pub rsp_cons: u32,
    /// xenstored's producer index of `rsp`.
    pub rsp_prod: u32,
    /// `XENSTORE_SERVER_FEATURE_*` bits the server supports.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` (0) or `XENSTORE_RECONNECT` (1).
    pub connection: u32,
    /// `XENSTORE_ERROR_*`: why the server considers the ring broken.
    pub error: u32,
}

/// Offset of `req[0]`.
pub const REQ: usize = offset_of!(XenstoreDomainInterface, req);
/// Offset of `rsp[0]`.
pub const RSP: usize = offset_of!(XenstoreDomainInterface, rsp);
/// Offset of `req_cons`.
pub const REQ_CONS: usize = offset_of!(XenstoreDomainInterface, req_cons);
/// Offset of `req_prod`.
pub const REQ_PROD: usize = offset_of!(XenstoreDomainInterface, req_prod);
/// Offset of `rsp_cons`.
pub const RSP_CONS: usize = offset_of!(XenstoreDomainInterface, rsp_cons);
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = offset_of!(XenstoreDomainInterface, rsp_prod);
/// Offset of `server_features`.
pub const SERVER_FEATURES: usize = offset_of!(XenstoreDomainInterface, server_features);
/// Offset of `connection`.
pub const CONNECTION: usize = offset_of!(XenstoreDomainInterface, connection);
/// Offset of `error`.
pub const ERROR: usize = offset_of!(XenstoreDomainInterface, error);
/// Bytes of the interface the guest uses.
pub const INTERFACE_SIZE: usize = size_of::<XenstoreDomainInterface>();

/// `struct xsd_sockmsg`: the header before each message's payload, little
/// endian on the ring.
#[repr(C)]
pub struct XsdSockmsg {
    /// `XS_*` message type.
    pub type_: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// Payload bytes that follow.
    pub len: u32,
}

/// Offset of `type` in an `xsd_sockmsg`.
pub const MSG_TYPE: usize = offset_of!(XsdSockmsg, type_);
/// Offset of `req_id`.
pub const MSG_REQ_ID: usize = offset_of!(XsdSockmsg, req_id);
/// Offset of `tx_id`.
pub const MSG_TX_ID: usize = offset_of!(XsdSockmsg, tx_id);
/// Offset of `len`.
pub const MSG_LEN: usize = offset_of!(XsdSockmsg, len);
/// Bytes of an `xsd_sockmsg`.
pub const HEADER_SIZE: usize = size_of::<XsdSockmsg>();

// guest-abi.md §9.
const _: () = {
    assert!(REQ == 0);
    assert!(RSP == 1024);
    assert!(REQ_CONS == 2048);
    assert!(REQ_PROD == 2052);
    assert!(RSP_CONS == 2056);
    assert!(RSP_PROD == 2060);
    assert!(SERVER_FEATURES == 2064);
    assert!(CONNECTION == 2068);
    assert!(ERROR == 2072);
    assert!(INTERFACE_SIZE == 2076);
    assert!(HEADER_SIZE == 16);
    assert!(MSG_TYPE == 0);
    assert!(MSG_REQ_ID == 4);
    assert!(MSG_TX_ID == 8);
    assert!(MSG_LEN == 12);
};
