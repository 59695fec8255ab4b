//! The vchan control page (`xen/include/public/io/libxenvchan.h`), as used
//! by Xen's `tools/libs/vchan`: granted by the server to the client.

use core::mem::{offset_of, size_of};

/// `VCHAN_NOTIFY_WRITE`: notify bit "tell me when you wrote".
pub const NOTIFY_WRITE: u8 = 1;
/// `VCHAN_NOTIFY_READ`: notify bit "tell me when you read".
pub const NOTIFY_READ: u8 = 2;

/// `struct ring_shared`: the indices of one byte ring, free-running.
#[repr(C)]
pub struct RingShared {
    /// Consumer index (written by the reader).
    pub cons: u32,
    /// Producer index (written by the writer).
    pub prod: u32,
}

/// `struct vchan_interface`.
#[repr(C)]
pub struct VchanInterface {
    /// Client writes, server reads.
    pub left: RingShared,
    /// Server writes, client reads.
    pub right: RingShared,
    /// log2 of the left ring's bytes: 10/11 = in this page, else pages.
    pub left_order: u16,
    /// log2 of the right ring's bytes.
    pub right_order: u16,
    /// Client state: 0 exited, 1 connected, 2 not yet connected.
    pub cli_live: u8,
    /// Server state: 0 exited, 1 connected.
    pub srv_live: u8,
    /// `VCHAN_NOTIFY_*` bits the client must signal (set by the server).
    pub cli_notify: u8,
    /// `VCHAN_NOTIFY_*` bits the server must signal (set by the client).
    pub srv_notify: u8,
    /// Grant references of the ring pages: left's first, then right's.
    pub grants: [u32; 0],
}

/// Offset of `cons` in a [`RingShared`].
pub const RING_CONS: usize = offset_of!(RingShared, cons);
/// Offset of `prod` in a [`RingShared`].
pub const RING_PROD: usize = offset_of!(RingShared, prod);

/// Offset of `left`.
pub const LEFT: usize = offset_of!(VchanInterface, left);
/// Offset of `right`.
pub const RIGHT: usize = offset_of!(VchanInterface, right);
/// Offset of `left_order` (u16).
pub const LEFT_ORDER: usize = offset_of!(VchanInterface, left_order);
/// Offset of `right_order` (u16).
pub const RIGHT_ORDER: usize = offset_of!(VchanInterface, right_order);
/// Offset of `cli_live`.
pub const CLI_LIVE: usize = offset_of!(VchanInterface, cli_live);
/// Offset of `srv_live`.
pub const SRV_LIVE: usize = offset_of!(VchanInterface, srv_live);
/// Offset of `cli_notify`.
pub const CLI_NOTIFY: usize = offset_of!(VchanInterface, cli_notify);
/// Offset of `srv_notify`.
pub const SRV_NOTIFY: usize = offset_of!(VchanInterface, srv_notify);
/// Offset of `grants[0]`.
pub const GRANTS: usize = offset_of!(VchanInterface, grants);
/// Bytes of one `grants[]` entry.
pub const GRANT_SIZE: usize = size_of::<u32>();

// guest-abi.md §14.
const _: () = {
    assert!(size_of::<RingShared>() == 8);
    assert!(RING_CONS == 0);
    assert!(RING_PROD == 4);
    assert!(LEFT == 0);
    assert!(RIGHT == 8);
    assert!(LEFT_ORDER == 16);
    assert!(RIGHT_ORDER == 18);
    assert!(CLI_LIVE == 20);
    assert!(SRV_LIVE == 21);
    assert!(CLI_NOTIFY == 22);
    assert!(SRV_NOTIFY == 23);
    assert!(GRANTS == 24);
    assert!(size_of::<VchanInterface>() == 24);
};
