//! xf-gnt-map <domid> <ref> [--expect-pattern HEX] [--write-pattern HEX]
//!            [--hold-ms N] [--rw]
//!
//! Map one page granted by <domid>, print its first bytes and FNV-1a 64
//! checksum, optionally check / write the byte pattern `(seed + i) & 0xff`,
//! hold the mapping, re-check, unmap. Exit 0 ok, 1 mismatch, 2 error.
//! See docs/peers.md.

use std::time::Instant;
use xen_peers::args::{parse_domid, parse_hex_u8, parse_num, Args};
use xen_peers::pattern::{self, fnv1a64, hex_prefix};
use xen_peers::{die, ms, Gntdev};

const TAG: &str = "gnt-map";

struct Opts {
    domid: u16,
    gref: u32,
    expect: Option<u8>,
    write: Option<u8>,
    hold_ms: u64,
    writable: bool,
}

fn parse() -> Result<Opts, String> {
    let a = Args::parse(
        std::env::args().skip(1),
        &["expect-pattern", "write-pattern", "hold-ms"],
        &["rw"],
    )?;
    a.expect_positional(&["domid", "ref"])?;
    let domid = parse_domid(&a.positional[0])?;
    let gref = parse_num(&a.positional[1])?;
    let gref = u32::try_from(gref).map_err(|_| format!("grant ref too big: {gref}"))?;
    let expect = a.opt("expect-pattern").map(parse_hex_u8).transpose()?;
    let write = a.opt("write-pattern").map(parse_hex_u8).transpose()?;
    Ok(Opts {
        domid,
        gref,
        expect,
        write,
        hold_ms: a.num_or("hold-ms", 0)?,
        writable: a.flag("rw") || write.is_some(),
    })
}

fn main() {
    let o = parse().unwrap_or_else(|e| {
        eprintln!(
            "usage: xf-gnt-map <domid> <ref> [--expect-pattern HEX] [--write-pattern HEX] \
             [--hold-ms N] [--rw]"
        );
        die(TAG, e)
    });
    let dev = Gntdev::open().unwrap_or_else(|e| die(TAG, format!("open gntdev: {e}")));
    let t0 = Instant::now();
    let map = dev
        .map(o.domid, &[o.gref], o.writable)
        .unwrap_or_else(|e| die(TAG, format!("map ref {} from dom {}: {e}", o.gref, o.domid)));
    let map_us = t0.elapsed().as_micros();
    let mem = map.mem();
    let page = mem.to_vec();
    println!(
        "{TAG}: mapped ref {} from dom {} ({}) in {map_us} us: first bytes {} fnv1a64 {:016x}",
        o.gref,
        o.domid,
        if o.writable { "rw" } else { "ro" },
        hex_prefix(&page, 8),
        fnv1a64(&page)
    );

    let mut ok = true;
    if let Some(seed) = o.expect {
        match pattern::check(&page, seed) {
            Ok(()) => println!("{TAG}: pattern {seed:#04x} match"),
            Err(m) => {
                ok = false;
                println!(
                    "{TAG}: pattern {seed:#04x} MISMATCH at offset {}: got {:#04x} want {:#04x} \
                     ({} bytes differ)",
                    m.first_offset, m.got, m.want, m.differing
                );
            }
        }
    }

    // What the page should hold from now on, for the after-hold check.
    let mut reference = page;
    if let Some(seed) = o.write {
        pattern::fill(&mut reference, seed);
        mem.write(0, &reference);
        println!(
            "{TAG}: wrote pattern {seed:#04x} fnv1a64 {:016x}",
            fnv1a64(&reference)
        );
    }

    if o.hold_ms > 0 {
        println!("{TAG}: holding mapping {} ms", o.hold_ms);
        std::thread::sleep(ms(o.hold_ms));
        let now = mem.to_vec();
        let same = now == reference;
        println!(
            "{TAG}: after hold fnv1a64 {:016x} {}",
            fnv1a64(&now),
            if same { "unchanged" } else { "CHANGED" }
        );
        // A page we expected to hold a pattern must not change under us.
        if !same && (o.expect.is_some() || o.write.is_some()) {
            ok = false;
        }
    }

    if let Err(e) = map.unmap() {
        die(TAG, format!("unmap ref {}: {e}", o.gref));
    }
    println!("{TAG}: unmapped ref {}", o.gref);
    println!("{TAG}: result {}", if ok { "ok" } else { "mismatch" });
    std::process::exit(if ok { 0 } else { 1 });
}
