//! The kernel image. Everything lives in the library; on the Xen target this
//! binary only pulls it in (the entry point `_start` is in `xenfront::boot`).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
use xenfront as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xenfront is a Xen guest kernel: build it with --target x86_64-unknown-none");
}
