//! How Xen describes the domain at boot, x86_64 layout: the PV
//! `start_info` (`xen/include/public/xen.h`), whose virtual address the
//! domain builder passes in rsi at the PV entry, and the PVH
//! `hvm_start_info` (`arch-x86/hvm/start_info.h`), whose physical address is
//! in ebx at the PVH entry.
//!
//! Pure data; the entry path copies them out of guest memory once,
//! everything else works on the copy.

use core::mem::{offset_of, size_of};

/// `start_info.magic` starts with this for a PV guest of any Xen 3+.
pub const MAGIC_PREFIX: &[u8] = b"xen-3.0";

/// `MAX_GUEST_CMDLINE`.
pub const CMDLINE_MAX: usize = 1024;

bitflags::bitflags! {
    /// `SIF_*` (xen.h): [`StartInfo::flags`] and [`HvmStartInfo::flags`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct SifFlags: u32 {
        /// `SIF_PRIVILEGED`: the domain is privileged.
        const PRIVILEGED = 1 << 0;
        /// `SIF_INITDOMAIN`: the domain is the initial control domain
        /// (Dom0).
        const INITDOMAIN = 1 << 1;
        /// `SIF_MULTIBOOT_MOD`: `mod_start` is a multiboot module list.
        const MULTIBOOT_MOD = 1 << 2;
        /// `SIF_MOD_START_PFN`: `mod_start` is a PFN, not a virtual
        /// address.
        const MOD_START_PFN = 1 << 3;
        /// `SIF_VIRT_P2M_4TOOLS`: the toolstack may use the virtual P2M
        /// list.
        const VIRT_P2M_4TOOLS = 1 << 4;
    }
}

/// `start_info_t` for x86_64 (1168 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    /// `"xen-<version>-<platform>"`, NUL padded.
    pub magic: [u8; 32],
    /// Total pages allocated to this domain.
    pub nr_pages: u64,
    /// Machine address of shared_info (not mapped by the builder).
    pub shared_info: u64,
    /// `SIF_*` flags ([`SifFlags`] bits).
    pub flags: u32,
    /// MFN of the XenStore ring page.
    pub store_mfn: u64,
    /// Event channel of the XenStore ring.
    pub store_evtchn: u32,
    /// `console.domU.mfn` (dom0: info_off/info_size).
    pub console_mfn: u64,
    /// `console.domU.evtchn`.
    pub console_evtchn: u32,
    /// Virtual address of the bootstrap page tables (L4).
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the P2M table (`unsigned long[nr_pages]`).
    pub mfn_list: u64,
    /// Virtual address (or PFN, with `SIF_MOD_START_PFN`) of the module.
    pub mod_start: u64,
    /// Size of the module in bytes.
    pub mod_len: u64,
    /// The guest command line, NUL terminated.
    pub cmd_line: [u8; CMDLINE_MAX],
    /// PFN of the first P2M table page (virtual P2M list for tools).
    pub first_p2m_pfn: u64,
    /// Number of P2M table pages.
    pub nr_p2m_frames: u64,
}

/// `XEN_HVM_START_MAGIC_VALUE`: hvm_start_info.magic on a PVH start.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;

/// `struct hvm_start_info` (arch-x86/hvm/start_info.h), 56 bytes; ebx at the
/// PVH entry holds its guest-physical address. memmap_* are valid from
/// version 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmStartInfo {
    /// [`HVM_START_MAGIC`].
    pub magic: u32,
    /// Version of this structure (0 or 1).
    pub version: u32,
    /// `SIF_*` flags ([`SifFlags`] bits).
    pub flags: u32,
    /// Number of modules passed to the kernel.
    pub nr_modules: u32,
    /// Physical address of an array of `hvm_modlist_entry`.
    pub modlist_paddr: u64,
    /// Physical address of the command line, NUL terminated; 0 = none.
    pub cmdline_paddr: u64,
    /// Physical address of the RSDP ACPI data structure.
    pub rsdp_paddr: u64,
    /// Physical address of the [`MemmapEntry`] table (version 1).
    pub memmap_paddr: u64,
    /// Number of entries in the memmap table (version 1).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `struct hvm_memmap_table_entry`: one E820-style region, 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemmapEntry {
    /// Base address of the region.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// `E820_*`: 1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable, 6 disabled, 7 PMEM.
    pub kind: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `XEN_HVM_MEMMAP_TYPE_RAM`.
pub const E820_RAM: u32 = 1;

// guest-abi.md §2, §3.
const _: () = {
    assert!(offset_of!(StartInfo, nr_pages) == 32);
    assert!(offset_of!(StartInfo, shared_info) == 40);
    assert!(offset_of!(StartInfo, flags) == 48);
    assert!(offset_of!(StartInfo, store_mfn) == 56);
    assert!(offset_of!(StartInfo, store_evtchn) == 64);
    assert!(offset_of!(StartInfo, console_mfn) == 72);
    assert!(offset_of!(StartInfo, console_evtchn) == 80);
    assert!(offset_of!(StartInfo, pt_base) == 88);
    assert!(offset_of!(StartInfo, nr_pt_frames) == 96);
    assert!(offset_of!(StartInfo, mfn_list) == 104);
    assert!(offset_of!(StartInfo, mod_start) == 112);
    assert!(offset_of!(StartInfo, mod_len) == 120);
    assert!(offset_of!(StartInfo, cmd_line) == 128);
    assert!(offset_of!(StartInfo, first_p2m_pfn) == 1152);
    assert!(offset_of!(StartInfo, nr_p2m_frames) == 1160);
    assert!(size_of::<StartInfo>() == 1168);
    assert!(offset_of!(HvmStartInfo, flags) == 8);
    assert!(offset_of!(HvmStartInfo, modlist_paddr) == 16);
    assert!(offset_of!(HvmStartInfo, cmdline_paddr) == 24);
    assert!(offset_of!(HvmStartInfo, rsdp_paddr) == 32);
    assert!(offset_of!(HvmStartInfo, memmap_paddr) == 40);
    assert!(offset_of!(HvmStartInfo, memmap_entries) == 48);
    assert!(size_of::<HvmStartInfo>() == 56);
    assert!(offset_of!(MemmapEntry, kind) == 16);
    assert!(size_of::<MemmapEntry>() == 24);
    assert!(SifFlags::PRIVILEGED.bits() == 1);
    assert!(SifFlags::VIRT_P2M_4TOOLS.bits() == 0x10);
};

/// Bytes of `buf` up to (not including) the first NUL.
pub fn c_str(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..end]
}

impl StartInfo {
    /// The magic string without NUL padding.
    pub fn magic(&self) -> &[u8] {
        c_str(&self.magic)
    }

    /// Whether the magic says this is a Xen 3+ PV start_info.
    pub fn magic_ok(&self) -> bool {
        self.magic().starts_with(MAGIC_PREFIX)
    }

    /// The command line without NUL padding (at most 1023 bytes are used).
    pub fn cmdline(&self) -> &[u8] {
        c_str(&self.cmd_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let mut magic = [0u8; 32];
        magic[..14].copy_from_slice(b"xen-3.0-x86_64");
        assert_eq!(c_str(&magic), b"xen-3.0-x86_64");
        assert_eq!(c_str(b"abc"), b"abc");
        assert_eq!(c_str(b"\0abc"), b"");
    }
}
