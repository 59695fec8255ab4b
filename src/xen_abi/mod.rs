//! The Xen ABI's memory layouts: `#[repr(C)]` mirrors of the structs in
//! Xen's public headers (`xen/include/public/`), one file per header, with
//! the byte offsets the rest of the crate uses, derived from them with
//! [`core::mem::offset_of!`] and [`core::mem::size_of`].
//!
//! | file | header | structs |
//! |---|---|---|
//! | `xen.rs` | `xen.h`, `arch-x86/xen.h`, `arch-x86/xen-x86_64.h` | `shared_info`, `vcpu_info`, `vcpu_time_info`, `arch_vcpu_info`, `arch_shared_info` |
//! | `start_info.rs` | `xen.h`, `arch-x86/hvm/start_info.h` | PV `start_info`, `hvm_start_info`, `hvm_memmap_table_entry` |
//! | `grant_table.rs` | `grant_table.h` | `grant_entry_v1`, `GTF_*` |
//! | `ring.rs` | `io/ring.h` | the `*_sring` header |
//! | `console.rs` | `io/console.h` | `xencons_interface` |
//! | `blkif.rs` | `io/blkif.h` | `blkif_request` (+ discard, indirect), `blkif_response` |
//! | `netif.rs` | `io/netif.h` | `netif_tx_request`, `netif_extra_info`, `netif_{tx,rx}_response`, `netif_rx_request` |
//! | `xs_wire.rs` | `io/xs_wire.h` | `xenstore_domain_interface`, `xsd_sockmsg` |
//! | `vchan.rs` | `io/libxenvchan.h` | `vchan_interface`, `ring_shared` |
//!
//! The structs of pages shared with Xen or another domain are **layout
//! descriptions only**: nothing ever holds a reference to one of them over a
//! shared page (docs/protocols.md). Code reaches those pages through
//! [`SharedMem`](crate::shared::SharedMem) at the offset constants defined
//! next to each struct. Every size and offset is checked at compile time
//! against the numbers of the x86_64 ABI (`const _: () = assert!(..)`), so a
//! field typed or ordered wrongly does not build.
//!
//! Hypercall argument structs (`EVTCHNOP_*`, `GNTTABOP_*`, `mmu_update`, ...)
//! are passed by pointer for the duration of one call and live next to
//! their hypercall ([`hypercall`](crate::hypercall),
//! [`grant_table`](crate::grant_table)).

pub mod blkif;
pub mod console;
pub mod grant_table;
pub mod netif;
pub mod ring;
pub mod start_info;
pub mod vchan;
pub mod xen;
pub mod xs_wire;
