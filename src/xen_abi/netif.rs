//! The network-device rings of `xen/include/public/io/netif.h`: transmit
//! and receive requests and responses, the extra-info slot (GSO), and the
//! protocol's flags and statuses.
//!
//! Two rings per queue, each one page: tx slots are
//! `union { netif_tx_request; netif_tx_response; }` = 12 bytes (256 per
//! page, `NET_TX_RING_SIZE`), rx slots `union { netif_rx_request;
//! netif_rx_response; }` = 8 bytes (256 per page after `__RD32`). An extra
//! info slot (`netif_extra_info`, 8 bytes) takes a tx request slot of its
//! own right after the packet's first request when that request has
//! `NETTXF_extra_info`.

use core::mem::{offset_of, size_of};

/// `NETTXF_csum_blank`: the packet's transport checksum is not filled in
/// (the backend or the receiver computes it).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `NETTXF_data_validated`: the checksum has been verified.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `NETTXF_more_data`: the packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// `NETTXF_extra_info`: an extra-info slot follows this request.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// `NETRXF_data_validated`: the checksum was verified by the sender.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// `NETRXF_csum_blank`: the transport checksum is not filled in.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// `NETRXF_more_data`: the packet continues in the next response.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`: an extra-info slot follows this response.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// `NETRXF_gso_prefix`: this response carries only GSO metadata.
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// `XEN_NETIF_EXTRA_TYPE_GSO`: `u.gso` is valid.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MAX`: types are below this.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 6;
/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// `XEN_NETIF_RSP_DROPPED`.
pub const XEN_NETIF_RSP_DROPPED: i16 = -2;
/// `XEN_NETIF_RSP_ERROR`.
pub const XEN_NETIF_RSP_ERROR: i16 = -1;
/// `XEN_NETIF_RSP_OKAY`.
pub const XEN_NETIF_RSP_OKAY: i16 = 0;
/// `XEN_NETIF_RSP_NULL`: the answer to an extra-info slot.
pub const XEN_NETIF_RSP_NULL: i16 = 1;

/// `XEN_NETIF_NR_SLOTS_MIN`: the slots of one packet a backend must accept
/// (Linux netback drops a packet of more, `XEN_NETBK_LEGACY_SLOTS_MAX`).
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// Largest packet a tx request's 16-bit `size` can describe.
pub const XEN_NETIF_MAX_TX_SIZE: usize = 0xffff;

crate::pod_struct! {
    /// `struct netif_tx_request`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct NetifTxRequest {
        /// Grant of the page holding this slot's bytes.
        pub gref: u32,
        /// Offset of the bytes in the page.
        pub offset: u16,
        /// `NETTXF_*`.
        pub flags: u16,
        /// Echoed in the response.
        pub id: u16,
        /// First slot of a packet: the whole packet's size; later slots:
        /// this slot's bytes.
        pub size: u16,
    }
}

crate::pod_struct! {
    /// `struct netif_extra_info` with the GSO member of its union (the
    /// only type we send).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct NetifExtraInfo {
        /// `XEN_NETIF_EXTRA_TYPE_*`.
        pub kind: u8,
        /// `XEN_NETIF_EXTRA_FLAG_*`.
        pub flags: u8,
        /// `u.gso.size`: the MSS.
        pub gso_size: u16,
        /// `u.gso.type`: `XEN_NETIF_GSO_TYPE_*`.
        pub gso_type: u8,
        /// `u.gso.pad`.
        pub _pad: u8,
        /// `u.gso.features`.
        pub gso_features: u16,
    }
}

crate::pod_struct! {
    /// `struct netif_tx_response`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct NetifTxResponse {
        /// The request's `id`.
        pub id: u16,
        /// `XEN_NETIF_RSP_*`.
        pub status: i16,
    }
}

crate::pod_struct! {
    /// `struct netif_rx_request`: a page posted for the backend to copy
    /// a received packet into.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct NetifRxRequest {
        /// Echoed in the response.
        pub id: u16,
        /// Hole before `gref`.
        pub _pad: u16,
        /// Grant of the page (writable by the backend).
        pub gref: u32,
    }
}

crate::pod_struct! {
    /// `struct netif_rx_response`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct NetifRxResponse {
        /// The request's `id`.
        pub id: u16,
        /// Offset of the data in the page.
        pub offset: u16,
        /// `NETRXF_*`.
        pub flags: u16,
        /// Bytes received (> 0), or `XEN_NETIF_RSP_*` (< 0).
        pub status: i16,
    }
}

/// `netif_tx_request.offset`.
pub const TX_REQ_OFFSET: usize = offset_of!(NetifTxRequest, offset);
/// `netif_rx_response.status`.
pub const RX_RSP_STATUS: usize = offset_of!(NetifRxResponse, status);

// netif.h, x86_64.
const _: () = {
    assert!(offset_of!(NetifTxRequest, gref) == 0);
    assert!(TX_REQ_OFFSET == 4);
    assert!(offset_of!(NetifTxRequest, flags) == 6);
    assert!(offset_of!(NetifTxRequest, id) == 8);
    assert!(offset_of!(NetifTxRequest, size) == 10);
    assert!(size_of::<NetifTxRequest>() == 12);

    assert!(offset_of!(NetifExtraInfo, kind) == 0);
    assert!(offset_of!(NetifExtraInfo, flags) == 1);
    assert!(offset_of!(NetifExtraInfo, gso_size) == 2);
    assert!(offset_of!(NetifExtraInfo, gso_type) == 4);
    assert!(offset_of!(NetifExtraInfo, gso_features) == 6);
    assert!(size_of::<NetifExtraInfo>() == 8);

    assert!(offset_of!(NetifTxResponse, status) == 2);
    assert!(size_of::<NetifTxResponse>() == 4);

    assert!(offset_of!(NetifRxRequest, id) == 0);
    assert!(offset_of!(NetifRxRequest, gref) == 4);
    assert!(size_of::<NetifRxRequest>() == 8);

    assert!(offset_of!(NetifRxResponse, offset) == 2);
    assert!(offset_of!(NetifRxResponse, flags) == 4);
    assert!(RX_RSP_STATUS == 6);
    assert!(size_of::<NetifRxResponse>() == 8);
    // An extra-info slot goes into a tx request slot.
    assert!(size_of::<NetifExtraInfo>() <= size_of::<NetifTxRequest>());
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;
    use crate::shared::PAGE_SIZE;

    #[test]
    fn slots_per_page_as_netif_h() {
        type Tx<'a> = Ring<'a, NetifTxRequest, NetifTxResponse>;
        type Rx<'a> = Ring<'a, NetifRxRequest, NetifRxResponse>;
        assert_eq!(Tx::SLOT_SIZE, 12);
        assert_eq!(Tx::nr_ents_for(PAGE_SIZE), 256);
        assert_eq!(Rx::SLOT_SIZE, 8);
        assert_eq!(Rx::nr_ents_for(PAGE_SIZE), 256);
    }
}
