//! Raw Linux uapi for `/dev/xen/{gntdev,gntalloc,evtchn}`.
//!
//! Transcribed from Linux `include/uapi/xen/gntdev.h`, `gntalloc.h` and
//! `evtchn.h` (6.1). The ioctl numbers are `_IOC(_IOC_NONE, type, nr, size)`;
//! the literal values in the tests were printed by a C program that included
//! the real headers on a Debian 12 host.

use core::mem::size_of;

/// `_IOC(_IOC_NONE, ty, nr, size)`: direction bits are 0 for all of these.
pub const fn ioc_none(ty: u8, nr: u8, size: usize) -> u64 {
    ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}

pub const PAGE_SIZE: usize = 4096;

pub const UNMAP_NOTIFY_CLEAR_BYTE: u32 = 0x1;
pub const UNMAP_NOTIFY_SEND_EVENT: u32 = 0x2;

// ---- gntdev ---------------------------------------------------------------

/// `struct ioctl_gntdev_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GntdevGrantRef {
    pub domid: u32,
    pub r#ref: u32,
}

/// Fixed head of `struct ioctl_gntdev_map_grant_ref`; `refs[count]` follows
/// at offset 16 (the C struct declares `refs[1]`, hence size 24).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GntdevMapGrantRef {
    pub count: u32,
    pub pad: u32,
    pub index: u64,
    pub refs: [GntdevGrantRef; 1],
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GntdevUnmapGrantRef {
    pub index: u64,
    pub count: u32,
    pub pad: u32,
}

/// `struct ioctl_gntdev_unmap_notify` (same layout as the gntalloc one).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UnmapNotify {
    pub index: u64,
    pub action: u32,
    pub event_channel_port: u32,
}

pub const IOCTL_GNTDEV_MAP_GRANT_REF: u64 = ioc_none(b'G', 0, size_of::<GntdevMapGrantRef>());
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u64 = ioc_none(b'G', 1, size_of::<GntdevUnmapGrantRef>());
pub const IOCTL_GNTDEV_SET_UNMAP_NOTIFY: u64 = ioc_none(b'G', 7, size_of::<UnmapNotify>());

// ---- gntalloc -------------------------------------------------------------

pub const GNTALLOC_FLAG_WRITABLE: u16 = 1;

/// Fixed head of `struct ioctl_gntalloc_alloc_gref`; `gref_ids[count]`
/// follows at offset 16 (C size 24 with `gref_ids[1]` and tail padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GntallocAllocGref {
    pub domid: u16,
    pub flags: u16,
    pub count: u32,
    pub index: u64,
    pub gref_ids: [u32; 1],
}

/// `struct ioctl_gntalloc_dealloc_gref` (12 bytes of fields, padded to 16).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GntallocDeallocGref {
    pub index: u64,
    pub count: u32,
}

pub const IOCTL_GNTALLOC_ALLOC_GREF: u64 = ioc_none(b'G', 5, size_of::<GntallocAllocGref>());
pub const IOCTL_GNTALLOC_DEALLOC_GREF: u64 = ioc_none(b'G', 6, size_of::<GntallocDeallocGref>());
pub const IOCTL_GNTALLOC_SET_UNMAP_NOTIFY: u64 = ioc_none(b'G', 7, size_of::<UnmapNotify>());

// ---- evtchn ---------------------------------------------------------------

/// `struct ioctl_evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnBindInterdomain {
    pub remote_domain: u32,
    pub remote_port: u32,
}

/// `struct ioctl_evtchn_bind_unbound_port`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnBindUnboundPort {
    pub remote_domain: u32,
}

/// `struct ioctl_evtchn_unbind` and `struct ioctl_evtchn_notify`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnPort {
    pub port: u32,
}

pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u64 =
    ioc_none(b'E', 1, size_of::<EvtchnBindInterdomain>());
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u64 =
    ioc_none(b'E', 2, size_of::<EvtchnBindUnboundPort>());
pub const IOCTL_EVTCHN_UNBIND: u64 = ioc_none(b'E', 3, size_of::<EvtchnPort>());
pub const IOCTL_EVTCHN_NOTIFY: u64 = ioc_none(b'E', 4, size_of::<EvtchnPort>());

const _: () = {
    assert!(size_of::<GntdevGrantRef>() == 8);
    assert!(size_of::<GntdevMapGrantRef>() == 24);
    assert!(core::mem::offset_of!(GntdevMapGrantRef, index) == 8);
    assert!(core::mem::offset_of!(GntdevMapGrantRef, refs) == 16);
    assert!(size_of::<GntdevUnmapGrantRef>() == 16);
    assert!(size_of::<UnmapNotify>() == 16);
    assert!(core::mem::offset_of!(UnmapNotify, action) == 8);
    assert!(size_of::<GntallocAllocGref>() == 24);
    assert!(core::mem::offset_of!(GntallocAllocGref, count) == 4);
    assert!(core::mem::offset_of!(GntallocAllocGref, index) == 8);
    assert!(core::mem::offset_of!(GntallocAllocGref, gref_ids) == 16);
    assert!(size_of::<GntallocDeallocGref>() == 16);
    assert!(size_of::<EvtchnBindInterdomain>() == 8);
    assert!(size_of::<EvtchnBindUnboundPort>() == 4);
    assert!(size_of::<EvtchnPort>() == 4);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by `printf("%lx", IOCTL_...)` against the Debian 12
    /// `linux-libc-dev` headers.
    #[test]
    fn ioctl_numbers_match_c_headers() {
        assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x0018_4700);
        assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x0010_4701);
        assert_eq!(IOCTL_GNTDEV_SET_UNMAP_NOTIFY, 0x0010_4707);
        assert_eq!(IOCTL_GNTALLOC_ALLOC_GREF, 0x0018_4705);
        assert_eq!(IOCTL_GNTALLOC_DEALLOC_GREF, 0x0010_4706);
        assert_eq!(IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, 0x0010_4707);
        assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
        assert_eq!(IOCTL_EVTCHN_BIND_UNBOUND_PORT, 0x0004_4502);
        assert_eq!(IOCTL_EVTCHN_UNBIND, 0x0004_4503);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
    }
}
