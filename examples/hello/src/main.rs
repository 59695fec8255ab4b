//! hello: the smallest xenfront appliance. It prints who and where it is,
//! every value read at run time, and powers off.
//!
//! ```text
//! hello: xenfront 0.1.0 on Xen 4.17, pv guest, domain 5 "hello"
//! hello: 8192 pages, 7713 free, wall clock 2026-11-28T14:03:11Z
//! hello: args: greeting=hi
//! hello: done
//! ```
#![no_std]
#![no_main]

use xenfront::time::{self, DateTime, NS_PER_SEC};
use xenfront::xenstore::{self, TxId};
use xenfront::{hypercall, mm, println};

fn hello() -> Result<(), xenfront::Error> {
    let (major, minor) = hypercall::xen_version()?;
    let domid = xenstore::with(|c| c.read_u64(TxId::NONE, "domid"))?;
    let name = xenstore::with(|c| c.read_string(TxId::NONE, "name"))?;
    println!(
        "hello: xenfront {} on Xen {major}.{minor}, {} guest, domain {domid} {name:?}",
        env!("CARGO_PKG_VERSION"),
        xenfront::boot_kind(),
    );
    let wall = time::wallclock_ns().map(|ns| DateTime::from_unix(ns / NS_PER_SEC));
    match wall {
        Some(w) => println!(
            "hello: {} pages, {} free, wall clock {w}",
            mm::nr_frames(),
            mm::free_frames()
        ),
        None => println!(
            "hello: {} pages, {} free, no wall clock",
            mm::nr_frames(),
            mm::free_frames()
        ),
    }
    let mut args = xenfront::args().peekable();
    if args.peek().is_some() {
        println!("hello: args: {}", Join(args));
    }
    println!("hello: done");
    Ok(())
}

xenfront::main!(hello);

/// Words joined by spaces, without allocating.
struct Join<I>(I);

impl<I: Iterator<Item = &'static str> + Clone> core::fmt::Display for Join<I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, w) in self.0.clone().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(w)?;
        }
        Ok(())
    }
}
