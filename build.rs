//! Ships the image layout with the library: an application crate links
//! with `-Txenfront.ld` (docs/app.md) and the linker finds the script here.
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::copy("linker.ld", out.join("xenfront.ld")).expect("copy linker.ld to OUT_DIR");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
