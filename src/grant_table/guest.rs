//! The kernel side of the grant table (guest only): the PV
//! [`GrantBackend`] (`GNTTABOP_query_size` / `setup_table`, frames mapped RW
//! into the foreign VA window), one global table, and mapping grants other
//! domains give us (`GNTTABOP_map_grant_ref` with `GNTMAP_host_map`).
//!
//! Ownership rules that keep peers from ever seeing a recycled page:
//! * only a [`SharedPage`] (zeroed at allocation) can be granted;
//! * a [`Grant`] holds a handle to its page; ending it while the peer still
//!   maps the page parks the handle on the table's deferred list, so the
//!   frame cannot return to the allocator until [`poll_deferred`] sees the
//!   peer unmap it (the idle path polls);
//! * dropping a `Grant` revokes it the same way.

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;

use super::table::{
    GntStatusError, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantBackend, GrantError, GrantRef,
    GrantTable, MapFlags, Revoke,
};
use crate::hypercall::{self, Errno};
use crate::mm::{self, MmError, SharedPage};
use crate::shared::{MemOwner, SharedMem, PAGE_SIZE};

/// Frames set up at init (more are added one at a time on demand).
const INITIAL_FRAMES: u32 = 1;

/// PV backend: Xen's table frames, mapped into the foreign VA window.
pub struct PvBackend {
    max_frames: u32,
    /// VA of each mapped frame.
    vas: Vec<u64>,
    /// Last hypercall/status failure of `grow`, for error messages.
    pub last_error: Option<GnttabError>,
}

impl GrantBackend<'static> for PvBackend {
    fn max_frames(&self) -> u32 {
        self.max_frames
    }

    fn grow(&mut self, old: u32, new: u32) -> Result<Vec<SharedMem<'static>>, GrantError> {
        let mut mfns = vec![0u64; new as usize];
        let fail = |this: &mut Self, e: GnttabError, code: i32| {
            this.last_error = Some(e);
            GrantError::GrowFailed(code)
        };
        if mm::foreign_is_physical() {
            // PVH: Xen puts table frame i at a guest frame of ours
            // (XENMAPSPACE_grant_table); no setup_table, no MFNs.
            let mut views = Vec::with_capacity((new - old) as usize);
            for idx in old..new {
                let va = mm::vmap_reserve().map_err(|e| fail(self, GnttabError::Mm(e), -12))?;
                let arg = hypercall::AddToPhysmap {
                    domid: hypercall::DOMID_SELF,
                    size: 0,
                    space: 1, // XENMAPSPACE_grant_table
                    idx: u64::from(idx),
                    gpfn: va >> 12,
                };
                // SAFETY: the window gfn is not RAM and nothing refers to it.
                if let Err(e) = unsafe { hypercall::memory_op_add_to_physmap(&arg) } {
                    mm::vmap_release(va);
                    return Err(fail(self, GnttabError::Hypercall(e), -(e.code() as i32)));
                }
                // SAFETY: `va` is the fresh slot Xen just backed with the
                // table frame; identity: gfn = va >> 12.
                if let Err(e) = unsafe { mm::map_mfn(va, va >> 12, true) } {
                    return Err(fail(self, GnttabError::Mm(e), -14));
                }
                self.vas.push(va);
                // SAFETY: as for PV below.
                views.push(unsafe { SharedMem::from_raw(va as *mut u8, PAGE_SIZE) });
            }
            return Ok(views);
        }
        match hypercall::gnttab_setup_table(&mut mfns) {
            Err(e) => return Err(fail(self, GnttabError::Hypercall(e), -(e.code() as i32))),
            Ok(st) => {
                if let Err(s) = GntStatusError::check(st) {
                    return Err(fail(self, GnttabError::Status(s), i32::from(st)));
                }
            }
        }
        let mut views = Vec::with_capacity((new - old) as usize);
        for &mfn in &mfns[old as usize..] {
            let va = mm::vmap_reserve().map_err(|e| fail(self, GnttabError::Mm(e), -12))?;
            // SAFETY: `va` is a fresh window slot nothing refers to; `mfn`
            // is a table frame Xen just gave us to map.
            if let Err(e) = unsafe { mm::map_mfn(va, mfn, true) } {
                mm::vmap_release(va);
                return Err(fail(self, GnttabError::Mm(e), -14));
            }
            self.vas.push(va);
            // SAFETY: `va` maps the table frame RW for the rest of the
            // kernel's life (frames are never unmapped); Xen is the only
            // other party and it is accessed only through SharedMem.
            views.push(unsafe { SharedMem::from_raw(va as *mut u8, PAGE_SIZE) });
        }
        Ok(views)
    }
}

/// Errors of the kernel-side grant operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GnttabError {
    /// `init` has not run (or failed).
    NotInitialised,
    /// The grant_table_op hypercall itself failed.
    Hypercall(Errno),
    /// A per-op `GNTST_*` status.
    Status(GntStatusError),
    /// The table logic refused (exhausted, in use, …).
    Table(GrantError),
    /// Memory management (VA window, pages).
    Mm(MmError),
}

impl fmt::Display for GnttabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GnttabError::NotInitialised => write!(f, "grant table not initialised"),
            GnttabError::Hypercall(e) => write!(f, "grant_table_op: {e}"),
            GnttabError::Status(s) => write!(f, "GNTST {s:?} ({})", s.code()),
            GnttabError::Table(e) => write!(f, "{e:?}"),
            GnttabError::Mm(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for GnttabError {}

impl From<GrantError> for GnttabError {
    fn from(e: GrantError) -> Self {
        GnttabError::Table(e)
    }
}

type Table = GrantTable<'static, PvBackend, SharedPage>;

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// Counters of the global table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Grants currently valid.
    pub in_use: usize,
    /// Revoked while mapped by the peer; page held until unmapped.
    pub deferred: usize,
    /// Free entries (without growing).
    pub free: usize,
    /// Table frames set up now.
    pub nr_frames: u32,
    /// Most table frames Xen allows (`max_nr_frames`).
    pub max_frames: u32,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in_use {} deferred {} free {} frames {}/{}",
            self.in_use, self.deferred, self.free, self.nr_frames, self.max_frames
        )
    }
}

/// `GNTTABOP_query_size`, then a table of `INITIAL_FRAMES` (one)
/// frame; more are added on demand. Idempotent.
pub fn init() -> Result<Counters, GnttabError> {
    let mut t = TABLE.lock();
    if t.is_none() {
        let q = hypercall::gnttab_query_size().map_err(GnttabError::Hypercall)?;
        GntStatusError::check(q.status).map_err(GnttabError::Status)?;
        let backend = PvBackend {
            max_frames: q.max_nr_frames.max(1),
            vas: Vec::new(),
            last_error: None,
        };
        *t = Some(GrantTable::new(backend, INITIAL_FRAMES)?);
    }
    Ok(counters_of(t.as_ref().expect("initialised")))
}

fn counters_of(t: &Table) -> Counters {
    Counters {
        in_use: t.in_use(),
        deferred: t.deferred(),
        free: t.free(),
        nr_frames: t.nr_frames(),
        max_frames: t.backend().max_frames,
    }
}

fn with<R>(f: impl FnOnce(&mut Table) -> R) -> Result<R, GnttabError> {
    TABLE
        .lock()
        .as_mut()
        .map(f)
        .ok_or(GnttabError::NotInitialised)
}

/// Current counters.
pub fn counters() -> Result<Counters, GnttabError> {
    with(|t| counters_of(t))
}

/// A valid grant of `page` to a peer. Revoked (or deferred) when dropped.
#[derive(Debug)]
pub struct Grant {
    gref: GrantRef,
    page: Option<SharedPage>,
}

/// Grants `domid` access to `page` (a `SharedPage` is zeroed at
/// allocation; the caller fills it before or after granting). The same page
/// may be granted several times; it stays allocated while any grant lives.
pub fn grant_page(domid: u16, page: &SharedPage, readonly: bool) -> Result<Grant, GnttabError> {
    let gref = with(|t| t.grant_access(domid, page.mfn(), readonly))??;
    Ok(Grant {
        gref,
        page: Some(page.clone()),
    })
}

/// What [`revoke`] did.
#[derive(Debug)]
pub enum Revoked {
    /// Access ended; here is the page back.
    Done(SharedPage),
    /// The peer still maps it: the table holds the page until it unmaps.
    Deferred,
}

impl Grant {
    /// The grant reference to hand to the peer.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// The granted page.
    pub fn page(&self) -> &SharedPage {
        self.page.as_ref().expect("live grant has its page")
    }

    /// The volatile view of the granted page; it borrows the grant.
    pub fn mem(&self) -> SharedMem<'_> {
        self.page().mem()
    }

    fn take_page(&mut self) -> SharedPage {
        self.page.take().expect("live grant has its page")
    }
}

impl MemOwner for Grant {
    fn mem(&self) -> SharedMem<'_> {
        Grant::mem(self)
    }
}

/// Ends access now. `Err((grant, InUse))` if the peer still maps the page:
/// the grant stays valid and is handed back.
pub fn end_access(mut g: Grant) -> Result<SharedPage, (Grant, GnttabError)> {
    match with(|t| t.end_access(g.gref)) {
        Ok(Ok(())) => Ok(g.take_page()),
        Ok(Err(e)) => Err((g, GnttabError::Table(e))),
        Err(e) => Err((g, e)),
    }
}

/// Ends access now if possible, else defers: the page is parked with the
/// table and freed only after the peer unmaps ([`poll_deferred`]).
pub fn revoke(mut g: Grant) -> Result<Revoked, GnttabError> {
    let page = g.take_page();
    match with(|t| t.revoke_or_defer(g.gref, page))? {
        Ok(Revoke::Done(p)) => Ok(Revoked::Done(p)),
        Ok(Revoke::Deferred) => Ok(Revoked::Deferred),
        Err(e) => Err(GnttabError::Table(e)),
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(page) = self.page.take() {
            // Errors mean the ref is not ours to end; the page handle is
            // then dropped, which is safe only if nobody maps it — the
            // table refuses only for refs that are not granted.
            let _ = with(|t| t.revoke_or_defer(self.gref, page));
        }
    }
}

/// Retries deferred revocations (idle path); returns how many pages were
/// released (dropped outside the table lock).
pub fn poll_deferred() -> usize {
    let pages = with(|t| {
        if t.deferred() == 0 {
            Vec::new()
        } else {
            t.poll_deferred()
        }
    })
    .unwrap_or_default();
    pages.len()
}

// ------------------------------------------------- grants from other domains

/// A page another domain granted us, mapped at a window VA. Unmapped (best
/// effort) when dropped; use [`unmap`] to see errors.
#[derive(Debug)]
pub struct ForeignMapping {
    va: u64,
    handle: u32,
    domid: u16,
    gref: GrantRef,
    readonly: bool,
    live: bool,
}

/// `GNTTABOP_map_grant_ref` of `domid`'s `gref` (PV: host_map at a window
/// VA whose L1 exists; PVH: at the slot's guest-physical address, then
/// mapped VA == GPA).
pub fn map_grant(
    domid: u16,
    gref: GrantRef,
    readonly: bool,
) -> Result<ForeignMapping, GnttabError> {
    let va = mm::vmap_reserve().map_err(GnttabError::Mm)?;
    let mut op = GnttabMapGrantRef {
        host_addr: va,
        flags: (MapFlags::HOST_MAP
            | if readonly {
                MapFlags::READONLY
            } else {
                MapFlags::empty()
            })
        .bits(),
        ref_: gref.0,
        dom: domid,
        ..Default::default()
    };
    // SAFETY: `va` is a fresh window slot nothing refers to.
    let r = unsafe { hypercall::gnttab_map_grant_ref(&mut op) }
        .map_err(GnttabError::Hypercall)
        .and_then(|()| GntStatusError::check(op.status).map_err(GnttabError::Status));
    if let Err(e) = r {
        mm::vmap_release(va);
        return Err(e);
    }
    if mm::foreign_is_physical() {
        // PVH: Xen mapped the grant at guest frame va >> 12; add our PTE.
        // SAFETY: the slot is ours and nothing refers to it yet.
        if let Err(e) = unsafe { mm::map_mfn(va, va >> 12, !readonly) } {
            let mut un = GnttabUnmapGrantRef {
                host_addr: va,
                handle: op.handle,
                ..Default::default()
            };
            // SAFETY: nothing was mapped at `va`, so nothing refers to it.
            let _ = unsafe { hypercall::gnttab_unmap_grant_ref(&mut un) };
            mm::vmap_release(va);
            return Err(GnttabError::Mm(e));
        }
    }
    Ok(ForeignMapping {
        va,
        handle: op.handle,
        domid,
        gref,
        readonly,
        live: true,
    })
}

impl ForeignMapping {
    /// The volatile view of the peer's page; it borrows the mapping, so
    /// [`unmap`] (which takes the mapping) cannot run while a view is used.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `va` maps the granted frame until `unmap`/drop, which
        // consume the mapping and so cannot run while it is borrowed for
        // the view; accesses are volatile only.
        unsafe { SharedMem::from_raw(self.va as *mut u8, PAGE_SIZE) }
    }
    /// Where the page is mapped (our virtual address).
    pub fn va(&self) -> u64 {
        self.va
    }
    /// The granting domain.
    pub fn domid(&self) -> u16 {
        self.domid
    }
    /// The peer's grant reference.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }
    /// Whether it is mapped read-only (`GNTMAP_readonly`).
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    fn do_unmap(&mut self) -> Result<(), GnttabError> {
        if !self.live {
            return Ok(());
        }
        if mm::foreign_is_physical() {
            // SAFETY: as below: no view of the page is alive.
            unsafe { mm::unmap_va(self.va) }.map_err(GnttabError::Mm)?;
        }
        let mut op = GnttabUnmapGrantRef {
            host_addr: self.va,
            handle: self.handle,
            ..Default::default()
        };
        // SAFETY: only SharedMem views (volatile, no references) reach the
        // page, and they borrow the mapping, which `unmap` and drop take:
        // none is alive here.
        unsafe { hypercall::gnttab_unmap_grant_ref(&mut op) }.map_err(GnttabError::Hypercall)?;
        GntStatusError::check(op.status).map_err(GnttabError::Status)?;
        self.live = false;
        mm::vmap_release(self.va);
        Ok(())
    }
}

impl MemOwner for ForeignMapping {
    fn mem(&self) -> SharedMem<'_> {
        ForeignMapping::mem(self)
    }
}

/// `GNTTABOP_unmap_grant_ref`.
pub fn unmap(mut m: ForeignMapping) -> Result<(), GnttabError> {
    m.do_unmap()
}

impl Drop for ForeignMapping {
    fn drop(&mut self) {
        let _ = self.do_unmap();
    }
}
