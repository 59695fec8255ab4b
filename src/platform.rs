//! What the boot path found out about the machine, independent of how the
//! kernel was entered (PV: src/arch/x86_64/pv/entry.rs, PVH:
//! src/arch/x86_64/pvh/entry.rs). `kernel_main` only sees this.

use crate::xen_abi::start_info::{
    HvmStartInfo, MemmapEntry, SifFlags, StartInfo, CMDLINE_MAX, E820_RAM,
};

/// How Xen started us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootKind {
    /// Paravirtualised: entered through the PV entry with `start_info`.
    Pv,
    /// PVH: entered through `XEN_ELFNOTE_PHYS32_ENTRY` with `hvm_start_info`.
    Pvh,
}

impl BootKind {
    /// `"pv"` or `"pvh"`, as printed on the console.
    pub fn name(self) -> &'static str {
        match self {
            BootKind::Pv => "pv",
            BootKind::Pvh => "pvh",
        }
    }
}

/// A shared ring page plus its (already bound) event channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingPage {
    /// Pseudo-physical frame number.
    pub pfn: u64,
    /// Virtual address the page is mapped at.
    pub va: usize,
    /// The ring's event channel.
    pub port: u32,
}

/// The platform description handed from the entry path to `kernel_main`.
#[derive(Clone)]
pub struct Platform {
    /// PV or PVH.
    pub kind: BootKind,
    /// Magic of the boot info (PV: start_info.magic), NUL padded.
    pub magic: [u8; 32],
    /// Pages of RAM the domain has.
    pub nr_pages: u64,
    /// `SIF_*` flags.
    pub flags: SifFlags,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    /// PV console ring, if any (None for Dom0).
    pub console: Option<RingPage>,
    /// XenStore ring.
    pub store: Option<RingPage>,
    /// PVH only: what hvm_start_info said.
    pub hvm: Option<HvmInfo>,
    /// Guest-physical memory map (PVH: hvm_start_info's E820 table; PV:
    /// empty, the PV memory is `nr_pages` from pfn 0).
    pub memmap: MemMap,
}

/// The hvm_start_info fields worth keeping (PVH).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvmInfo {
    /// `hvm_start_info.magic`.
    pub magic: u32,
    /// `hvm_start_info.version`.
    pub version: u32,
    /// `hvm_start_info.rsdp_paddr`.
    pub rsdp_paddr: u64,
    /// Entries in Xen's table (more than [`MAX_MEMMAP`] are dropped).
    pub memmap_entries: u32,
}

/// Most E820 entries kept; a PVH domU has a handful.
pub const MAX_MEMMAP: usize = 32;

/// A copied E820-style memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemMap {
    entries: [MemmapEntry; MAX_MEMMAP],
    len: usize,
}

impl MemMap {
    /// No entries.
    pub const fn empty() -> MemMap {
        MemMap {
            entries: [MemmapEntry {
                addr: 0,
                size: 0,
                kind: 0,
                reserved: 0,
            }; MAX_MEMMAP],
            len: 0,
        }
    }

    /// Copy up to [`MAX_MEMMAP`] entries.
    pub fn from_entries(src: &[MemmapEntry]) -> MemMap {
        let mut m = MemMap::empty();
        for e in src.iter().take(MAX_MEMMAP) {
            m.entries[m.len] = *e;
            m.len += 1;
        }
        m
    }

    /// The entries copied.
    pub fn entries(&self) -> &[MemmapEntry] {
        &self.entries[..self.len]
    }

    /// Whole 4 KiB pages of RAM (type 1), each region rounded inwards.
    pub fn ram_pages(&self) -> u64 {
        self.ram_ranges().map(|(s, e)| e - s).sum()
    }

    /// RAM regions as page-aligned pfn ranges `[start, end)` (rounded
    /// inwards; empty ones skipped).
    pub fn ram_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries()
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| (e.addr.div_ceil(4096), e.addr.saturating_add(e.size) / 4096))
            .filter(|(s, e)| e > s)
    }
}

impl Platform {
    /// Describe a PV boot from a copy of start_info. `mfn_to_pfn` translates
    /// machine frames through the M2P; `None` means the frame is not ours.
    pub fn from_pv(si: &StartInfo, mfn_to_pfn: impl Fn(u64) -> Option<u64>) -> Platform {
        let ring = |mfn: u64, port: u32| {
            if mfn == 0 {
                return None;
            }
            let pfn = mfn_to_pfn(mfn).filter(|&pfn| pfn < si.nr_pages)?;
            Some(RingPage {
                pfn,
                // VIRT_BASE is 0: pfn N is mapped at N << 12.
                va: (pfn << 12) as usize,
                port,
            })
        };
        let cmd = si.cmdline();
        let mut cmdline = [0u8; CMDLINE_MAX];
        cmdline[..cmd.len()].copy_from_slice(cmd);
        Platform {
            kind: BootKind::Pv,
            magic: si.magic,
            nr_pages: si.nr_pages,
            flags: SifFlags::from_bits_retain(si.flags),
            cmdline,
            cmdline_len: cmd.len(),
            console: ring(si.console_mfn, si.console_evtchn),
            store: ring(si.store_mfn, si.store_evtchn),
            hvm: None,
            memmap: MemMap::empty(),
        }
    }

    /// Describe a PVH boot: a copy of hvm_start_info, its memory map and
    /// command line (already copied out of guest memory), and the console
    /// and XenStore (pfn, port) pairs from the HVM params (pfn 0 = none).
    /// Memory is identity-mapped, so a page's VA is its physical address;
    /// `mapped(pfn)` says whether the boot page tables cover it.
    pub fn from_pvh(
        hsi: &HvmStartInfo,
        memmap: &[MemmapEntry],
        cmd: &[u8],
        console: (u64, u32),
        store: (u64, u32),
        mapped: impl Fn(u64) -> bool,
    ) -> Platform {
        let ring = |(pfn, port): (u64, u32)| {
            (pfn != 0 && mapped(pfn)).then_some(RingPage {
                pfn,
                va: (pfn << 12) as usize,
                port,
            })
        };
        let cmd = &cmd[..cmd.len().min(CMDLINE_MAX - 1)];
        let mut cmdline = [0u8; CMDLINE_MAX];
        cmdline[..cmd.len()].copy_from_slice(cmd);
        let memmap = MemMap::from_entries(memmap);
        Platform {
            kind: BootKind::Pvh,
            magic: [0; 32],
            nr_pages: memmap.ram_pages(),
            flags: SifFlags::from_bits_retain(hsi.flags),
            cmdline,
            cmdline_len: cmd.len(),
            console: ring(console),
            store: ring(store),
            hvm: Some(HvmInfo {
                magic: hsi.magic,
                version: hsi.version,
                rsdp_paddr: hsi.rsdp_paddr,
                memmap_entries: hsi.memmap_entries,
            }),
            memmap,
        }
    }

    /// Raw command line bytes (no NUL).
    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline[..self.cmdline_len]
    }

    /// Magic without padding.
    pub fn magic(&self) -> &[u8] {
        crate::xen_abi::start_info::c_str(&self.magic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si() -> StartInfo {
        // SAFETY: StartInfo is plain old data; all-zero is a valid value.
        let mut si: StartInfo = unsafe { core::mem::zeroed() };
        si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
        si.nr_pages = 8192;
        si.console_mfn = 0x1234;
        si.console_evtchn = 2;
        si.store_mfn = 0x1235;
        si.store_evtchn = 1;
        si.cmd_line[..10].copy_from_slice(b"test=hello");
        si
    }

    #[test]
    fn pv_rings_go_through_m2p() {
        let p = Platform::from_pv(&si(), |mfn| Some(mfn - 0x1000));
        assert_eq!(p.kind, BootKind::Pv);
        assert_eq!(
            p.console,
            Some(RingPage {
                pfn: 0x234,
                va: 0x234000,
                port: 2
            })
        );
        assert_eq!(p.store.unwrap().pfn, 0x235);
        assert_eq!(p.cmdline(), b"test=hello");
        assert_eq!(p.magic(), b"xen-3.0-x86_64");
    }

    #[test]
    fn foreign_or_out_of_range_frames_are_rejected() {
        let p = Platform::from_pv(&si(), |_| None);
        assert_eq!(p.console, None);
        let p = Platform::from_pv(&si(), |_| Some(9000));
        assert_eq!(p.console, None);
        let mut s = si();
        s.console_mfn = 0;
        assert_eq!(Platform::from_pv(&s, Some).console, None);
    }

    fn e(addr: u64, size: u64, kind: u32) -> MemmapEntry {
        MemmapEntry {
            addr,
            size,
            kind,
            reserved: 0,
        }
    }

    #[test]
    fn pvh_from_start_info_and_params() {
        let hsi = HvmStartInfo {
            magic: crate::xen_abi::start_info::HVM_START_MAGIC,
            version: 1,
            flags: 0,
            memmap_entries: 3,
            ..Default::default()
        };
        let map = [
            e(0, 0x2000000, E820_RAM),
            e(0xfc000000, 0x1000, 2),
            // Partial pages at both ends count as nothing.
            e(0x100000800, 0x2000, E820_RAM),
        ];
        let p = Platform::from_pvh(&hsi, &map, b"test=hello", (0xfeffc, 3), (0, 1), |pfn| {
            pfn < 1 << 20
        });
        assert_eq!(p.kind, BootKind::Pvh);
        assert_eq!(p.nr_pages, 0x2000 + 1);
        assert_eq!(
            p.console,
            Some(RingPage {
                pfn: 0xfeffc,
                va: 0xfeffc000,
                port: 3
            })
        );
        assert_eq!(p.store, None, "pfn 0 means no XenStore");
        assert_eq!(p.cmdline(), b"test=hello");
        assert_eq!(p.hvm.unwrap().version, 1);
        assert_eq!(p.memmap.entries().len(), 3);
        // A ring outside the boot mapping is refused.
        let p = Platform::from_pvh(&hsi, &map, b"", (0x200000, 3), (0, 0), |pfn| pfn < 1 << 20);
        assert_eq!(p.console, None);
    }

    #[test]
    fn memmap_is_capped() {
        let many = [e(0, 0x1000, E820_RAM); MAX_MEMMAP + 5];
        let m = MemMap::from_entries(&many);
        assert_eq!(m.entries().len(), MAX_MEMMAP);
        assert_eq!(m.ram_pages(), MAX_MEMMAP as u64);
    }
}
