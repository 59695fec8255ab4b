//! Block devices: blkfront against a stock Linux blkback, over the
//! kernel's grant table, event channels and XenStore. The protocol logic
//! (key parsing, request planning, response validation) is
//! [`crate::drivers::blkfront`]; the handshake is
//! [`crate::xenbus::Frontend`]; this module carries them out.
//!
//! ```ignore
//! let mut disk = xenfront::blk::Disk::open(None, Default::default())?; // first device/vbd
//! let info = disk.info().clone();
//! let mut buf = alloc::vec![0u8; 4097];
//! disk.read(511, &mut buf)?;        // any byte offset, any length
//! disk.write(511, &buf)?;           // partial sectors: read-modify-write
//! disk.flush()?;
//! disk.close()?;
//! ```
//!
//! * **Connect** ([`Disk::open`]): list `device/vbd`, read and cross-check
//!   the frontend's `backend`/`backend-id`, write `Initialising`, wait
//!   (deadline) for the backend's `InitWait`, read its [`RingFeatures`],
//!   set up a ring of `1 << order` pages (order up to
//!   [`Config::ring_page_order`] and the backend's `max-ring-page-order`:
//!   16 pages, 512 slots, against Linux blkback), each granted to the
//!   backend, an unbound event channel, a pool of data pages and, when the
//!   backend takes more than 11 segments (`feature-max-indirect-segments`),
//!   indirect-segment pages; write the connection keys in one transaction
//!   ([`write_keys`]) with `Initialised`, wait (deadline) for `Connected`,
//!   read [`BackendInfo`] and go `Connected`.
//! * **I/O** ([`Disk::read`], [`Disk::write`], [`Disk::flush`],
//!   [`Disk::discard`]): blocking, at any byte offset and length (a partial
//!   sector is read whole; written by read-modify-write). The sector-aligned
//!   part is planned by [`plan_io`] into requests of up to 256 segments
//!   (1 MiB, `BLKIF_OP_INDIRECT`) or 11 (direct), and the ring is kept as
//!   full as the pool allows. Data moves through bounce pages of a fixed
//!   pool: with [`Config::persistent`] (`feature-persistent` = 1) each is
//!   granted once for the device's life and blkback keeps it mapped;
//!   without, each is granted for one request and revoked when it is
//!   answered. Each response is copied out of the ring and validated by
//!   [`Outstanding::complete`]; a response that breaks the protocol, a
//!   request unanswered [`Config::request_timeout_ns`] after it was issued,
//!   or the backend leaving `Connected` (`xl block-detach`) disconnects the
//!   device: requests in flight end with the error, grants are revoked
//!   (deferred while mapped), and every later call fails with
//!   [`DiskError::Disconnected`] naming the cause. A `BLKIF_RSP_ERROR`
//!   fails only that I/O ([`DiskError::Io`]).
//! * **Close** ([`Disk::close`]): `Closing`, wait for the backend to
//!   follow, `Closed`, wait (deadline) for the backend's `Closed` (it
//!   unmaps the ring and data pages then), revoke every grant (deferred
//!   while still mapped: [`grant_table::poll_deferred`] finishes the job),
//!   close the event channel.
//!
//! Not yet: several queues (`multi-queue-num-queues`), resize, and
//! replaying I/O across a reconnect.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::drivers::blkfront::{
    connect_keys, flush_request, plan_discard, plan_io, Completion, Outstanding, PagePool, Planned,
    QueueRing, Span, Status, MAX_RING_PAGE_ORDER,
};
use crate::event;
use crate::grant_table::{self, Grant, Revoked};
use crate::mm::{self, SharedPage};
use crate::ring::FrontRing;
use crate::shared::{SharedMem, PAGE_SIZE};
use crate::time;
use crate::xen_abi::blkif::{
    BlkifRequest, BlkifResponse, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD,
    BLKIF_OP_FLUSH_DISKCACHE,
};
use crate::xenbus::{
    write_keys, Action, ConnectState, Frontend, FrontendInfo, Phase, Timeouts, XenbusError,
    XenbusState, MAX_TX_ATTEMPTS,
};
use crate::xenstore::{self, StoreError, Watch, XsError};

pub use crate::drivers::blkfront::{BackendInfo, BlkError, Op, RingFeatures};

/// Longest sleep of a handshake wait between two reads of the backend's
/// state (the watch normally ends it sooner).
const POLL_NS: u64 = 200_000_000;
/// Longest sleep waiting for a response: the backend's state (watch) and
/// the oldest request's deadline are looked at in between.
const IO_POLL_NS: u64 = 100_000_000;

/// The device class this module drives.
pub const CLASS: &str = "vbd";

/// Tunables of [`Disk::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long each handshake wait may last.
    pub timeouts: Timeouts,
    /// A request not answered this long after it was put on the ring →
    /// [`DiskError::Timeout`] (and the device disconnects).
    pub request_timeout_ns: u64,
    /// Data bounce pages in the pool; at least one request's worth (11,
    /// or the indirect segment count) is used.
    pub pool_pages: u32,
    /// Ring pages as an order (0: one page, 32 slots; 4: 16 pages, 512
    /// slots), capped by the backend's `max-ring-page-order` and
    /// [`MAX_RING_PAGE_ORDER`].
    pub ring_page_order: u32,
    /// Use indirect requests (up to 256 segments, 1 MiB) when the backend
    /// offers more than 11 (`feature-max-indirect-segments`).
    pub indirect: bool,
    /// Persistent grants: the pool's pages are granted once and announced
    /// with `feature-persistent` = 1; otherwise each is granted for one
    /// request and revoked when it is answered.
    pub persistent: bool,
}

impl Default for Config {
    /// [`Timeouts::default`], 30 s per request, 1,024 pool pages (4 MiB:
    /// four 1 MiB requests in flight), ring order 4, indirect requests and
    /// persistent grants on.
    fn default() -> Self {
        Config {
            timeouts: Timeouts::default(),
            request_timeout_ns: 30_000_000_000,
            pool_pages: 1024,
            ring_page_order: MAX_RING_PAGE_ORDER,
            indirect: true,
            persistent: true,
        }
    }
}

/// Why a block operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// This domain has no `device/vbd` entry (or not the one asked for).
    NoDevice,
    /// XenStore failed.
    Store(StoreError),
    /// The handshake failed (bad keys, a backend that never got there,
    /// one that closed).
    Xenbus(XenbusError),
    /// A backend key, our parameters or an I/O request were refused
    /// ([`BlkError`]; the protocol errors among them disconnect).
    Blk(BlkError),
    /// A page, grant or event channel could not be had.
    Resource {
        /// What was being allocated.
        what: &'static str,
        /// Why not.
        detail: String,
    },
    /// The backend answered `BLKIF_RSP_ERROR` or `EOPNOTSUPP` for the
    /// request starting at `sector` (512-byte units).
    Io {
        /// First sector of the failed request.
        sector: u64,
        /// Its status.
        status: Status,
    },
    /// A request was not answered within the request timeout.
    Timeout {
        /// How long the oldest request waited.
        ms: u64,
        /// Requests outstanding.
        in_flight: u32,
    },
    /// The device is down: an earlier protocol error, timeout or backend
    /// close (named), or it was closed.
    Disconnected(String),
}

impl From<StoreError> for DiskError {
    fn from(e: StoreError) -> Self {
        DiskError::Store(e)
    }
}

impl From<XenbusError> for DiskError {
    fn from(e: XenbusError) -> Self {
        DiskError::Xenbus(e)
    }
}

impl From<BlkError> for DiskError {
    fn from(e: BlkError) -> Self {
        DiskError::Blk(e)
    }
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::NoDevice => f.write_str("blk: no such device/vbd"),
            DiskError::Store(e) => write!(f, "blk: xenstore: {e}"),
            DiskError::Xenbus(e) => write!(f, "blk: {e}"),
            DiskError::Blk(e) => write!(f, "{e}"),
            DiskError::Resource { what, detail } => write!(f, "blk: {what}: {detail}"),
            DiskError::Io { sector, status } => {
                write!(f, "blk: request at sector {sector} failed: {status:?}")
            }
            DiskError::Timeout { ms, in_flight } => {
                write!(
                    f,
                    "blk: request unanswered for {ms} ms ({in_flight} in flight)"
                )
            }
            DiskError::Disconnected(why) => write!(f, "blk: disconnected: {why}"),
        }
    }
}

impl core::error::Error for DiskError {}

fn resource(what: &'static str) -> impl Fn(&dyn fmt::Display) -> DiskError {
    move |e| DiskError::Resource {
        what,
        detail: format!("{e}"),
    }
}

/// Counters of one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Requests put on the ring.
    pub requests: u64,
    /// Of them, indirect ones.
    pub indirect: u64,
    /// Responses validated.
    pub responses: u64,
    /// Notifications sent to the backend.
    pub notifies: u64,
    /// Sleeps waiting for responses.
    pub waits: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u32,
    /// Grants made for data pages (the pool's, once each, with persistent
    /// grants; one per page per request without).
    pub data_grants: u64,
    /// Data bytes moved by reads and writes.
    pub bytes: u64,
}

/// A request in flight: which planned request, its pool pages, its
/// indirect pages, when it was issued.
#[derive(Debug)]
struct Inflight {
    req: usize,
    pages: Vec<u32>,
    indirect: Vec<u32>,
    sector: u64,
    issued_ns: u64,
}

/// A pool of granted pages: the pages, their grants (`None` while a
/// non-persistent page is not in use), and which are free.
struct Pages {
    pages: Vec<SharedPage>,
    grants: Vec<Option<Grant>>,
    pool: PagePool,
}

impl Pages {
    fn empty() -> Pages {
        Pages {
            pages: Vec::new(),
            grants: Vec::new(),
            pool: PagePool::new(0),
        }
    }

    /// `n` pages, each granted to `be` now when `persistent`.
    fn new(n: u32, be: u16, persistent: bool) -> Result<Pages, DiskError> {
        let mut p = Pages::empty();
        for _ in 0..n {
            let page = mm::alloc_shared_page().map_err(|e| resource("data page")(&e))?;
            let grant = if persistent {
                Some(
                    grant_table::grant_page(be, &page, false)
                        .map_err(|e| resource("grant data page")(&e))?,
                )
            } else {
                None
            };
            p.pages.push(page);
            p.grants.push(grant);
        }
        p.pool = PagePool::new(n);
        Ok(p)
    }

    fn mem(&self, q: u32) -> SharedMem<'_> {
        self.pages[q as usize].mem()
    }

    /// The grant reference of page `q`, granting it to `be` first if it
    /// has none (non-persistent); the count of grants made goes to `made`.
    fn gref(&mut self, q: u32, be: u16, made: &mut u64) -> Result<u32, DiskError> {
        let slot = &mut self.grants[q as usize];
        if slot.is_none() {
            let g = grant_table::grant_page(be, &self.pages[q as usize], false)
                .map_err(|e| resource("grant data page")(&e))?;
            *made += 1;
            *slot = Some(g);
        }
        Ok(slot.as_ref().expect("granted above").gref().0)
    }

    /// Returns pages to the pool; without persistent grants their grants
    /// are revoked first, and a page the backend still maps stays out of
    /// the pool (its grant is deferred; the page is not reused).
    fn give_back(&mut self, pages: &[u32], persistent: bool) {
        if persistent {
            self.pool.give_back(pages);
            return;
        }
        let mut back = Vec::with_capacity(pages.len());
        for &q in pages {
            match self.grants[q as usize].take().map(grant_table::revoke) {
                Some(Ok(Revoked::Deferred)) | Some(Err(_)) => {}
                Some(Ok(Revoked::Done(_))) | None => back.push(q),
            }
        }
        self.pool.give_back(&back);
    }

    /// Revokes every grant (deferred while mapped).
    fn revoke_all(&mut self) {
        for g in self.grants.drain(..).flatten() {
            let _ = grant_table::revoke(g);
        }
        self.pages.clear();
        self.pool = PagePool::new(0);
    }
}

/// One connected virtual block device.
pub struct Disk {
    // Declared (so dropped) before `ring_grants`: the ring view points
    // into those grants' pages.
    ring: Option<FrontRing<'static, BlkifRequest, BlkifResponse>>,
    ring_grants: Vec<Grant>,
    /// Data bounce pages.
    data: Pages,
    /// Indirect-segment pages (granted for the device's life).
    indirect: Pages,
    table: Outstanding<Inflight>,
    port: Option<u32>,
    front: FrontendInfo,
    backend: Option<BackendInfo>,
    features: Option<RingFeatures>,
    order: u32,
    fe: Frontend,
    watch: Option<Watch>,
    config: Config,
    handle: u16,
    failed: Option<String>,
    stats: DiskStats,
}

/// The ids under `device/vbd`, ascending.
pub fn list() -> Result<Vec<u32>, DiskError> {
    Ok(xenstore::with(|c| Ok(FrontendInfo::list(c, CLASS)))??)
}

impl Disk {
    /// Connects to device `device/vbd/<id>` (`None`: the first one) and
    /// returns once both ends are `Connected`. On failure everything set
    /// up is torn down again.
    pub fn open(id: Option<u32>, config: Config) -> Result<Disk, DiskError> {
        let ids = list()?;
        let id = match id {
            None => *ids.first().ok_or(DiskError::NoDevice)?,
            Some(i) if ids.contains(&i) => i,
            Some(_) => return Err(DiskError::NoDevice),
        };
        let me = xenstore::read_u64("domid")?;
        let own = u16::try_from(me).ok();
        let front = xenstore::with(|c| Ok(FrontendInfo::read(c, CLASS, id, own)))??;
        let watch = Watch::new(&front.backend_state_path())?;
        let mut disk = Disk {
            ring: None,
            ring_grants: Vec::new(),
            data: Pages::empty(),
            indirect: Pages::empty(),
            table: Outstanding::new(0),
            port: None,
            handle: front.id as u16,
            front,
            backend: None,
            features: None,
            order: 0,
            fe: Frontend::new(ConnectState::Initialised, config.timeouts),
            watch: Some(watch),
            config,
            failed: None,
            stats: DiskStats::default(),
        };
        // The backend's state first: one still holding an earlier
        // connection (ours, before a reopen) is reset before Initialising.
        disk.feed()?;
        let a = disk.fe.start(time::now_ns());
        match disk.drive(a, |fe| fe.phase() == Phase::Connected) {
            Ok(()) => Ok(disk),
            Err(e) => {
                disk.teardown();
                Err(e)
            }
        }
    }

    /// The backend's properties (valid once connected).
    pub fn info(&self) -> &BackendInfo {
        self.backend.as_ref().expect("connected disk has its info")
    }

    /// The ring features the backend offered at `InitWait`.
    pub fn ring_features(&self) -> Option<RingFeatures> {
        self.features
    }

    /// The frontend's device (id, directories, backend domain).
    pub fn device(&self) -> &FrontendInfo {
        &self.front
    }

    /// The disk's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.info().bytes()
    }

    /// The logical sector size in bytes.
    pub fn sector_size(&self) -> u32 {
        self.info().sector_size
    }

    /// Whether the backend exports the disk read-only (writes and
    /// discards are refused with [`BlkError::ReadOnly`], never sent).
    pub fn read_only(&self) -> bool {
        self.info().read_only()
    }

    /// Ring slots (requests in flight at most).
    pub fn ring_slots(&self) -> u32 {
        self.ring.as_ref().map_or(0, |r| r.nr_ents())
    }

    /// The ring's page order in use.
    pub fn ring_page_order(&self) -> u32 {
        self.order
    }

    /// Segments per request in use (11: direct requests only).
    pub fn max_segments(&self) -> u32 {
        match &self.backend {
            Some(b) if self.config.indirect => b.max_segments(),
            _ => BLKIF_MAX_SEGMENTS_PER_REQUEST as u32,
        }
    }

    /// Whether persistent grants are in use (ours announced, and the
    /// backend's `feature-persistent`).
    pub fn persistent(&self) -> bool {
        self.config.persistent && self.backend.as_ref().is_some_and(|b| b.persistent)
    }

    /// Counters so far.
    pub fn stats(&self) -> DiskStats {
        self.stats
    }

    // ------------------------------------------------------------ handshake

    /// Carries out `a` and the actions that follow until `done(fe)` or the
    /// frontend goes down.
    fn drive(&mut self, mut a: Action, done: impl Fn(&Frontend) -> bool) -> Result<(), DiskError> {
        loop {
            let now = time::now_ns();
            a = match a {
                Action::Wait { deadline_ns } => {
                    if done(&self.fe) {
                        return Ok(());
                    }
                    // The watch wakes us at once; the state is read again
                    // at least every POLL_NS whatever the watch does.
                    let until = deadline_ns.map_or(now + POLL_NS, |d| d.min(now + POLL_NS));
                    if let Some(w) = self.watch.as_mut() {
                        w.next(until)?;
                    } else {
                        time::sleep_until(until);
                    }
                    match self.fe.on_deadline(time::now_ns()) {
                        Action::Wait { .. } => self.feed()?,
                        other => other,
                    }
                }
                Action::SetState(s) => {
                    self.set_state(s)?;
                    self.feed()?
                }
                Action::WriteKeys { state } => match self.write_keys(state) {
                    Ok(()) => self.feed()?,
                    Err(e) => {
                        let _ = self.set_state(XenbusState::Closed);
                        self.teardown();
                        return Err(e);
                    }
                },
                Action::Connect { write_connected } => {
                    let dir = self.front.backend.path.clone();
                    let info = xenstore::with(|c| Ok(BackendInfo::read(c, &dir)))?;
                    match info {
                        Ok(info) => {
                            self.backend = Some(info);
                            if write_connected {
                                self.set_state(XenbusState::Connected)?;
                            }
                            self.feed()?
                        }
                        Err(e) => {
                            let _ = self.set_state(XenbusState::Closed);
                            self.teardown();
                            return Err(e.into());
                        }
                    }
                }
                Action::Closing => {
                    self.set_state(XenbusState::Closing)?;
                    self.feed()?
                }
                // Our close: the caller writes Closed, waits for the
                // backend to let go of the pages, then tears down.
                Action::Closed { error: None } if done(&self.fe) => return Ok(()),
                Action::Closed { error } => {
                    let _ = self.set_state(XenbusState::Closed);
                    self.teardown();
                    return Err(match error {
                        Some(e) => e.into(),
                        None => DiskError::Disconnected("closed".into()),
                    });
                }
            };
        }
    }

    /// Reads the backend's state and feeds it to the state machine.
    fn feed(&mut self) -> Result<Action, DiskError> {
        let path = self.front.backend_state_path();
        let v = match xenstore::read(&path) {
            Ok(v) => Some(v),
            Err(StoreError::Xs(xenstore::Error::Xs(XsError::ENOENT))) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(self
            .fe
            .on_backend_value(&path, v.as_deref(), time::now_ns()))
    }

    fn set_state(&mut self, s: XenbusState) -> Result<(), DiskError> {
        xenstore::write(&self.front.state_path(), &s.value())?;
        Ok(())
    }

    /// The ring pages, the event channel, the pools, and the keys.
    fn write_keys(&mut self, state: XenbusState) -> Result<(), DiskError> {
        let be = self.front.backend_id;
        let bdir = self.front.backend.path.clone();
        let features = xenstore::with(|c| Ok(RingFeatures::read(c, &bdir)))??;
        self.features = Some(features);
        let order = features.ring_page_order(self.config.ring_page_order);
        let n = 1usize << order;
        let pages = mm::alloc_shared_pages(n).map_err(|e| resource("ring pages")(&e))?;
        let mut refs = Vec::with_capacity(n);
        for p in &pages {
            let g = grant_table::grant_page(be, p, false)
                .map_err(|e| resource("grant ring page")(&e))?;
            refs.push(g.gref().0);
            self.ring_grants.push(g);
        }
        // SAFETY: `pages` are consecutive frames, mapped RW one after the
        // other at their pseudo-physical addresses; each stays allocated
        // while its grant in `ring_grants` (and, once revoked, the grant
        // table's deferred list) holds a handle. `ring` is declared before
        // `ring_grants` and `teardown` drops the ring before revoking, so
        // the view never outlives the pages, which are only accessed
        // through SharedMem.
        let mem = unsafe { SharedMem::from_raw(pages[0].va() as *mut u8, n * PAGE_SIZE) };
        drop(pages);
        let ring = FrontRing::init_shared(mem).map_err(|e| resource("ring")(&e))?;
        let slots = ring.nr_ents();
        self.ring = Some(ring);
        self.order = order;
        let port = event::alloc_unbound(be).map_err(|e| resource("alloc_unbound")(&e))?;
        self.port = Some(port);
        let segs = if self.config.indirect {
            features.max_segments()
        } else {
            BLKIF_MAX_SEGMENTS_PER_REQUEST as u32
        };
        let n = self.config.pool_pages.max(segs);
        self.data = Pages::new(n, be, self.config.persistent)?;
        if segs > BLKIF_MAX_SEGMENTS_PER_REQUEST as u32 {
            // One page of 512 segments per indirect request (≤ 256
            // segments each); an indirect request takes at least 12 data
            // pages, so no more than n / 12 are in flight.
            let per = crate::xen_abi::blkif::indirect_pages(segs as usize) as u32;
            let ind = (n / (BLKIF_MAX_SEGMENTS_PER_REQUEST as u32 + 1) + 1).min(slots) * per;
            // Granted writable although the backend only reads them: with
            // persistent grants Linux blkback maps every page, indirect
            // ones included, without GNTMAP_readonly (`xen_blkbk_map`),
            // and a read-only grant would fail that map.
            self.indirect = Pages::new(ind, be, true)?;
        }
        self.stats.data_grants += if self.config.persistent {
            u64::from(n)
        } else {
            0
        };
        self.table = Outstanding::new(slots);
        let keys = connect_keys(
            &features,
            order,
            &[QueueRing {
                ring_refs: &refs,
                event_channel: port,
            }],
            self.config.persistent,
            state,
        )?;
        let dir = self.front.dir.clone();
        xenstore::with(|c| Ok(write_keys(c, &dir, &keys, MAX_TX_ATTEMPTS)))??;
        Ok(())
    }

    /// Drops the ring, revokes every grant (deferred while the backend
    /// still maps the page), closes the port. Idempotent.
    fn teardown(&mut self) {
        // Requests in flight die with the ring.
        let _ = self.table.drain();
        self.ring = None;
        for g in self.ring_grants.drain(..) {
            let _ = grant_table::revoke(g);
        }
        self.data.revoke_all();
        self.indirect.revoke_all();
        if let Some(p) = self.port.take() {
            let _ = event::close(p);
        }
        grant_table::poll_deferred();
    }

    /// Our orderly close: `Closing`, the backend's `Closing`, `Closed`,
    /// the backend's `Closed` (deadline: [`Timeouts::close_ns`]), then
    /// revokes the grants and closes the port. No request is in flight
    /// between calls.
    pub fn close(mut self) -> Result<(), DiskError> {
        if let Some(why) = self.failed.take() {
            // Down already (torn down when it failed).
            self.watch = None;
            return Err(DiskError::Disconnected(why));
        }
        let a = self.fe.close(time::now_ns());
        let r = self.drive(a, |fe| fe.phase() == Phase::Closed);
        // Now say Closed: blkback disconnects (unmaps the ring and the
        // data pages) when the frontend is Closed, then goes Closed.
        let said = self.set_state(XenbusState::Closed);
        let deadline = time::now_ns() + self.config.timeouts.close_ns;
        let path = self.front.backend_state_path();
        loop {
            match xenstore::read(&path) {
                Ok(v) if v == XenbusState::Closed.value() => break,
                Err(StoreError::Xs(xenstore::Error::Xs(XsError::ENOENT))) => break,
                _ => {}
            }
            if time::now_ns() >= deadline {
                break;
            }
            if let Some(w) = self.watch.as_mut() {
                let _ = w.next(deadline);
            }
        }
        self.teardown();
        self.watch = None;
        r?;
        said
    }

    // ------------------------------------------------------------------ I/O

    fn check(&self) -> Result<(), DiskError> {
        match &self.failed {
            Some(why) => Err(DiskError::Disconnected(why.clone())),
            None if self.ring.is_none() => Err(DiskError::Disconnected("not connected".into())),
            None => Ok(()),
        }
    }

    /// Goes down after a protocol error, a timeout or the backend's close:
    /// the ring is no longer trusted; requests in flight fail; every later
    /// call fails with the same reason.
    fn fail(&mut self, e: DiskError) -> DiskError {
        let why = format!("{e}");
        self.failed.get_or_insert(why);
        let _ = self.set_state(XenbusState::Closed);
        self.teardown();
        e
    }

    /// Reads `buf.len()` bytes at byte `offset` of the disk: any offset,
    /// any length (partial sectors at either end are read whole and the
    /// part asked for copied out).
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.check()?;
        self.within(offset, buf.len())?;
        let span = Span::cut(offset, buf.len() as u64, self.sector_size());
        let mut sector = vec![0u8; self.sector_size() as usize];
        let mut at = 0;
        if let Some((start, off, n)) = span.head {
            self.io(Op::Read, start, IoBuf::Read(&mut sector))?;
            buf[..n].copy_from_slice(&sector[off..off + n]);
            at = n;
        }
        if let Some((pos, n)) = span.middle {
            self.io(Op::Read, pos, IoBuf::Read(&mut buf[at..at + n as usize]))?;
            at += n as usize;
        }
        if let Some((start, n)) = span.tail {
            self.io(Op::Read, start, IoBuf::Read(&mut sector))?;
            buf[at..at + n].copy_from_slice(&sector[..n]);
        }
        Ok(())
    }

    /// Writes `data` at byte `offset` of the disk: any offset, any length
    /// (a partial sector at either end is read, patched and written back).
    /// Durable only after [`flush`](Self::flush). A read-only disk refuses
    /// with [`BlkError::ReadOnly`] before anything is sent.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.check()?;
        if self.read_only() {
            return Err(BlkError::ReadOnly.into());
        }
        self.within(offset, data.len())?;
        let span = Span::cut(offset, data.len() as u64, self.sector_size());
        let mut sector = vec![0u8; self.sector_size() as usize];
        let mut at = 0;
        if let Some((start, off, n)) = span.head {
            self.io(Op::Read, start, IoBuf::Read(&mut sector))?;
            sector[off..off + n].copy_from_slice(&data[..n]);
            self.io(Op::Write, start, IoBuf::Write(&sector))?;
            at = n;
        }
        if let Some((pos, n)) = span.middle {
            self.io(Op::Write, pos, IoBuf::Write(&data[at..at + n as usize]))?;
            at += n as usize;
        }
        if let Some((start, n)) = span.tail {
            self.io(Op::Read, start, IoBuf::Read(&mut sector))?;
            sector[..n].copy_from_slice(&data[at..at + n]);
            self.io(Op::Write, start, IoBuf::Write(&sector))?;
        }
        Ok(())
    }

    /// The range ends within the disk, or [`BlkError::BeyondEnd`].
    fn within(&self, offset: u64, len: usize) -> Result<(), DiskError> {
        let disk_bytes = self.bytes();
        match offset.checked_add(len as u64) {
            Some(end) if end <= disk_bytes => Ok(()),
            _ => Err(BlkError::BeyondEnd {
                offset,
                len: len as u64,
                disk_bytes,
            }
            .into()),
        }
    }

    /// `BLKIF_OP_FLUSH_DISKCACHE`: everything written before is durable
    /// when it returns ([`BlkError::NotSupported`] without
    /// `feature-flush-cache`).
    pub fn flush(&mut self) -> Result<(), DiskError> {
        self.check()?;
        let limits = self.info().limits();
        // Refused without feature-flush-cache, before anything is queued.
        flush_request(0, self.handle, &limits)?;
        let id = self.slot(BLKIF_OP_FLUSH_DISKCACHE, 0)?;
        let req = flush_request(id, self.handle, &limits)?;
        self.single(req, 0)
    }

    /// `BLKIF_OP_DISCARD` of `len` bytes at `offset` (both multiples of
    /// the sector size): the backend may drop the data (a loop device over
    /// a file punches a hole; it reads back as zeros).
    /// [`BlkError::NotSupported`] without `feature-discard`.
    pub fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.check()?;
        let limits = self.info().limits();
        let secure = false;
        plan_discard(offset, len, secure, 0, self.handle, &limits)?;
        let id = self.slot(BLKIF_OP_DISCARD, offset)?;
        let req = plan_discard(offset, len, secure, id, self.handle, &limits)?;
        self.single(req.to_slot(), offset / 512)
    }

    /// A table slot for a request without data pages.
    fn slot(&mut self, op: u8, sector: u64) -> Result<u64, DiskError> {
        self.table
            .insert(
                op,
                false,
                Inflight {
                    req: 0,
                    pages: Vec::new(),
                    indirect: Vec::new(),
                    sector,
                    issued_ns: time::now_ns(),
                },
            )
            .ok_or_else(|| DiskError::Disconnected("ring full".into()))
    }

    /// Issues one request without data and waits for it (and anything
    /// else in flight).
    fn single(&mut self, req: BlkifRequest, sector: u64) -> Result<(), DiskError> {
        self.push(req)?;
        self.kick();
        let mut err = None;
        while self.table.in_flight() > 0 {
            for c in self.reap()? {
                if c.status != Status::Okay && err.is_none() {
                    err = Some(DiskError::Io {
                        sector,
                        status: c.status,
                    });
                }
            }
        }
        err.map_or(Ok(()), Err)
    }

    fn push(&mut self, req: BlkifRequest) -> Result<(), DiskError> {
        let ring = self.ring.as_mut().expect("checked");
        if let Err(e) = ring.push_request(req) {
            return Err(self.fail(BlkError::from(e).into()));
        }
        self.stats.requests += 1;
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.table.in_flight());
        Ok(())
    }

    fn kick(&mut self) {
        let ring = self.ring.as_mut().expect("checked");
        if ring.push_requests_and_check_notify() {
            if let Some(p) = self.port {
                event::notify(p);
                self.stats.notifies += 1;
            }
        }
    }

    /// Puts planned request `i` on the ring through pool pages: `false`
    /// if the pool or the table has no room for it now.
    fn issue(
        &mut self,
        op: Op,
        plan: &[Planned],
        i: usize,
        buf: &IoBuf<'_>,
    ) -> Result<bool, DiskError> {
        let p = &plan[i];
        let be = self.front.backend_id;
        let nind = p.indirect_pages();
        if self.table.is_full() || (self.indirect.pool.available() as usize) < nind {
            return Ok(false);
        }
        let Some(pages) = self.data.pool.take(p.segments.len()) else {
            return Ok(false);
        };
        let ind = self.indirect.pool.take(nind).expect("checked available");
        let first = p.first_page();
        if let IoBuf::Write(data) = buf {
            let at = p.io_offset as usize;
            let src = &data[at..at + p.len as usize];
            let d = &self.data;
            p.copy_to_pages(src, |pg| d.mem(pages[(pg - first) as usize]));
        }
        let mut grefs = Vec::with_capacity(pages.len());
        for &q in &pages {
            match self.data.gref(q, be, &mut self.stats.data_grants) {
                Ok(r) => grefs.push(r),
                Err(e) => {
                    self.data.give_back(&pages, self.config.persistent);
                    self.indirect.pool.give_back(&ind);
                    return Err(e);
                }
            }
        }
        let gref_of = |pg: u32| grefs[(pg - first) as usize];
        let req = if nind == 0 {
            None
        } else {
            let views: Vec<SharedMem<'_>> = ind.iter().map(|&q| self.indirect.mem(q)).collect();
            p.write_indirect_segments(&views, gref_of);
            let mut made = 0;
            let irefs: Vec<u32> = ind
                .iter()
                .map(|&q| self.indirect.gref(q, be, &mut made).expect("persistent"))
                .collect();
            Some(irefs)
        };
        let sector = p.sector;
        let id = self
            .table
            .insert(
                op.blkif(),
                nind > 0,
                Inflight {
                    req: i,
                    pages,
                    indirect: ind,
                    sector,
                    issued_ns: time::now_ns(),
                },
            )
            .expect("checked not full");
        let slot = match req {
            None => p
                .direct(op, id, self.handle, gref_of)
                .expect("planned with at most 11 segments"),
            Some(irefs) => {
                self.stats.indirect += 1;
                p.indirect(op, id, self.handle, &irefs)
                    .expect("indirect pages sized by the plan")
                    .to_slot()
            }
        };
        self.push(slot)?;
        Ok(true)
    }

    /// A sector-aligned read or write.
    fn io(&mut self, op: Op, offset: u64, mut buf: IoBuf<'_>) -> Result<(), DiskError> {
        self.check()?;
        let mut limits = self.info().limits();
        limits.max_segments = self.max_segments();
        let plan = plan_io(op, offset, buf.len() as u64, 0, &limits)?;
        let mut next = 0;
        let mut first_err: Option<DiskError> = None;
        while next < plan.len() || self.table.in_flight() > 0 {
            // Fill the ring.
            let mut pushed = false;
            while next < plan.len() && self.issue(op, &plan, next, &buf)? {
                pushed = true;
                next += 1;
            }
            if pushed {
                self.kick();
            }
            // Collect what has come back; wait if nothing has.
            for c in self.reap()? {
                let inflight = c.data;
                let p = &plan[inflight.req];
                if c.status == Status::Okay {
                    if let IoBuf::Read(out) = &mut buf {
                        let at = p.io_offset as usize;
                        let dst = &mut out[at..at + p.len as usize];
                        let first = p.first_page();
                        let d = &self.data;
                        p.copy_from_pages(dst, |pg| d.mem(inflight.pages[(pg - first) as usize]));
                    }
                    self.stats.bytes += p.len;
                } else if first_err.is_none() {
                    first_err = Some(DiskError::Io {
                        sector: inflight.sector,
                        status: c.status,
                    });
                }
                self.data.give_back(&inflight.pages, self.config.persistent);
                self.indirect.pool.give_back(&inflight.indirect);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Every response there is, validated: at least one, waiting for it
    /// while requests are in flight (none: an empty list). While waiting,
    /// the backend's state is checked (it leaving `Connected` disconnects)
    /// and the oldest request's deadline is enforced. Any error has taken
    /// the device down.
    fn reap(&mut self) -> Result<Vec<Completion<Inflight>>, DiskError> {
        let port = self.port.expect("connected");
        let mut out = Vec::new();
        loop {
            event::clear_pending(port);
            let ring = self.ring.as_mut().expect("checked");
            loop {
                let rsp = match ring.take_response() {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => return Err(self.fail(BlkError::from(e).into())),
                };
                match self.table.complete(rsp) {
                    Ok(c) => out.push(c),
                    Err(e) => return Err(self.fail(e.into())),
                }
            }
            self.stats.responses += out.len() as u64;
            if !out.is_empty() || self.table.in_flight() == 0 {
                return Ok(out);
            }
            match self
                .ring
                .as_mut()
                .expect("checked")
                .final_check_for_responses()
            {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Err(self.fail(BlkError::from(e).into())),
            }
            self.backend_still_connected()?;
            let now = time::now_ns();
            let oldest = self
                .table
                .in_flight_data()
                .map(|d| d.issued_ns)
                .min()
                .unwrap_or(now);
            let deadline = oldest.saturating_add(self.config.request_timeout_ns);
            if now >= deadline {
                let e = DiskError::Timeout {
                    ms: (now - oldest) / 1_000_000,
                    in_flight: self.table.in_flight(),
                };
                return Err(self.fail(e));
            }
            self.stats.waits += 1;
            event::wait(port, deadline.min(now + IO_POLL_NS));
        }
    }

    /// Looks at the backend's state if its watch fired: anything but
    /// `Connected` (`xl block-detach` writes `Closing`; a vanished or
    /// garbage state) takes the device down with the state machine's
    /// error.
    fn backend_still_connected(&mut self) -> Result<(), DiskError> {
        let Some(w) = self.watch.as_mut() else {
            return Ok(());
        };
        let fired = match w.next(0) {
            Ok(f) => f.is_some(),
            Err(e) => return Err(self.fail(e.into())),
        };
        if !fired {
            return Ok(());
        }
        match self.feed() {
            Ok(Action::Closed { error }) => {
                let e = error.map_or_else(
                    || DiskError::Disconnected("backend closed".into()),
                    DiskError::Xenbus,
                );
                Err(self.fail(e))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl Drop for Disk {
    /// A disk dropped without [`Disk::close`] is torn down abruptly: our
    /// state `Closed`, grants revoked (deferred while mapped), port closed.
    fn drop(&mut self) {
        if self.ring.is_some() || self.port.is_some() || !self.data.pages.is_empty() {
            let _ = self.set_state(XenbusState::Closed);
            self.teardown();
        }
    }
}

/// The caller's buffer of one I/O.
enum IoBuf<'b> {
    Read(&'b mut [u8]),
    Write(&'b [u8]),
}

impl IoBuf<'_> {
    fn len(&self) -> usize {
        match self {
            IoBuf::Read(b) => b.len(),
            IoBuf::Write(b) => b.len(),
        }
    }
}
