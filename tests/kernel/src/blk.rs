//! The blkfront scenario (`test=blk`): the first `device/vbd` against
//! Linux blkback in Dom0 (tests/nested/blk.rs gives the guest a 16 MiB raw
//! image of random bytes).
//!
//! Console lines (matched by tests/nested/blk.rs):
//! ```text
//! blk: <sectors> sectors of <sector-size> bytes, read-only <0|1>, features <list>
//! blk: read <bytes> bytes sha256 <hex> in <ms> ms (<x.x> MB/s)
//! blk: wrote <bytes> bytes sha256 <hex> seed <hex> in <ms> ms (<x.x> MB/s)
//! blk: flushed in <ms> ms
//! blk: verified <bytes> bytes in <ms> ms (<x.x> MB/s)
//! blk: <n> requests, <n> notifications, <n> waits, at most <n> in flight of <slots> slots
//! blk: closed
//! grants: in_use <a> deferred <b> (baseline in_use <c>)
//! ```

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use xenfront::blk::{Config, Disk};
use xenfront::event;
use xenfront::grant_table;
use xenfront::println;
use xenfront::time;

use crate::options::Options;
use crate::scenario::Verdict;
use crate::sha256::Sha256;

/// Bytes per read/write call.
const CHUNK: usize = 1 << 20;
/// Seed of the pattern written over the disk (xorshift64*).
pub const SEED: u64 = 0x5eed_b10c_f00d_0001;

/// `test=blk`.
pub fn blk_test(_: &Options) -> Verdict {
    let base = match grant_table::counters() {
        Ok(c) => c.in_use,
        Err(e) => {
            println!("error: grant table: {e}");
            return Verdict::Error;
        }
    };
    let r = run();
    let clean = back_to_baseline(base);
    match (r, clean) {
        (Ok(()), true) => Verdict::Success,
        (Ok(()), false) => Verdict::Failure,
        (Err(e), _) => {
            println!("error: {e}");
            Verdict::Failure
        }
    }
}

/// Polls deferred grants until `in_use` is back at `base` (≤ 10 s).
fn back_to_baseline(base: usize) -> bool {
    let deadline = time::now_ns() + 10_000_000_000;
    loop {
        grant_table::poll_deferred();
        let c = grant_table::counters().ok();
        let (in_use, deferred) = c.map_or((usize::MAX, 0), |c| (c.in_use, c.deferred));
        if (in_use == base && deferred == 0) || time::now_ns() >= deadline {
            println!("grants: in_use {in_use} deferred {deferred} (baseline in_use {base})");
            return in_use == base && deferred == 0;
        }
        event::wait(0, time::now_ns() + 50_000_000);
    }
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
    fn fill(&mut self, buf: &mut [u8]) {
        for w in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            w.copy_from_slice(&v[..w.len()]);
        }
    }
}

fn run() -> Result<(), String> {
    let mut disk = Disk::open(None, Config::default()).map_err(|e| format!("open: {e}"))?;
    let info = disk.info().clone();
    let mut feats = String::new();
    let mut add = |s: String| {
        if !feats.is_empty() {
            feats.push(' ');
        }
        feats.push_str(&s);
    };
    if info.flush {
        add("flush-cache".into());
    }
    if info.barrier {
        add("barrier".into());
    }
    if info.persistent {
        add("persistent".into());
    }
    if info.discard.is_some() {
        add("discard".into());
    }
    add(format!(
        "max-indirect-segments={}",
        info.max_indirect_segments
    ));
    add(format!("max-ring-page-order={}", info.max_ring_page_order));
    add(format!("max-queues={}", info.max_queues));
    println!(
        "blk: {} sectors of {} bytes, read-only {}, features {feats}",
        info.sectors,
        info.sector_size,
        u8::from(info.read_only())
    );
    let bytes = disk.bytes();
    let mut buf = vec![0u8; CHUNK];

    // Read the whole disk.
    let mut h = Sha256::new();
    let t0 = time::now_ns();
    let mut at = 0u64;
    while at < bytes {
        let n = CHUNK.min((bytes - at) as usize);
        disk.read(at, &mut buf[..n])
            .map_err(|e| format!("read at {at}: {e}"))?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    let ns = time::now_ns() - t0;
    println!(
        "blk: read {bytes} bytes sha256 {} in {} ms ({} MB/s)",
        hex(&h.finalize()),
        ns / 1_000_000,
        mbs(bytes, ns)
    );

    // Write the pattern over it.
    let mut h = Sha256::new();
    let mut pat = Pattern(SEED);
    let t0 = time::now_ns();
    let mut at = 0u64;
    while at < bytes {
        let n = CHUNK.min((bytes - at) as usize);
        pat.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        disk.write(at, &buf[..n])
            .map_err(|e| format!("write at {at}: {e}"))?;
        at += n as u64;
    }
    let ns = time::now_ns() - t0;
    println!(
        "blk: wrote {bytes} bytes sha256 {} seed {SEED:#x} in {} ms ({} MB/s)",
        hex(&h.finalize()),
        ns / 1_000_000,
        mbs(bytes, ns)
    );
    let t0 = time::now_ns();
    disk.flush().map_err(|e| format!("flush: {e}"))?;
    println!("blk: flushed in {} ms", (time::now_ns() - t0) / 1_000_000);

    // Read it back.
    let mut want = vec![0u8; CHUNK];
    let mut pat = Pattern(SEED);
    let t0 = time::now_ns();
    let mut at = 0u64;
    while at < bytes {
        let n = CHUNK.min((bytes - at) as usize);
        disk.read(at, &mut buf[..n])
            .map_err(|e| format!("read back at {at}: {e}"))?;
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
        "blk: {} requests, {} notifications, {} waits, at most {} in flight of {} slots",
        st.requests,
        st.notifies,
        st.waits,
        st.max_in_flight,
        disk.ring_slots()
    );
    disk.close().map_err(|e| format!("close: {e}"))?;
    println!("blk: closed");
    Ok(())
}
