//! The blkfront scenarios, against Linux blkback in Dom0
//! (tests/nested/blk.rs sets up the images and checks them from Dom0):
//!
//! * `test=blk`: the first `device/vbd` (a 64 MiB raw image of random
//!   bytes): read it all, write a pattern over it, flush, read it back,
//!   close. Console lines:
//!   ```text
//!   blk: <sectors> sectors of <sector-size> bytes, read-only <0|1>, features <list>
//!   blk: ring order <o> (<slots> slots), <segs> segments per request, persistent <0|1>
//!   blk: read <bytes> bytes sha256 <hex> in <ms> ms (<x.x> MB/s)
//!   blk: wrote <bytes> bytes sha256 <hex> seed <hex> in <ms> ms (<x.x> MB/s)
//!   blk: flushed in <ms> ms
//!   blk: verified <bytes> bytes in <ms> ms (<x.x> MB/s)
//!   blk: <n> requests (<n> indirect), <n> notifications, <n> waits, at most <n> in flight of <slots> slots, <n> data grants
//!   blk: closed
//!   resources: before <r> after <r>
//!   ```
//! * `test=blk-multi`: three disks at once — writable 512-byte sectors
//!   (unaligned and odd-sized I/O against a model, discard), read-only
//!   (writes refused), 4096-byte sectors (pattern, read-modify-write).
//! * `test=blk-detach`: I/O running while Dom0 `xl block-detach`es the
//!   disk; then the disk Dom0 `xl block-attach`es.
//! * `test=blk-features`: the same disk opened with each feature set
//!   (ring order, indirect requests, persistent grants): MB/s and IOPS.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use xenfront::blk::{self, Config, Disk, DiskError};
use xenfront::drivers::blkfront::BlkError;
use xenfront::println;
use xenfront::time;
use xenfront::xenstore;

use crate::channels::Resources;
use crate::options::Options;
use crate::scenario::Verdict;
use crate::sha256::Sha256;

/// Bytes per read/write call: four 1 MiB requests in flight against Linux
/// blkback (256 segments each; the default pool is 4 MiB).
const CHUNK: usize = 4 << 20;
/// Seed of the pattern written over the disk (xorshift64*).
pub const SEED: u64 = 0x5eed_b10c_f00d_0001;

type Res<T> = Result<T, String>;

/// Runs `f` between two resource counts; fails unless grants, deferred
/// grants and open event channels are back where they were (the data and
/// ring pages go back to the frame allocator; the heap keeps what it grew
/// by for the I/O buffers).
pub fn with_resources(f: impl FnOnce() -> Res<()>) -> Verdict {
    let before = Resources::now();
    let r = f();
    let after = Resources::settle(before);
    println!("resources: before {before} after {after}");
    match r {
        Ok(()) if after.same_connections(&before) => Verdict::Success,
        Ok(()) => {
            println!("error: resources not back at their baseline");
            Verdict::Failure
        }
        Err(e) => {
            println!("error: {e}");
            Verdict::Failure
        }
    }
}

/// `test=blk`.
pub fn blk_test(_: &Options) -> Verdict {
    with_resources(run)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `<x.x>` MB/s (10^6 bytes).
fn mbs(bytes: u64, ns: u64) -> String {
    let x10 = bytes.saturating_mul(10_000) / ns.max(1);
    format!("{}.{}", x10 / 10, x10 % 10)
}

/// The deterministic pattern: xorshift64* words, little endian.
struct Pattern(u64);

impl Pattern {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for w in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            w.copy_from_slice(&v[..w.len()]);
        }
    }
}

fn ctx(what: &str) -> impl Fn(DiskError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Reads the whole disk in [`CHUNK`]s: its sha256 and the time spent in
/// the reads (the hashing, slow without SIMD under TCG, not counted).
fn read_all(disk: &mut Disk, buf: &mut [u8]) -> Res<([u8; 32], u64)> {
    let bytes = disk.bytes();
    let mut h = Sha256::new();
    let mut ns = 0;
    let mut at = 0u64;
    while at < bytes {
        let n = buf.len().min((bytes - at) as usize);
        let t0 = time::now_ns();
        disk.read(at, &mut buf[..n])
            .map_err(ctx(&format!("read at {at}")))?;
        ns += time::now_ns() - t0;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok((h.finalize(), ns))
}

/// Writes the pattern of `seed` over the whole disk: its sha256 and the
/// time spent in the writes (making and hashing the pattern not counted).
fn write_all(disk: &mut Disk, buf: &mut [u8], seed: u64) -> Res<([u8; 32], u64)> {
    let bytes = disk.bytes();
    let mut h = Sha256::new();
    let mut pat = Pattern(seed);
    let mut ns = 0;
    let mut at = 0u64;
    while at < bytes {
        let n = buf.len().min((bytes - at) as usize);
        pat.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        let t0 = time::now_ns();
        disk.write(at, &buf[..n])
            .map_err(ctx(&format!("write at {at}")))?;
        ns += time::now_ns() - t0;
        at += n as u64;
    }
    Ok((h.finalize(), ns))
}

fn features(info: &blk::BackendInfo) -> String {
    let mut feats: Vec<String> = Vec::new();
    for (on, name) in [
        (info.flush, "flush-cache"),
        (info.barrier, "barrier"),
        (info.persistent, "persistent"),
        (info.discard.is_some(), "discard"),
    ] {
        if on {
            feats.push(name.into());
        }
    }
    feats.push(format!(
        "max-indirect-segments={}",
        info.max_indirect_segments
    ));
    feats.push(format!("max-ring-page-order={}", info.max_ring_page_order));
    feats.push(format!("max-queues={}", info.max_queues));
    feats.join(" ")
}

fn describe(disk: &Disk) {
    let info = disk.info();
    println!(
        "blk: {} sectors of {} bytes, read-only {}, features {}",
        info.sectors,
        info.sector_size,
        u8::from(info.read_only()),
        features(info)
    );
    println!(
        "blk: ring order {} ({} slots), {} segments per request, persistent {}",
        disk.ring_page_order(),
        disk.ring_slots(),
        disk.max_segments(),
        u8::from(disk.persistent())
    );
}

fn run() -> Res<()> {
    let mut disk = Disk::open(None, Config::default()).map_err(ctx("open"))?;
    describe(&disk);
    let bytes = disk.bytes();
    let mut buf = vec![0u8; CHUNK];

    let (h, ns) = read_all(&mut disk, &mut buf)?;
    println!(
        "blk: read {bytes} bytes sha256 {} in {} ms ({} MB/s)",
        hex(&h),
        ns / 1_000_000,
        mbs(bytes, ns)
    );
    let (h, ns) = write_all(&mut disk, &mut buf, SEED)?;
    println!(
        "blk: wrote {bytes} bytes sha256 {} seed {SEED:#x} in {} ms ({} MB/s)",
        hex(&h),
        ns / 1_000_000,
        mbs(bytes, ns)
    );
    let t0 = time::now_ns();
    disk.flush().map_err(ctx("flush"))?;
    println!("blk: flushed in {} ms", (time::now_ns() - t0) / 1_000_000);

    // Read it back.
    let mut want = vec![0u8; CHUNK];
    let mut pat = Pattern(SEED);
    let t0 = time::now_ns();
    let mut at = 0u64;
    while at < bytes {
        let n = CHUNK.min((bytes - at) as usize);
        disk.read(at, &mut buf[..n])
            .map_err(ctx(&format!("read back at {at}")))?;
        pat.fill(&mut want[..n]);
        if buf[..n] != want[..n] {
            let i = buf[..n].iter().zip(&want[..n]).position(|(a, b)| a != b);
            return Err(format!(
                "read back differs at byte {}",
                at + i.unwrap_or(0) as u64
            ));
        }
        at += n as u64;
    }
    let ns = time::now_ns() - t0;
    println!(
        "blk: verified {bytes} bytes in {} ms ({} MB/s)",
        ns / 1_000_000,
        mbs(bytes, ns)
    );
    let st = disk.stats();
    println!(
        "blk: {} requests ({} indirect), {} notifications, {} waits, at most {} in flight of {} slots, {} data grants",
        st.requests,
        st.indirect,
        st.notifies,
        st.waits,
        st.max_in_flight,
        disk.ring_slots(),
        st.data_grants
    );
    disk.close().map_err(ctx("close"))?;
    println!("blk: closed");
    Ok(())
}

// ------------------------------------------------------------- blk-multi

/// Bytes of the writable disk the unaligned I/O works on.
const MODEL: usize = 65536;

/// `test=blk-multi`: every `device/vbd` open at once.
pub fn multi_test(_: &Options) -> Verdict {
    with_resources(multi)
}

fn multi() -> Res<()> {
    let ids = blk::list().map_err(ctx("list"))?;
    println!("blk: devices {ids:?}");
    let mut disks = Vec::new();
    for &id in &ids {
        let d = Disk::open(Some(id), Config::default()).map_err(ctx(&format!("open {id}")))?;
        let info = d.info();
        println!(
            "blk: disk {id}: {} sectors of {} bytes, read-only {}",
            info.sectors,
            info.sector_size,
            u8::from(info.read_only())
        );
        disks.push(d);
    }
    let pick = |disks: &mut Vec<Disk>, f: &dyn Fn(&Disk) -> bool, what: &str| -> Res<Disk> {
        let i = disks
            .iter()
            .position(f)
            .ok_or_else(|| format!("no {what} disk among {ids:?}"))?;
        Ok(disks.remove(i))
    };
    let mut rw = pick(
        &mut disks,
        &|d| !d.read_only() && d.sector_size() == 512,
        "writable 512-byte-sector",
    )?;
    let mut ro = pick(&mut disks, &|d| d.read_only(), "read-only")?;
    let mut big = pick(&mut disks, &|d| d.sector_size() == 4096, "4096-byte-sector")?;
    unaligned(&mut rw)?;
    read_only(&mut ro)?;
    four_k(&mut big)?;
    for (what, d) in [("rw", rw), ("ro", ro), ("4k", big)] {
        d.close().map_err(ctx(&format!("close {what}")))?;
    }
    println!("blk: closed all");
    Ok(())
}

/// Unaligned and odd-sized reads and writes on the writable disk, each
/// checked against a model of its first [`MODEL`] bytes; then discard.
fn unaligned(d: &mut Disk) -> Res<()> {
    let mut model = vec![0u8; MODEL];
    d.read(0, &mut model).map_err(ctx("read model"))?;
    let mut pat = Pattern(SEED ^ 0x1234);
    // (offset, length): a byte at 511, 4097 bytes across a page and eight
    // sectors, 3 bytes across a sector and page boundary, the last 100
    // bytes of a sector, and 1000 bytes inside one sector.
    let writes = [
        (511usize, 1usize),
        (4095, 4097),
        (8190, 3),
        (65436, 100),
        (20000, 1000),
    ];
    for &(off, len) in &writes {
        let mut data = vec![0u8; len];
        pat.fill(&mut data);
        d.write(off as u64, &data)
            .map_err(ctx(&format!("write {len} at {off}")))?;
        model[off..off + len].copy_from_slice(&data);
    }
    let reads = [
        (511usize, 1usize),
        (4095, 4097),
        (8189, 10),
        (1, 65534),
        (33333, 7),
    ];
    for &(off, len) in &reads {
        let mut got = vec![0u8; len];
        d.read(off as u64, &mut got)
            .map_err(ctx(&format!("read {len} at {off}")))?;
        if got[..] != model[off..off + len] {
            return Err(format!(
                "read of {len} bytes at {off} differs from what was written"
            ));
        }
    }
    let mut all = vec![0u8; MODEL];
    d.read(0, &mut all).map_err(ctx("read model back"))?;
    if all != model {
        return Err("first 65536 bytes differ from the model".into());
    }
    let mut h = Sha256::new();
    h.update(&all);
    println!(
        "blk: unaligned: {} writes and {} reads equal the model; first {MODEL} bytes sha256 {}",
        writes.len(),
        reads.len(),
        hex(&h.finalize())
    );
    // Discard 64 KiB at 1 MiB; a loop device over a file punches a hole.
    if d.info().discard.is_some() {
        let (off, len) = (1u64 << 20, 65536u64);
        d.discard(off, len).map_err(ctx("discard"))?;
        let mut got = vec![0xffu8; len as usize];
        d.read(off, &mut got).map_err(ctx("read discarded"))?;
        let zero = got.iter().all(|&b| b == 0);
        println!(
            "blk: discard {len} bytes at {off}: reads back zero {}",
            u8::from(zero)
        );
    } else {
        println!("blk: discard not offered");
    }
    d.flush().map_err(ctx("flush rw"))?;
    Ok(())
}

/// The read-only disk: read it all; a write and a discard are refused
/// before anything is sent.
fn read_only(d: &mut Disk) -> Res<()> {
    let mut buf = vec![0u8; CHUNK];
    let (h, _) = read_all(d, &mut buf)?;
    println!(
        "blk: read-only disk: read {} bytes sha256 {}",
        d.bytes(),
        hex(&h)
    );
    let requests = d.stats().requests;
    match d.write(0, &[0x55; 512]) {
        Err(e @ DiskError::Blk(BlkError::ReadOnly)) => {
            println!("blk: read-only disk: write refused: {e}")
        }
        other => return Err(format!("write to the read-only disk gave {other:?}")),
    }
    match d.write(100, &[0x55; 3]) {
        Err(DiskError::Blk(BlkError::ReadOnly)) => {}
        other => {
            return Err(format!(
                "unaligned write to the read-only disk gave {other:?}"
            ))
        }
    }
    if d.stats().requests != requests {
        return Err("a refused write put requests on the ring".into());
    }
    // Still usable after the refusals.
    let mut one = [0u8; 16];
    d.read(4096, &mut one).map_err(ctx("read after refusal"))?;
    println!("blk: read-only disk: still reads after the refusals");
    Ok(())
}

/// The 4096-byte-sector disk: a pattern over all of it, then a byte at
/// 511 (read-modify-write of one 4096-byte sector); read back and hashed.
fn four_k(d: &mut Disk) -> Res<()> {
    let mut buf = vec![0u8; CHUNK];
    write_all(d, &mut buf, SEED ^ 0x4096)?;
    d.write(511, &[0xa5]).map_err(ctx("write 1 byte at 511"))?;
    d.flush().map_err(ctx("flush 4k"))?;
    let mut b = [0u8; 3];
    d.read(510, &mut b).map_err(ctx("read 3 bytes at 510"))?;
    if b[1] != 0xa5 {
        return Err(format!("byte 511 reads {:#x}, wrote 0xa5", b[1]));
    }
    let (h, _) = read_all(d, &mut buf)?;
    println!(
        "blk: 4096-byte sectors: wrote pattern and byte 511, read back {} bytes sha256 {}",
        d.bytes(),
        hex(&h)
    );
    Ok(())
}

// ------------------------------------------------------------ blk-detach

/// Set by the guest once I/O is running; Dom0 then detaches the disk.
const IO_KEY: &str = "data/xf-blk-io";
/// Set by Dom0 once it attached a disk again.
const ATTACHED_KEY: &str = "data/xf-blk-attached";

/// `test=blk-detach`.
pub fn detach_test(_: &Options) -> Verdict {
    // A first open/close settles the heap, so the baseline after it is
    // what a connection must give back.
    match Disk::open(None, Config::default()).and_then(|d| d.close()) {
        Ok(()) => {}
        Err(e) => {
            println!("error: first open/close: {e}");
            return Verdict::Failure;
        }
    }
    with_resources(detach)
}

fn detach() -> Res<()> {
    let mut disk = Disk::open(None, Config::default()).map_err(ctx("open"))?;
    let id = disk.device().id;
    let mut buf = vec![0u8; CHUNK];
    xenstore::write(IO_KEY, b"1").map_err(|e| format!("write {IO_KEY}: {e}"))?;
    let deadline = time::now_ns() + 120_000_000_000;
    let mut done = 0u64;
    let err = loop {
        if time::now_ns() >= deadline {
            return Err("the disk was not detached within 120 s".into());
        }
        let at = done % disk.bytes();
        let n = buf.len().min((disk.bytes() - at) as usize);
        match disk.read(at, &mut buf[..n]) {
            Ok(()) => done += n as u64,
            Err(e) => break e,
        }
    };
    println!("blk: detached mid-I/O after {done} bytes: {err}");
    let in_flight = disk.stats().max_in_flight;
    match disk.read(0, &mut buf[..512]) {
        Err(DiskError::Disconnected(_)) => println!("blk: later I/O fails: disconnected"),
        other => return Err(format!("I/O after the detach gave {other:?}")),
    }
    drop(disk);
    println!("blk: guest still running ({in_flight} were in flight at most)");
    // Dom0 attaches another image.
    let deadline = time::now_ns() + 90_000_000_000;
    while xenstore::read(ATTACHED_KEY).is_err() {
        if time::now_ns() >= deadline {
            return Err(format!("Dom0 did not set {ATTACHED_KEY} within 90 s"));
        }
        time::sleep_until(time::now_ns() + 100_000_000);
    }
    let mut disk = Disk::open(None, Config::default()).map_err(ctx("open attached"))?;
    let (h, _) = read_all(&mut disk, &mut buf)?;
    println!(
        "blk: attached again: device {} (was {id}), {} bytes sha256 {}",
        disk.device().id,
        disk.bytes(),
        hex(&h)
    );
    disk.close().map_err(ctx("close attached"))?;
    println!("blk: closed");
    Ok(())
}

// ----------------------------------------------------------- blk-features

/// Random 4 KiB reads per feature set.
const RANDOM_READS: u32 = 200;

/// `test=blk-features`: the same disk with each feature set in turn.
pub fn features_test(_: &Options) -> Verdict {
    with_resources(feature_sets)
}

fn feature_sets() -> Res<()> {
    let base = Config::default();
    let sets = [
        ("order0-direct-grant", 0, false, false),
        ("order0-direct-persistent", 0, false, true),
        ("order4-direct-persistent", 4, false, true),
        ("order4-indirect-grant", 4, true, false),
        ("order4-indirect-persistent", 4, true, true),
    ];
    let mut buf = vec![0u8; CHUNK];
    let mut last: Option<[u8; 32]> = None;
    for (k, &(label, order, indirect, persistent)) in sets.iter().enumerate() {
        let cfg = Config {
            ring_page_order: order,
            indirect,
            persistent,
            ..base
        };
        let mut d = Disk::open(None, cfg).map_err(ctx(&format!("open {label}")))?;
        let bytes = d.bytes();
        let (h, rns) = read_all(&mut d, &mut buf)?;
        if k == 0 {
            println!("blk-feat: first read sha256 {}", hex(&h));
        }
        if let Some(w) = last {
            if w != h {
                return Err(format!(
                    "{label}: read sha256 {} but wrote {}",
                    hex(&h),
                    hex(&w)
                ));
            }
        }
        let (w, wns) = write_all(&mut d, &mut buf, SEED + k as u64)?;
        d.flush().map_err(ctx("flush"))?;
        last = Some(w);
        // QD1 random 4 KiB reads.
        let mut pat = Pattern(SEED ^ k as u64);
        let blocks = bytes / 4096;
        let t0 = time::now_ns();
        for _ in 0..RANDOM_READS {
            let at = (pat.next() % blocks) * 4096;
            d.read(at, &mut buf[..4096])
                .map_err(ctx(&format!("random read at {at}")))?;
        }
        let ins = time::now_ns() - t0;
        let st = d.stats();
        let mib = st.bytes / (1 << 20);
        println!(
            "blk-feat: {label}: order {} slots {} segments {} persistent {}: read {} MB/s write {} MB/s 4k-random-read {} IOPS; {} data grants for {mib} MiB; {} requests, {} indirect",
            d.ring_page_order(),
            d.ring_slots(),
            d.max_segments(),
            u8::from(d.persistent()),
            mbs(bytes, rns),
            mbs(bytes, wns),
            u64::from(RANDOM_READS) * 1_000_000_000 / ins.max(1),
            st.data_grants,
            st.requests,
            st.indirect
        );
        d.close().map_err(ctx(&format!("close {label}")))?;
    }
    println!(
        "blk-feat: last write sha256 {}",
        hex(&last.expect("at least one set"))
    );
    Ok(())
}

// ----------------------------------------------------------- blk-hostile

/// The device `xf-blk-back` (Dom0) creates and plays the backend of.
const HOSTILE_DEV: u32 = 99;
/// Set by Dom0 once the device exists.
const HOSTILE_KEY: &str = "data/xf-blk-hostile";

/// `test=blk-hostile`: one connection per fault of `xf-blk-back`; each
/// first request's answer is wrong (or never comes) and must end in a
/// named error, a disconnect and every grant and port given back.
pub fn hostile_test(_: &Options) -> Verdict {
    with_resources(hostile)
}

fn hostile() -> Res<()> {
    let deadline = time::now_ns() + 90_000_000_000;
    while xenstore::read(HOSTILE_KEY).is_err() {
        if time::now_ns() >= deadline {
            return Err(format!("Dom0 did not set {HOSTILE_KEY} within 90 s"));
        }
        time::sleep_until(time::now_ns() + 100_000_000);
    }
    let cfg = Config {
        request_timeout_ns: 3_000_000_000,
        pool_pages: 64,
        ..Config::default()
    };
    type Want = fn(&DiskError) -> bool;
    let rounds: [(&str, Want); 4] = [
        ("bad-id", |e| {
            matches!(e, DiskError::Blk(BlkError::UnknownId(_)))
        }),
        ("bad-status", |e| {
            matches!(e, DiskError::Blk(BlkError::BadStatus { .. }))
        }),
        ("bad-op", |e| {
            matches!(e, DiskError::Blk(BlkError::WrongOperation { .. }))
        }),
        ("stall", |e| matches!(e, DiskError::Timeout { .. })),
    ];
    let mut buf = vec![0u8; 8192];
    for (name, want) in rounds {
        let mut d = Disk::open(Some(HOSTILE_DEV), cfg).map_err(ctx(&format!("open ({name})")))?;
        let t0 = time::now_ns();
        let e = match d.read(0, &mut buf) {
            Ok(()) => return Err(format!("{name}: the read succeeded")),
            Err(e) => e,
        };
        let ms = (time::now_ns() - t0) / 1_000_000;
        if !want(&e) {
            return Err(format!("{name}: unexpected error {e:?}"));
        }
        match d.read(0, &mut buf) {
            Err(DiskError::Disconnected(_)) => {}
            other => return Err(format!("{name}: I/O after the fault gave {other:?}")),
        }
        drop(d);
        println!("blk-hostile: {name}: {e} after {ms} ms; disconnected");
    }
    println!("blk-hostile: all faults ended in an error and a disconnect");
    Ok(())
}
