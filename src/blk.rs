//! Block devices: blkfront against a stock Linux blkback, over the
//! kernel's grant table, event channels and XenStore. The protocol logic
//! (key parsing, request planning, response validation) is
//! [`crate::drivers::blkfront`]; the handshake is
//! [`crate::xenbus::Frontend`]; this module carries them out.
//!
//! ```ignore
//! let mut disk = xenfront::blk::Disk::open(None, Default::default())?; // first device/vbd
//! let info = disk.info().clone();
//! let mut buf = alloc::vec![0u8; 1 << 20];
//! disk.read(0, &mut buf)?;          // byte offset, sector-aligned
//! disk.write(0, &buf)?;
//! disk.flush()?;
//! disk.close()?;
//! ```
//!
//! What it does (issue 14, first step):
//!
//! * **Connect** ([`Disk::open`]): list `device/vbd`, read and cross-check
//!   the frontend's `backend`/`backend-id`, write `Initialising`, wait
//!   (deadline) for the backend's `InitWait`, read its
//!   [`RingFeatures`], set up one ring page (`ring-page-order` 0) granted
//!   to the backend, an unbound event channel and a pool of data pages,
//!   write the connection keys in one transaction
//!   ([`write_keys`]) with `Initialised`, wait
//!   (deadline) for `Connected`, read [`BackendInfo`] and go `Connected`.
//! * **I/O** ([`Disk::read`], [`Disk::write`], [`Disk::flush`]):
//!   blocking; the I/O is planned by
//!   [`plan_io`] into direct requests of
//!   up to 11 segments and the ring is kept as full as the pool allows.
//!   Every data page is a bounce page of a fixed pool, granted once for
//!   the device's life (we announce `feature-persistent` = 1: blkback may
//!   keep them mapped). Each response is copied out of the ring and
//!   validated by [`Outstanding::complete`]; a response that breaks the
//!   protocol, or no response for [`Config::request_timeout_ns`],
//!   disconnects the device ([`DiskError::Disconnected`]); a
//!   `BLKIF_RSP_ERROR` fails only that I/O ([`DiskError::Io`]).
//! * **Close** ([`Disk::close`]): `Closing`, wait for the backend to
//!   follow, `Closed`, wait (deadline) for the backend's `Closed` (it
//!   unmaps the ring and data pages then), revoke every grant (deferred
//!   while still mapped: [`grant_table::poll_deferred`] finishes the job),
//!   close the event channel.
//!
//! Not yet: multi-page rings, indirect descriptors, several queues,
//! discard, unaligned I/O (offset and length must be multiples of the
//! sector size), resize and reconnect.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::drivers::blkfront::{
    connect_keys, flush_request, plan_io, Outstanding, PagePool, Planned, QueueRing, Status,
};
use crate::event;
use crate::grant_table::{self, Grant};
use crate::mm;
use crate::ring::FrontRing;
use crate::shared::{SharedMem, PAGE_SIZE};
use crate::time;
use crate::xen_abi::blkif::{
    BlkifRequest, BlkifResponse, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE,
};
use crate::xenbus::{
    write_keys, Action, ConnectState, Frontend, FrontendInfo, Timeouts, XenbusError, XenbusState,
    MAX_TX_ATTEMPTS,
};
use crate::xenstore::{self, StoreError, Watch, XsError};

pub use crate::drivers::blkfront::{BackendInfo, BlkError, Op, RingFeatures};

/// Longest sleep of a handshake wait between two reads of the backend's
/// state (the watch normally ends it sooner).
const POLL_NS: u64 = 200_000_000;

/// The device class this module drives.
pub const CLASS: &str = "vbd";

/// Tunables of [`Disk::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long each handshake wait may last.
    pub timeouts: Timeouts,
    /// No response for this long while requests are in flight →
    /// [`DiskError::Timeout`] (and the device disconnects).
    pub request_timeout_ns: u64,
    /// Bounce pages in the pool (each granted once for the device's
    /// life); at least 11 (one full request) are used.
    pub pool_pages: u32,
}

impl Default for Config {
    /// [`Timeouts::default`], 30 s per request, 352 pages (a full
    /// one-page ring of 32 requests × 11 segments, 1.4 MiB).
    fn default() -> Self {
        Config {
            timeouts: Timeouts::default(),
            request_timeout_ns: 30_000_000_000,
            pool_pages: 32 * BLKIF_MAX_SEGMENTS_PER_REQUEST as u32,
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
    /// No response for `ms` milliseconds with `in_flight` requests out.
    Timeout {
        /// How long we waited.
        ms: u64,
        /// Requests outstanding.
        in_flight: u32,
    },
    /// The device is down: an earlier protocol error or timeout (named),
    /// or it was closed.
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
                write!(f, "blk: no response in {ms} ms ({in_flight} in flight)")
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
    /// Responses validated.
    pub responses: u64,
    /// Notifications sent to the backend.
    pub notifies: u64,
    /// Sleeps waiting for responses.
    pub waits: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u32,
}

/// A request in flight: which planned request, its pool pages.
#[derive(Debug)]
struct Inflight {
    req: usize,
    pages: Vec<u32>,
    sector: u64,
}

/// One connected virtual block device.
pub struct Disk {
    // Declared (so dropped) before `ring_grant`: the ring view points into
    // that grant's page.
    ring: Option<FrontRing<'static, BlkifRequest, BlkifResponse>>,
    ring_grant: Option<Grant>,
    /// The pool's pages, granted to the backend for the device's life.
    pages: Vec<Grant>,
    pool: PagePool,
    table: Outstanding<Inflight>,
    port: Option<u32>,
    front: FrontendInfo,
    backend: Option<BackendInfo>,
    features: Option<RingFeatures>,
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
            ring_grant: None,
            pages: Vec::new(),
            pool: PagePool::new(0),
            table: Outstanding::new(0),
            port: None,
            handle: front.id as u16,
            front,
            backend: None,
            features: None,
            fe: Frontend::new(ConnectState::Initialised, config.timeouts),
            watch: Some(watch),
            config,
            failed: None,
            stats: DiskStats::default(),
        };
        let a = disk.fe.start(time::now_ns());
        match disk.drive(a, |fe| fe.phase() == crate::xenbus::Phase::Connected) {
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

    /// Ring slots (requests in flight at most).
    pub fn ring_slots(&self) -> u32 {
        self.ring.as_ref().map_or(0, |r| r.nr_ents())
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
                            self.connected(info)?;
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

    /// The ring page, the event channel, the pool, and the keys.
    fn write_keys(&mut self, state: XenbusState) -> Result<(), DiskError> {
        let be = self.front.backend_id;
        let bdir = self.front.backend.path.clone();
        let features = xenstore::with(|c| Ok(RingFeatures::read(c, &bdir)))??;
        self.features = Some(features);
        let page = mm::alloc_shared_page().map_err(|e| resource("ring page")(&e))?;
        // SAFETY: the page stays allocated and mapped while `ring_grant`
        // (which holds a handle to it, and after revocation the grant
        // table's deferred list) lives; `ring` is declared before
        // `ring_grant` and `teardown` drops the ring before revoking the
        // grant, so the view never outlives the page. The page is only
        // accessed through SharedMem.
        let mem = unsafe { SharedMem::from_raw(page.va() as *mut u8, PAGE_SIZE) };
        let ring = FrontRing::init_shared(mem).map_err(|e| resource("ring")(&e))?;
        let slots = ring.nr_ents();
        self.ring = Some(ring);
        let grant = grant_table::grant_page(be, &page, false)
            .map_err(|e| resource("grant ring page")(&e))?;
        let gref = grant.gref().0;
        self.ring_grant = Some(grant);
        let port = event::alloc_unbound(be).map_err(|e| resource("alloc_unbound")(&e))?;
        self.port = Some(port);
        let n = self
            .config
            .pool_pages
            .max(BLKIF_MAX_SEGMENTS_PER_REQUEST as u32);
        for _ in 0..n {
            let p = mm::alloc_shared_page().map_err(|e| resource("data page")(&e))?;
            let g = grant_table::grant_page(be, &p, false)
                .map_err(|e| resource("grant data page")(&e))?;
            self.pages.push(g);
        }
        self.pool = PagePool::new(n);
        self.table = Outstanding::new(slots);
        let keys = connect_keys(
            &features,
            0,
            &[QueueRing {
                ring_refs: &[gref],
                event_channel: port,
            }],
            true,
            state,
        )?;
        let dir = self.front.dir.clone();
        xenstore::with(|c| Ok(write_keys(c, &dir, &keys, MAX_TX_ATTEMPTS)))??;
        Ok(())
    }

    fn connected(&mut self, info: BackendInfo) -> Result<(), DiskError> {
        self.backend = Some(info);
        Ok(())
    }

    /// Drops the ring, revokes every grant (deferred while the backend
    /// still maps the page), closes the port. Idempotent.
    fn teardown(&mut self) {
        // Requests in flight die with the ring.
        let _ = self.table.drain();
        self.ring = None;
        if let Some(g) = self.ring_grant.take() {
            let _ = grant_table::revoke(g);
        }
        for g in self.pages.drain(..) {
            let _ = grant_table::revoke(g);
        }
        self.pool = PagePool::new(0);
        if let Some(p) = self.port.take() {
            let _ = event::close(p);
        }
        grant_table::poll_deferred();
    }

    /// Our orderly close: waits for requests in flight (none are, between
    /// calls), `Closing`, the backend's `Closing`, `Closed`, the backend's
    /// `Closed` (deadline: [`Timeouts::close_ns`]), then revokes the
    /// grants and closes the port.
    pub fn close(mut self) -> Result<(), DiskError> {
        let a = self.fe.close(time::now_ns());
        let r = self.drive(a, |fe| fe.phase() == crate::xenbus::Phase::Closed);
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

    /// Goes down after a protocol error or timeout: the ring is no longer
    /// trusted; every later call fails with the same reason.
    fn fail(&mut self, e: DiskError) -> DiskError {
        let why = format!("{e}");
        self.failed.get_or_insert(why);
        let _ = self.set_state(XenbusState::Closed);
        self.teardown();
        e
    }

    /// Reads `buf.len()` bytes at byte `offset` of the disk (both
    /// multiples of the sector size).
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.io(Op::Read, offset, IoBuf::Read(buf))
    }

    /// Writes `data` at byte `offset` of the disk (both multiples of the
    /// sector size). Durable only after [`flush`](Self::flush).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.io(Op::Write, offset, IoBuf::Write(data))
    }

    /// `BLKIF_OP_FLUSH_DISKCACHE`: everything written before is durable
    /// when it returns ([`BlkError::NotSupported`] without
    /// `feature-flush-cache`).
    pub fn flush(&mut self) -> Result<(), DiskError> {
        self.check()?;
        let limits = self.info().limits();
        // Refused without feature-flush-cache, before anything is queued.
        flush_request(0, self.handle, &limits)?;
        let Some(id) = self.table.insert(
            BLKIF_OP_FLUSH_DISKCACHE,
            false,
            Inflight {
                req: 0,
                pages: Vec::new(),
                sector: 0,
            },
        ) else {
            return Err(DiskError::Disconnected("ring full".into()));
        };
        let req = flush_request(id, self.handle, &limits)?;
        self.push(req)?;
        self.kick();
        let mut err = None;
        self.complete_all(&mut |_, c| {
            if c.status != Status::Okay {
                err = Some(DiskError::Io {
                    sector: 0,
                    status: c.status,
                });
            }
        })?;
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

    fn io(&mut self, op: Op, offset: u64, mut buf: IoBuf<'_>) -> Result<(), DiskError> {
        self.check()?;
        let mut limits = self.info().limits();
        // Direct requests only for now (no indirect descriptors yet).
        limits.max_segments = BLKIF_MAX_SEGMENTS_PER_REQUEST as u32;
        let plan = plan_io(op, offset, buf.len() as u64, 0, &limits)?;
        let mut next = 0;
        let mut first_err: Option<DiskError> = None;
        while next < plan.len() || self.table.in_flight() > 0 {
            // Fill the ring.
            let mut pushed = false;
            while next < plan.len() && !self.table.is_full() {
                let p = &plan[next];
                let Some(pages) = self.pool.take(p.segments.len()) else {
                    break;
                };
                if let IoBuf::Write(data) = &buf {
                    let at = p.io_offset as usize;
                    let src = &data[at..at + p.len as usize];
                    let views = &self.pages;
                    let first = p.first_page();
                    p.copy_to_pages(src, |pg| views[pages[(pg - first) as usize] as usize].mem());
                }
                let first = p.first_page();
                let grefs: Vec<u32> = pages
                    .iter()
                    .map(|&q| self.pages[q as usize].gref().0)
                    .collect();
                let sector = p.sector;
                let Some(id) = self.table.insert(
                    op.blkif(),
                    false,
                    Inflight {
                        req: next,
                        pages,
                        sector,
                    },
                ) else {
                    break;
                };
                let req = p
                    .direct(op, id, self.handle, |pg| grefs[(pg - first) as usize])
                    .expect("plan_io with 11 segments plans direct requests");
                self.push(req)?;
                pushed = true;
                next += 1;
            }
            if pushed {
                self.kick();
            }
            // Collect what has come back; wait if nothing has.
            let views = &self.pages;
            let pool = &mut self.pool;
            let mut on = |plan_req: &Planned, inflight: Inflight, status: Status| {
                if status == Status::Okay {
                    if let IoBuf::Read(out) = &mut buf {
                        let at = plan_req.io_offset as usize;
                        let dst = &mut out[at..at + plan_req.len as usize];
                        let first = plan_req.first_page();
                        plan_req.copy_from_pages(dst, |pg| {
                            views[inflight.pages[(pg - first) as usize] as usize].mem()
                        });
                    }
                } else if first_err.is_none() {
                    first_err = Some(DiskError::Io {
                        sector: inflight.sector,
                        status,
                    });
                }
                pool.give_back(&inflight.pages);
            };
            Self::reap(
                &mut self.ring,
                &mut self.table,
                &mut self.stats,
                self.port,
                self.config.request_timeout_ns,
                &plan,
                &mut on,
            )
            .map_err(|e| self.fail(e))?;
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Takes every response there is (at least one, waiting up to the
    /// request timeout if none is there) and hands each validated one to
    /// `on`.
    fn reap(
        ring: &mut Option<FrontRing<'static, BlkifRequest, BlkifResponse>>,
        table: &mut Outstanding<Inflight>,
        stats: &mut DiskStats,
        port: Option<u32>,
        timeout_ns: u64,
        plan: &[Planned],
        on: &mut dyn FnMut(&Planned, Inflight, Status),
    ) -> Result<(), DiskError> {
        let ring = ring.as_mut().expect("checked");
        let port = port.expect("connected");
        let t0 = time::now_ns();
        loop {
            event::clear_pending(port);
            let mut got = 0;
            while let Some(rsp) = ring.take_response().map_err(BlkError::from)? {
                let c = table.complete(rsp)?;
                stats.responses += 1;
                got += 1;
                on(&plan[c.data.req], c.data, c.status);
            }
            if got > 0 || table.in_flight() == 0 {
                return Ok(());
            }
            if ring.final_check_for_responses().map_err(BlkError::from)? {
                continue;
            }
            let now = time::now_ns();
            if now - t0 >= timeout_ns {
                return Err(DiskError::Timeout {
                    ms: (now - t0) / 1_000_000,
                    in_flight: table.in_flight(),
                });
            }
            stats.waits += 1;
            event::wait(port, (t0 + timeout_ns).min(now + 100_000_000));
        }
    }

    /// Waits for every request in flight (flush), handing each to `on`.
    fn complete_all(
        &mut self,
        on: &mut dyn FnMut(u64, crate::drivers::blkfront::Completion<Inflight>),
    ) -> Result<(), DiskError> {
        let port = self.port.expect("connected");
        let t0 = time::now_ns();
        while self.table.in_flight() > 0 {
            event::clear_pending(port);
            let ring = self.ring.as_mut().expect("checked");
            let mut got = false;
            loop {
                match ring.take_response() {
                    Ok(Some(rsp)) => match self.table.complete(rsp) {
                        Ok(c) => {
                            self.stats.responses += 1;
                            got = true;
                            on(c.id, c);
                        }
                        Err(e) => return Err(self.fail(e.into())),
                    },
                    Ok(None) => break,
                    Err(e) => return Err(self.fail(BlkError::from(e).into())),
                }
            }
            if got || self.table.in_flight() == 0 {
                continue;
            }
            let now = time::now_ns();
            if now - t0 >= self.config.request_timeout_ns {
                let e = DiskError::Timeout {
                    ms: (now - t0) / 1_000_000,
                    in_flight: self.table.in_flight(),
                };
                return Err(self.fail(e));
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
            self.stats.waits += 1;
            event::wait(
                port,
                (t0 + self.config.request_timeout_ns).min(now + 100_000_000),
            );
        }
        Ok(())
    }
}

impl Drop for Disk {
    /// A disk dropped without [`Disk::close`] is torn down abruptly: our
    /// state `Closed`, grants revoked (deferred while mapped), port closed.
    fn drop(&mut self) {
        if self.ring.is_some() || self.port.is_some() || !self.pages.is_empty() {
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
