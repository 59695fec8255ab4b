#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xenfront is a Xen guest kernel: build it with --target x86_64-unknown-none");
}
