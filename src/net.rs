//! Network interfaces: netfront against a stock Linux netback, over the
//! kernel's grant table, event channels and XenStore, as a smoltcp
//! [`Device`] (re-exported as [`crate::smoltcp`]). The protocol logic
//! (keys, the tx slot builder, response checks) is
//! [`crate::drivers::netfront`]; the handshake is
//! [`crate::xenbus::Frontend`]; this module carries them out.
//!
//! * **Connect** ([`Net::open`]): list `device/vif`, cross-check
//!   `backend`/`backend-id`, read `mac`, write `Initialising`, wait
//!   (deadline) for netback's `InitWait`, read its [`BackendFeatures`]
//!   (`feature-rx-copy` required), grant one tx and one rx ring page, post
//!   every rx slot with a granted page, allocate one event channel, and
//!   write the keys with state `Connected` (netback connects only to a
//!   Connected frontend); then wait (deadline) for netback's `Connected`,
//!   which it writes only after its hotplug script said
//!   `hotplug-status=connected`.
//! * **Packets**: one page per packet each way (no `feature-sg`, so netback
//!   keeps the MTU at 1500). Transmit copies the frame into a bounce page
//!   of a fixed pool, granted for the device's life, and queues one slot
//!   ([`plan_tx`]); receive takes each response copied out and checked by
//!   [`RxRing`], copies the frame out once and reposts the page at once in
//!   the same slot. `feature-no-csum-offload` = 1: smoltcp verifies every
//!   checksum, so netback fills them in for frames from Dom0's own stack.
//! * **Errors**: a response that breaks the protocol, or the backend
//!   leaving `Connected` (`xl network-detach`), takes the device down:
//!   grants revoked (deferred while netback maps them), port closed, and
//!   [`Net::error`] names the cause; the smoltcp device then neither sends
//!   nor receives.

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::drivers::blkfront::PagePool;
use crate::drivers::netfront::{
    connect_keys, parse_mac, plan_tx, BackendFeatures, NetError, Offloads, Ports, RxRing, TxDone,
    TxTable, FEATURE_KEYS,
};
use crate::event;
use crate::grant_table::{self, Grant};
use crate::mm;
use crate::ring::FrontRing;
use crate::shared::{SharedMem, PAGE_SIZE};
use crate::time;
use crate::xen_abi::netif::{NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse};
use crate::xenbus::{
    write_keys, Action, ConnectState, Frontend, FrontendInfo, Phase, Timeouts, XenbusError,
    XenbusState, MAX_TX_ATTEMPTS,
};
use crate::xenstore::{self, StoreError, Watch, XsError};

/// Longest sleep of a handshake wait between two reads of the backend's
/// state.
const POLL_NS: u64 = 200_000_000;
/// Ethernet frame bytes without the FCS at an MTU of 1500.
pub const MAX_FRAME: usize = 1514;

/// The device class this module drives.
pub const CLASS: &str = "vif";

/// Tunables of [`Net::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long each handshake wait may last (connect includes netback's
    /// hotplug script, `vif-bridge`).
    pub timeouts: Timeouts,
    /// Bounce pages for transmit (frames in flight at most).
    pub tx_pages: u32,
}

impl Default for Config {
    /// [`Timeouts::default`], 128 tx pages.
    fn default() -> Self {
        Config {
            timeouts: Timeouts::default(),
            tx_pages: 128,
        }
    }
}

/// Why a network operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetifError {
    /// This domain has no `device/vif` entry (or not the one asked for).
    NoDevice,
    /// XenStore failed.
    Store(StoreError),
    /// The handshake failed.
    Xenbus(XenbusError),
    /// The backend's keys or responses broke the protocol.
    Net(NetError),
    /// A page, grant or event channel could not be had.
    Resource {
        /// What was being allocated.
        what: &'static str,
        /// Why not.
        detail: String,
    },
    /// The device is down (named cause).
    Disconnected(String),
}

impl From<StoreError> for NetifError {
    fn from(e: StoreError) -> Self {
        NetifError::Store(e)
    }
}

impl From<XenbusError> for NetifError {
    fn from(e: XenbusError) -> Self {
        NetifError::Xenbus(e)
    }
}

impl From<NetError> for NetifError {
    fn from(e: NetError) -> Self {
        NetifError::Net(e)
    }
}

impl fmt::Display for NetifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetifError::NoDevice => f.write_str("net: no such device/vif"),
            NetifError::Store(e) => write!(f, "net: xenstore: {e}"),
            NetifError::Xenbus(e) => write!(f, "net: {e}"),
            NetifError::Net(e) => write!(f, "{e}"),
            NetifError::Resource { what, detail } => write!(f, "net: {what}: {detail}"),
            NetifError::Disconnected(why) => write!(f, "net: disconnected: {why}"),
        }
    }
}

impl core::error::Error for NetifError {}

/// A ring whose producer index broke the protocol.
fn ring_error(which: &'static str) -> impl Fn(crate::ring::RingError) -> NetifError {
    move |e| NetifError::Disconnected(format!("{which} ring: {e}"))
}

fn resource(what: &'static str) -> impl Fn(&dyn fmt::Display) -> NetifError {
    move |e| NetifError::Resource {
        what,
        detail: format!("{e}"),
    }
}

/// Counters of one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames queued for transmit.
    pub tx_frames: u64,
    /// Frames netback reported as not sent (`RSP_ERROR`/`RSP_DROPPED`).
    pub tx_errors: u64,
    /// Frames received.
    pub rx_frames: u64,
    /// Received responses with an error status (frame dropped).
    pub rx_errors: u64,
    /// Notifications sent to the backend.
    pub notifies: u64,
    /// Frames smoltcp wanted to send while every bounce page was in use.
    pub tx_full: u64,
}

/// One connected virtual network interface.
pub struct Net {
    // Declared (so dropped) before `ring_grants`: the views point into
    // those grants' pages.
    tx: Option<FrontRing<'static, NetifTxRequest, NetifTxResponse>>,
    rx: Option<FrontRing<'static, NetifRxRequest, NetifRxResponse>>,
    ring_grants: Vec<Grant>,
    /// The rx pages, one per rx slot (id = slot), granted writable.
    rx_pages: Vec<Grant>,
    rx_state: RxRing,
    /// Ring index of the next rx response.
    rx_idx: u32,
    rx_queue: VecDeque<Vec<u8>>,
    tx_pages: Vec<Grant>,
    tx_pool: PagePool,
    tx_table: TxTable<u32>,
    port: Option<u32>,
    front: FrontendInfo,
    mac: [u8; 6],
    features: Option<BackendFeatures>,
    fe: Frontend,
    watch: Option<Watch>,
    config: Config,
    failed: Option<String>,
    stats: NetStats,
}

/// The ids under `device/vif`, ascending.
pub fn list() -> Result<Vec<u32>, NetifError> {
    Ok(xenstore::with(|c| Ok(FrontendInfo::list(c, CLASS)))??)
}

impl Net {
    /// Connects to `device/vif/<id>` (`None`: the first) and returns once
    /// both ends are `Connected`. On failure everything set up is torn
    /// down again.
    pub fn open(id: Option<u32>, config: Config) -> Result<Net, NetifError> {
        let ids = list()?;
        let id = match id {
            None => *ids.first().ok_or(NetifError::NoDevice)?,
            Some(i) if ids.contains(&i) => i,
            Some(_) => return Err(NetifError::NoDevice),
        };
        let own = u16::try_from(xenstore::read_u64("domid")?).ok();
        let front = xenstore::with(|c| Ok(FrontendInfo::read(c, CLASS, id, own)))??;
        let mac_path = format!("{}/mac", front.dir);
        let mac = parse_mac(&mac_path, &xenstore::read(&mac_path)?)?;
        let watch = Watch::new(&front.backend_state_path())?;
        let mut net = Net {
            tx: None,
            rx: None,
            ring_grants: Vec::new(),
            rx_pages: Vec::new(),
            rx_state: RxRing::new(1),
            rx_idx: 0,
            rx_queue: VecDeque::new(),
            tx_pages: Vec::new(),
            tx_pool: PagePool::new(0),
            tx_table: TxTable::new(0),
            port: None,
            front,
            mac,
            features: None,
            fe: Frontend::new(ConnectState::Connected, config.timeouts),
            watch: Some(watch),
            config,
            failed: None,
            stats: NetStats::default(),
        };
        // The backend's state first: one still holding an earlier
        // connection (ours, before a reopen) is reset before Initialising.
        net.feed()?;
        let a = net.fe.start(time::now_ns());
        match net.drive(a, |fe| fe.phase() == Phase::Connected) {
            Ok(()) => {
                // Netback reads the rx ring once connected: tell it.
                net.kick_rx(true);
                Ok(net)
            }
            Err(e) => {
                net.teardown();
                Err(e)
            }
        }
    }

    /// The interface's MAC address (`mac`).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// What netback offered.
    pub fn features(&self) -> Option<BackendFeatures> {
        self.features
    }

    /// The frontend's device.
    pub fn device(&self) -> &FrontendInfo {
        &self.front
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Why the device went down, if it did.
    pub fn error(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The event channel (to wait on between polls).
    pub fn port(&self) -> Option<u32> {
        self.port
    }

    // ------------------------------------------------------------ handshake

    fn drive(&mut self, mut a: Action, done: impl Fn(&Frontend) -> bool) -> Result<(), NetifError> {
        loop {
            let now = time::now_ns();
            a = match a {
                Action::Wait { deadline_ns } => {
                    if done(&self.fe) {
                        return Ok(());
                    }
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
                Action::Connect { .. } => self.feed()?,
                Action::Closing => {
                    self.set_state(XenbusState::Closing)?;
                    self.feed()?
                }
                Action::Closed { error: None } if done(&self.fe) => return Ok(()),
                Action::Closed { error } => {
                    let _ = self.set_state(XenbusState::Closed);
                    self.teardown();
                    return Err(match error {
                        Some(e) => e.into(),
                        None => NetifError::Disconnected("closed".into()),
                    });
                }
            };
        }
    }

    fn feed(&mut self) -> Result<Action, NetifError> {
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

    fn set_state(&mut self, s: XenbusState) -> Result<(), NetifError> {
        xenstore::write(&self.front.state_path(), &s.value())?;
        Ok(())
    }

    fn features_of_backend(&self) -> Result<BackendFeatures, NetifError> {
        let dir = self.front.backend.path.clone();
        let mut values = Vec::new();
        for k in FEATURE_KEYS {
            match xenstore::read(&format!("{dir}/{k}")) {
                Ok(v) => values.push((k, v)),
                Err(StoreError::Xs(xenstore::Error::Xs(XsError::ENOENT))) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(BackendFeatures::parse(&dir, |k| {
            values
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_slice())
        })?)
    }

    /// A one-page ring granted to the backend: its view and its grant.
    fn ring_page(&mut self, be: u16) -> Result<SharedMem<'static>, NetifError> {
        let page = mm::alloc_shared_page().map_err(|e| resource("ring page")(&e))?;
        let g =
            grant_table::grant_page(be, &page, false).map_err(|e| resource("grant ring")(&e))?;
        // SAFETY: the page stays allocated and mapped while its grant in
        // `ring_grants` (and, once revoked, the grant table's deferred
        // list) holds a handle; the rings are declared before
        // `ring_grants` and `teardown` drops them before revoking, so the
        // view never outlives the page. Only accessed through SharedMem.
        let mem = unsafe { SharedMem::from_raw(page.va() as *mut u8, PAGE_SIZE) };
        self.ring_grants.push(g);
        Ok(mem)
    }

    fn write_keys(&mut self, state: XenbusState) -> Result<(), NetifError> {
        let be = self.front.backend_id;
        let features = self.features_of_backend()?;
        self.features = Some(features);
        let tx_mem = self.ring_page(be)?;
        let rx_mem = self.ring_page(be)?;
        let tx = FrontRing::init_shared(tx_mem).map_err(|e| resource("tx ring")(&e))?;
        let rx = FrontRing::init_shared(rx_mem).map_err(|e| resource("rx ring")(&e))?;
        let (tx_ref, rx_ref) = (self.ring_grants[0].gref().0, self.ring_grants[1].gref().0);
        self.tx_table = TxTable::new(tx.nr_ents());
        self.rx_state = RxRing::new(rx.nr_ents());
        let rx_slots = rx.nr_ents();
        self.tx = Some(tx);
        self.rx = Some(rx);
        for _ in 0..self.config.tx_pages.max(1) {
            let p = mm::alloc_shared_page().map_err(|e| resource("tx page")(&e))?;
            let g =
                grant_table::grant_page(be, &p, true).map_err(|e| resource("grant tx page")(&e))?;
            self.tx_pages.push(g);
        }
        self.tx_pool = PagePool::new(self.tx_pages.len() as u32);
        // Every rx slot gets its page now, id = slot.
        for id in 0..rx_slots {
            let p = mm::alloc_shared_page().map_err(|e| resource("rx page")(&e))?;
            let g = grant_table::grant_page(be, &p, false)
                .map_err(|e| resource("grant rx page")(&e))?;
            let req = NetifRxRequest {
                id: id as u16,
                _pad: 0,
                gref: g.gref().0,
            };
            self.rx_pages.push(g);
            let rx = self.rx.as_mut().expect("set above");
            rx.push_request(req).map_err(|e| resource("rx post")(&e))?;
        }
        self.kick_rx(false);
        let port = event::alloc_unbound(be).map_err(|e| resource("alloc_unbound")(&e))?;
        self.port = Some(port);
        let offloads = Offloads {
            sg: false,
            gso_tcpv4: false,
            no_csum_offload: true,
        };
        let mut keys = connect_keys(tx_ref, rx_ref, Ports::One(port), &offloads);
        keys.set_state(state);
        let dir = self.front.dir.clone();
        xenstore::with(|c| Ok(write_keys(c, &dir, &keys, MAX_TX_ATTEMPTS)))??;
        Ok(())
    }

    /// Publishes posted rx requests; notifies only when asked (netback
    /// reads the rx ring when it has a frame; netif.h: "never any need to
    /// notify the backend when enqueuing receive requests" — but a
    /// backend that ran out of slots is waiting for the kick).
    fn kick_rx(&mut self, notify: bool) {
        let Some(rx) = self.rx.as_mut() else { return };
        let asked = rx.push_requests_and_check_notify();
        if notify || asked {
            if let Some(p) = self.port {
                event::notify(p);
                self.stats.notifies += 1;
            }
        }
    }

    fn teardown(&mut self) {
        self.tx = None;
        self.rx = None;
        self.rx_queue.clear();
        for g in self.ring_grants.drain(..) {
            let _ = grant_table::revoke(g);
        }
        for g in self.rx_pages.drain(..).chain(self.tx_pages.drain(..)) {
            let _ = grant_table::revoke(g);
        }
        self.tx_pool = PagePool::new(0);
        if let Some(p) = self.port.take() {
            let _ = event::close(p);
        }
        grant_table::poll_deferred();
    }

    fn fail(&mut self, e: NetifError) -> NetifError {
        self.failed.get_or_insert_with(|| format!("{e}"));
        let _ = self.set_state(XenbusState::Closed);
        self.teardown();
        e
    }

    /// Our orderly close: `Closing`, the backend follows, `Closed`, then
    /// the grants are revoked (deferred while mapped) and the port closed.
    pub fn close(mut self) -> Result<(), NetifError> {
        if let Some(why) = self.failed.take() {
            self.watch = None;
            return Err(NetifError::Disconnected(why));
        }
        let a = self.fe.close(time::now_ns());
        let r = self.drive(a, |fe| fe.phase() == Phase::Closed);
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

    // --------------------------------------------------------------- frames

    /// Takes every tx and rx response there is: tx pages go back to the
    /// pool, received frames to the queue. Also looks at the backend's
    /// state when its watch fired. Any protocol error takes the device
    /// down (returned once; later calls say `Disconnected`).
    pub fn poll(&mut self) -> Result<(), NetifError> {
        if let Some(why) = &self.failed {
            return Err(NetifError::Disconnected(why.clone()));
        }
        if self.tx.is_none() {
            return Err(NetifError::Disconnected("not connected".into()));
        }
        if let Some(p) = self.port {
            event::clear_pending(p);
        }
        if let Err(e) = self.reap_tx().and_then(|()| self.reap_rx()) {
            return Err(self.fail(e));
        }
        self.backend_still_connected()
    }

    fn reap_tx(&mut self) -> Result<(), NetifError> {
        let tx = self.tx.as_mut().expect("checked");
        while let Some(rsp) = tx.take_response().map_err(ring_error("tx"))? {
            match self.tx_table.complete(rsp)? {
                TxDone::Slot { data, ok } => {
                    self.tx_pool.give_back(&[data]);
                    if !ok {
                        self.stats.tx_errors += 1;
                    }
                }
                TxDone::Extra => {}
            }
        }
        Ok(())
    }

    fn reap_rx(&mut self) -> Result<(), NetifError> {
        let mut reposted = false;
        loop {
            let rx = self.rx.as_mut().expect("checked");
            let Some(rsp) = rx.take_response().map_err(ring_error("rx"))? else {
                if !rx.final_check_for_responses().map_err(ring_error("rx"))? {
                    break;
                }
                continue;
            };
            let idx = self.rx_idx;
            self.rx_idx = idx.wrapping_add(1);
            let Some(packet) = self.rx_state.take(idx, rsp)? else {
                continue;
            };
            if packet.error || packet.len == 0 {
                self.stats.rx_errors += 1;
            } else {
                let mut frame = vec![0u8; packet.len];
                let mut at = 0;
                for piece in &packet.pieces {
                    let n = usize::from(piece.len);
                    self.rx_pages[usize::from(piece.slot)]
                        .mem()
                        .copy_out(usize::from(piece.offset), &mut frame[at..at + n]);
                    at += n;
                }
                self.rx_queue.push_back(frame);
                self.stats.rx_frames += 1;
            }
            // Repost each slot's page at once: request index idx + size
            // lands in the same slot.
            let rx = self.rx.as_mut().expect("checked");
            for &slot in &packet.slots {
                let req = NetifRxRequest {
                    id: slot,
                    _pad: 0,
                    gref: self.rx_pages[usize::from(slot)].gref().0,
                };
                rx.push_request(req).map_err(ring_error("rx repost"))?;
                reposted = true;
            }
        }
        if reposted {
            self.kick_rx(false);
        }
        Ok(())
    }

    fn backend_still_connected(&mut self) -> Result<(), NetifError> {
        let Some(w) = self.watch.as_mut() else {
            return Ok(());
        };
        match w.next(0) {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => {}
            Err(e) => return Err(self.fail(e.into())),
        }
        match self.feed() {
            Ok(Action::Closed { error }) => {
                let e = error.map_or_else(
                    || NetifError::Disconnected("backend closed".into()),
                    NetifError::Xenbus,
                );
                Err(self.fail(e))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Queues one Ethernet frame. `false` when every bounce page or tx id
    /// is in use (the frame is not sent).
    fn send(&mut self, frame: &[u8]) -> Result<bool, NetifError> {
        let plan = plan_tx(frame.len(), false, false, None)?;
        let Some(tx) = self.tx.as_mut() else {
            return Err(NetifError::Disconnected("not connected".into()));
        };
        if tx.free_slots() < plan.ring_slots() as u32 || self.tx_table.available() == 0 {
            self.stats.tx_full += 1;
            return Ok(false);
        }
        let Some(pages) = self.tx_pool.take(1) else {
            self.stats.tx_full += 1;
            return Ok(false);
        };
        let q = pages[0];
        let g = &self.tx_pages[q as usize];
        g.mem().copy_in(0, frame);
        let gref = g.gref().0;
        let id = self.tx_table.insert(q).expect("checked available");
        let req = plan.request(0, id, |_| gref);
        let tx = self.tx.as_mut().expect("checked");
        if let Err(e) = tx.push_request(req) {
            return Err(self.fail(ring_error("tx")(e)));
        }
        if tx.push_requests_and_check_notify() {
            if let Some(p) = self.port {
                event::notify(p);
                self.stats.notifies += 1;
            }
        }
        self.stats.tx_frames += 1;
        Ok(true)
    }

    /// Blocks until the backend signals or `deadline_ns`
    /// ([`time::now_ns`] scale) passes.
    pub fn wait(&mut self, deadline_ns: u64) {
        if !self.rx_queue.is_empty() {
            return;
        }
        match self.port {
            Some(p) => event::wait(p, deadline_ns),
            None => time::sleep_until(deadline_ns),
        }
    }

    fn usable(&self) -> bool {
        self.failed.is_none() && self.tx.is_some()
    }
}

impl Drop for Net {
    /// Torn down abruptly if not closed: state `Closed`, grants revoked
    /// (deferred while mapped), port closed.
    fn drop(&mut self) {
        if self.tx.is_some() || self.port.is_some() || !self.rx_pages.is_empty() {
            let _ = self.set_state(XenbusState::Closed);
            self.teardown();
        }
    }
}

/// A received frame (smoltcp's receive token).
pub struct NetRx(Vec<u8>);

impl phy::RxToken for NetRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for one frame (smoltcp's transmit token).
pub struct NetTx<'a>(&'a mut Net);

impl phy::TxToken for NetTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        // A frame that cannot go (the device went down meanwhile, or a
        // size netback would refuse) is dropped, as a NIC drops it.
        let _ = self.0.send(&frame);
        r
    }
}

impl Device for Net {
    type RxToken<'a> = NetRx;
    type TxToken<'a> = NetTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(NetRx, NetTx<'_>)> {
        if self.rx_queue.is_empty() && self.usable() {
            let _ = self.poll();
        }
        let frame = self.rx_queue.pop_front()?;
        Some((NetRx(frame), NetTx(self)))
    }

    fn transmit(&mut self, _: Instant) -> Option<NetTx<'_>> {
        if !self.usable() {
            return None;
        }
        if self.tx_pool.available() == 0 {
            let _ = self.poll();
        }
        (self.tx_pool.available() > 0 && self.tx_table.available() > 0).then_some(NetTx(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(self.tx_pages.len().max(1));
        let mut c = ChecksumCapabilities::default();
        c.ipv4 = Checksum::Both;
        c.tcp = Checksum::Both;
        c.udp = Checksum::Both;
        c.icmpv4 = Checksum::Both;
        caps.checksum = c;
        caps
    }
}

/// smoltcp's clock from the kernel's monotonic time.
pub fn now() -> Instant {
    Instant::from_micros((time::now_ns() / 1000) as i64)
}
