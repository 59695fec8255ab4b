//! `struct xencons_interface` (`xen/include/public/io/console.h`): the PV
//! console ring page shared with xenconsoled in Dom0.

use core::mem::{offset_of, size_of};

/// Bytes of the `in` ring (backend → guest).
pub const IN_SIZE: u32 = 1024;
/// Bytes of the `out` ring (guest → backend).
pub const OUT_SIZE: u32 = 2048;

/// `struct xencons_interface`. Indices (`XENCONS_RING_IDX`) are
/// free-running; a byte's slot is `idx & (size - 1)` (`MASK_XENCONS_IDX`).
#[repr(C)]
pub struct XenconsInterface {
    /// `in`: backend → guest bytes.
    pub in_: [u8; IN_SIZE as usize],
    /// `out`: guest → backend bytes.
    pub out: [u8; OUT_SIZE as usize],
    /// Guest's consumer index of `in`.
    pub in_cons: u32,
    /// Backend's producer index of `in`.
    pub in_prod: u32,
    /// Backend's consumer index of `out`.
    pub out_cons: u32,
    /// Guest's producer index of `out`.
    pub out_prod: u32,
}

/// Offset of `in[0]`.
pub const IN: usize = offset_of!(XenconsInterface, in_);
/// Offset of `out[0]`.
pub const OUT: usize = offset_of!(XenconsInterface, out);
/// Offset of `in_cons`.
pub const IN_CONS: usize = offset_of!(XenconsInterface, in_cons);
/// Offset of `in_prod`.
pub const IN_PROD: usize = offset_of!(XenconsInterface, in_prod);
/// Offset of `out_cons`.
pub const OUT_CONS: usize = offset_of!(XenconsInterface, out_cons);
/// Offset of `out_prod`.
pub const OUT_PROD: usize = offset_of!(XenconsInterface, out_prod);

// guest-abi.md §13.
const _: () = {
    assert!(IN == 0);
    assert!(OUT == 1024);
    assert!(IN_CONS == 3072);
    assert!(IN_PROD == 3076);
    assert!(OUT_CONS == 3080);
    assert!(OUT_PROD == 3084);
    assert!(size_of::<XenconsInterface>() == 3088);
    assert!(IN_SIZE.is_power_of_two() && OUT_SIZE.is_power_of_two());
};
