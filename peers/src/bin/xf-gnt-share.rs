//! xf-gnt-share <domid> [--pattern HEX] [--rw] [--hold-ms N] [--write-key PATH]
//!              [--expect-after HEX]
//!
//! The reverse of xf-gnt-map: allocate one page with gntalloc, fill it with
//! the pattern, grant it to <domid>, print the ref (and write it to XenStore
//! with --write-key), hold it N ms, then report whether the page changed.
//! Exit 0 ok, 1 `--expect-after` mismatch, 2 error. See docs/peers.md.

use xen_peers::args::{parse_domid, parse_hex_u8, Args};
use xen_peers::pattern::{self, fnv1a64};
use xen_peers::{die, ms, xs, Gntalloc};

const TAG: &str = "gnt-share";

fn main() {
    let a = Args::parse(
        std::env::args().skip(1),
        &["pattern", "hold-ms", "write-key", "expect-after"],
        &["rw"],
    )
    .and_then(|a| {
        a.expect_positional(&["domid"])?;
        Ok(a)
    })
    .unwrap_or_else(|e| {
        eprintln!(
            "usage: xf-gnt-share <domid> [--pattern HEX] [--rw] [--hold-ms N] [--write-key PATH] \
             [--expect-after HEX]"
        );
        die(TAG, e)
    });
    fn ok<T>(r: Result<T, String>) -> T {
        r.unwrap_or_else(|e| die(TAG, e))
    }
    let domid = ok(parse_domid(&a.positional[0]));
    let seed = ok(a.opt("pattern").map(parse_hex_u8).transpose()).unwrap_or(0);
    let expect_after = ok(a.opt("expect-after").map(parse_hex_u8).transpose());
    let hold = ok(a.num_or("hold-ms", 10_000));
    let rw = a.flag("rw");

    let ga = Gntalloc::open().unwrap_or_else(|e| die(TAG, format!("open gntalloc: {e}")));
    let page = ga
        .alloc(domid, 1, rw, None, None)
        .unwrap_or_else(|e| die(TAG, format!("gntalloc: {e}")));
    let mem = page.mem();
    let mut buf = vec![0u8; mem.len()];
    pattern::fill(&mut buf, seed);
    mem.write(0, &buf);
    let gref = page.refs()[0];
    println!(
        "{TAG}: ref {gref} for dom {domid} ({}) pattern {seed:#04x} fnv1a64 {:016x}",
        if rw { "rw" } else { "ro" },
        fnv1a64(&buf)
    );
    if let Some(key) = a.opt("write-key") {
        xs::write(&[(key, &gref.to_string())]).unwrap_or_else(|e| die(TAG, e));
        xs::chmod(key, &xs::dom0_owned_readable_by(domid)).unwrap_or_else(|e| die(TAG, e));
        println!("{TAG}: wrote {key} = {gref}");
    }
    std::thread::sleep(ms(hold));
    let now = mem.to_vec();
    println!(
        "{TAG}: after hold fnv1a64 {:016x} {}",
        fnv1a64(&now),
        if now == buf { "unchanged" } else { "CHANGED" }
    );
    let mut ok = true;
    if let Some(s) = expect_after {
        match pattern::check(&now, s) {
            Ok(()) => println!("{TAG}: pattern {s:#04x} match"),
            Err(m) => {
                ok = false;
                println!(
                    "{TAG}: pattern {s:#04x} MISMATCH at offset {}: got {:#04x} want {:#04x} \
                     ({} bytes differ)",
                    m.first_offset, m.got, m.want, m.differing
                );
            }
        }
    }
    drop(page);
    println!("{TAG}: released ref {gref}");
    std::process::exit(if ok { 0 } else { 1 });
}
