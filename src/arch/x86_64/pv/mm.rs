//! PV-specific memory management (guest-abi.md §5): the p2m from
//! `start_info.mfn_list`, the read-only M2P, and page-table edits through
//! `mmu_update` / `update_va_mapping`. PVH (identity-mapped, E820) replaces
//! this module; nothing outside `mm` sees MFNs of page tables.
//!
//! Mini-OS scheme (arch/x86/mm.c, new_pt_frame/build_pagetable): a new
//! page-table frame is zeroed through its ordinary RW mapping, then its own
//! L1 entry is made read-only, then it is hooked into its parent. Xen
//! validates it at that point. All guest RAM ends up mapped at
//! VA = pfn << 12 (VIRT_BASE 0).

use x86_64::structures::paging::PageTableFlags;

use crate::hypercall::{self, uvmf, MmuUpdate};
use crate::shared::PAGE_SIZE;

use crate::mm::MmError;

/// Leaf entries (x86_64 PV kernels run in ring 3: USER at every level).
const L1_PROT: PageTableFlags = PageTableFlags::PRESENT
    .union(PageTableFlags::WRITABLE)
    .union(PageTableFlags::ACCESSED)
    .union(PageTableFlags::USER_ACCESSIBLE);
/// L2–L4 entries.
const PT_PROT: PageTableFlags = L1_PROT.union(PageTableFlags::DIRTY);
/// Bits 12..52 of an entry: the frame's machine address.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Whether page-table entry `e` has the present bit.
fn present(e: u64) -> bool {
    PageTableFlags::from_bits_retain(e).contains(PageTableFlags::PRESENT)
}

const M2P_START: u64 = 0xFFFF_8000_0000_0000;
const M2P_ENTRIES: u64 = (0xFFFF_8040_0000_0000 - M2P_START) / 8;

/// `INVALID_P2M_ENTRY`.
const INVALID_MFN: u64 = u64::MAX;

/// Requests per `mmu_update` batch.
const BATCH: usize = 128;

/// The PV view of our memory: p2m plus the active L4.
pub struct PvMm {
    p2m: &'static [u64],
    l4_mfn: u64,
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 511) as usize
}

fn m2p(mfn: u64) -> Option<u64> {
    if mfn >= M2P_ENTRIES {
        return None;
    }
    let entry = (M2P_START + mfn * 8) as *const u64;
    // SAFETY: Xen maps the M2P read-only into every PV guest at M2P_START;
    // `mfn` is inside its bounds (checked above). Volatile: Xen owns it.
    Some(unsafe { core::ptr::read_volatile(entry) })
}

impl PvMm {
    /// # Safety
    /// `mfn_list` and `nr_pages` must come from this domain's start_info:
    /// the p2m array is mapped, ours, and never written by anyone.
    pub unsafe fn new(mfn_list: u64, nr_pages: u64, pt_base: u64) -> Result<PvMm, MmError> {
        if mfn_list == 0 || !mfn_list.is_multiple_of(8) {
            return Err(MmError::BadPageTable("p2m list address"));
        }
        // SAFETY: per the caller's contract the builder mapped `nr_pages`
        // u64 entries at `mfn_list`; we only ever read them.
        let p2m = unsafe { core::slice::from_raw_parts(mfn_list as *const u64, nr_pages as usize) };
        let mut mm = PvMm { p2m, l4_mfn: 0 };
        mm.l4_mfn = mm
            .pfn_to_mfn(pt_base >> 12)
            .ok_or(MmError::BadPageTable("pt_base"))?;
        Ok(mm)
    }

    pub fn nr_pages(&self) -> u64 {
        self.p2m.len() as u64
    }

    pub fn pfn_to_mfn(&self, pfn: u64) -> Option<u64> {
        self.p2m
            .get(pfn as usize)
            .copied()
            .filter(|&m| m != INVALID_MFN && m < M2P_ENTRIES)
    }

    /// MFN → our PFN, only if the frame really is ours (p2m agrees).
    pub fn mfn_to_pfn(&self, mfn: u64) -> Option<u64> {
        let pfn = m2p(mfn)?;
        (self.pfn_to_mfn(pfn) == Some(mfn)).then_some(pfn)
    }

    /// Entry `idx` of the page table in frame `mfn` (mapped at pfn << 12).
    fn entry(&self, table_mfn: u64, idx: usize) -> Result<u64, MmError> {
        let pfn = self
            .mfn_to_pfn(table_mfn)
            .ok_or(MmError::BadPageTable("table frame not ours"))?;
        let p = ((pfn << 12) as usize + idx * 8) as *const u64;
        // SAFETY: every page-table frame of ours is a RAM page mapped
        // (read-only) at pfn << 12; idx < 512 keeps us inside it. Volatile:
        // Xen may set A/D bits.
        Ok(unsafe { core::ptr::read_volatile(p) })
    }

    /// The L1 table frame for `va`, if all levels exist.
    fn l1_of(&self, va: u64) -> Result<Option<u64>, MmError> {
        let mut mfn = self.l4_mfn;
        for level in (2..=4).rev() {
            let e = self.entry(mfn, index(va, level))?;
            if !present(e) {
                return Ok(None);
            }
            mfn = (e & ADDR_MASK) >> 12;
        }
        Ok(Some(mfn))
    }

    /// The current L1 entry for `va` (0 if any level is missing).
    pub fn pte(&self, va: u64) -> Result<u64, MmError> {
        match self.l1_of(va)? {
            Some(l1) => self.entry(l1, index(va, 1)),
            None => Ok(0),
        }
    }

    /// Turns free, RW-mapped frame `pfn` into an (empty) page table hooked
    /// at `parent_mfn[idx]`; returns its MFN.
    fn new_pt_frame(&self, pfn: u64, parent_mfn: u64, idx: usize) -> Result<u64, MmError> {
        let mfn = self
            .pfn_to_mfn(pfn)
            .ok_or(MmError::BadPageTable("pt frame p2m"))?;
        let va = pfn << 12;
        let own_l1 = self
            .l1_of(va)?
            .ok_or(MmError::BadPageTable("pt frame not mapped"))?;
        if !present(self.entry(own_l1, index(va, 1))?) {
            return Err(MmError::BadPageTable("pt frame not mapped"));
        }
        // SAFETY: `pfn` was just taken from a free-frame source, so nothing
        // references it; it is mapped RW at `va` (checked above).
        unsafe { core::ptr::write_bytes(va as *mut u8, 0, PAGE_SIZE) };
        let reqs = [
            // (1) our own mapping of the frame becomes read-only,
            MmuUpdate {
                ptr: (own_l1 << 12) + 8 * index(va, 1) as u64,
                val: (mfn << 12) | L1_PROT.difference(PageTableFlags::WRITABLE).bits(),
            },
            // (2) then it is hooked into its parent (Xen validates it).
            MmuUpdate {
                ptr: (parent_mfn << 12) + 8 * idx as u64,
                val: (mfn << 12) | PT_PROT.bits(),
            },
        ];
        // SAFETY: (1) only drops write access to a frame nobody references;
        // (2) fills an empty parent slot, adding mappings, removing none.
        unsafe { hypercall::mmu_update(&reqs) }.map_err(MmError::Hypercall)?;
        Ok(mfn)
    }

    /// The L1 table frame for `va`, creating missing L3/L2/L1 tables from
    /// frames supplied by `alloc` (PFNs of free, mapped frames).
    pub fn ensure_l1(
        &self,
        va: u64,
        alloc: &mut dyn FnMut() -> Result<u64, MmError>,
    ) -> Result<u64, MmError> {
        let mut mfn = self.l4_mfn;
        for level in (2..=4).rev() {
            let idx = index(va, level);
            let e = self.entry(mfn, idx)?;
            mfn = if present(e) {
                (e & ADDR_MASK) >> 12
            } else {
                let pfn = alloc()?;
                self.new_pt_frame(pfn, mfn, idx)?
            };
        }
        Ok(mfn)
    }

    /// Maps every RAM page `from..nr_pages` at pfn << 12 (pages already
    /// mapped are left alone). Table frames come from `next_pt`, which is
    /// bumped; returns the first frame after them.
    pub fn map_all_ram(&self, from: u64, mut next_pt: u64) -> Result<u64, MmError> {
        let nr = self.nr_pages();
        let mut batch = [MmuUpdate { ptr: 0, val: 0 }; BATCH];
        let mut n = 0;
        let flush = |batch: &[MmuUpdate]| -> Result<(), MmError> {
            if batch.is_empty() {
                return Ok(());
            }
            // SAFETY: every request fills an empty L1 slot with a RAM frame
            // of ours that has no other use as a page table.
            let done = unsafe { hypercall::mmu_update(batch) }.map_err(MmError::Hypercall)?;
            if done as usize != batch.len() {
                return Err(MmError::BadPageTable("mmu_update partial"));
            }
            Ok(())
        };
        for pfn in from..nr {
            let va = pfn << 12;
            let l1 = match self.l1_of(va)? {
                Some(l1) => l1,
                None => {
                    // New tables are written through their own mapping:
                    // everything queued so far must be in place first.
                    flush(&batch[..n])?;
                    n = 0;
                    let mut bump = || -> Result<u64, MmError> {
                        let p = next_pt;
                        if p >= pfn {
                            return Err(MmError::OutOfMemory);
                        }
                        next_pt += 1;
                        Ok(p)
                    };
                    self.ensure_l1(va, &mut bump)?
                }
            };
            if present(self.entry(l1, index(va, 1))?) {
                continue;
            }
            let Some(mfn) = self.pfn_to_mfn(pfn) else {
                continue; // a hole in the p2m: nothing to map
            };
            batch[n] = MmuUpdate {
                ptr: (l1 << 12) + 8 * index(va, 1) as u64,
                val: (mfn << 12) | L1_PROT.bits(),
            };
            n += 1;
            if n == BATCH {
                flush(&batch[..n])?;
                n = 0;
            }
        }
        flush(&batch[..n])?;
        Ok(next_pt)
    }

    /// Points the (existing) L1 entry of `va` at machine frame `mfn`.
    ///
    /// # Safety
    /// No Rust reference may point into the page at `va`; `mfn` must be a
    /// frame we may map (e.g. a grant-table frame Xen gave us).
    pub unsafe fn map_mfn(&self, va: u64, mfn: u64, writable: bool) -> Result<(), MmError> {
        let prot = if writable {
            L1_PROT.union(PageTableFlags::DIRTY)
        } else {
            L1_PROT.difference(PageTableFlags::WRITABLE)
        };
        // SAFETY: forwarded from the caller's contract.
        unsafe { hypercall::update_va_mapping(va, (mfn << 12) | prot.bits(), uvmf::INVLPG) }
            .map_err(MmError::Hypercall)
    }

    /// Clears the L1 entry of `va`.
    ///
    /// # Safety
    /// No Rust reference may point into the page at `va`.
    pub unsafe fn unmap(&self, va: u64) -> Result<(), MmError> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { hypercall::update_va_mapping(va, 0, uvmf::INVLPG) }.map_err(MmError::Hypercall)
    }
}
