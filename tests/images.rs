//! Host checks of the guest images: a product image carries no test code,
//! and the stripped size of every image is printed as a figure.
//!
//! The images are `./xf build`'s (target/x86_64-unknown-none/release);
//! missing ones are built into target/images-test (another target dir, so
//! the nested cargo does not wait for the lock this `cargo test` holds).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example appliances (product images) and the test kernel.
const PRODUCTS: &[&str] = &["hello", "vchan-echo", "ring-demo", "disk-check", "tcp-echo"];
const TEST_KERNEL: &str = "xenfront-test";

/// Symbol-name fragments that only test code has: the test kernel crate,
/// its scenario registry and bodies, the deliberate fault triggers.
const TEST_ONLY: &[&str] = &[
    "xenfront_test",
    "scenario",
    "kscenario",
    "fault::page_fault",
    "fault::invalid_opcode",
    "fault::divide_error",
    "demo_front_test",
    "vchan_server_test",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn image(name: &str) -> PathBuf {
    let main = root().join("target/x86_64-unknown-none/release").join(name);
    if main.exists() {
        return main;
    }
    let dir = root().join("target/images-test");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-none",
            "-p",
            name,
        ])
        .arg("--target-dir")
        .arg(&dir)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {name} failed");
    dir.join("x86_64-unknown-none/release").join(name)
}

/// Every defined symbol of `elf`, demangled (binutils' `nm`).
fn symbols(elf: &Path) -> Vec<String> {
    let out = Command::new("nm")
        .args(["--defined-only", "--demangle"])
        .arg(elf)
        .output()
        .expect("run nm (Debian package binutils)");
    assert!(out.status.success(), "nm {}: {:?}", elf.display(), out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.splitn(3, ' ').nth(2).map(str::to_string))
        .collect()
}

/// Size of `elf` after `strip --strip-all`, in bytes.
fn stripped_size(elf: &Path) -> u64 {
    let out = std::env::temp_dir().join(format!(
        "xf-stripped-{}-{}",
        std::process::id(),
        elf.file_name().unwrap().to_string_lossy()
    ));
    let st = Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(&out)
        .arg(elf)
        .status()
        .expect("run strip (Debian package binutils)");
    assert!(st.success(), "strip {}", elf.display());
    let n = std::fs::metadata(&out).unwrap().len();
    let _ = std::fs::remove_file(out);
    n
}

fn test_symbols(syms: &[String]) -> Vec<&String> {
    syms.iter()
        .filter(|s| TEST_ONLY.iter().any(|t| s.contains(t)))
        .collect()
}

#[test]
fn test_kernel_has_the_test_code_this_check_looks_for() {
    // The check below can fail: the fragments do name symbols of the test
    // kernel.
    let syms = symbols(&image(TEST_KERNEL));
    let found = test_symbols(&syms);
    for frag in ["xenfront_test", "scenario"] {
        assert!(
            found.iter().any(|s| s.contains(frag)),
            "no test-kernel symbol contains {frag:?}: the check would prove nothing"
        );
    }
}

#[test]
fn product_images_have_no_test_code() {
    for name in PRODUCTS {
        let syms = symbols(&image(name));
        assert!(
            syms.iter().any(|s| s.contains("__xenfront_app_main")),
            "{name}: no application entry symbol (stripped image?)"
        );
        let found = test_symbols(&syms);
        assert!(found.is_empty(), "{name} contains test code: {found:?}");
    }
}

#[test]
fn image_sizes() {
    let mut line = String::from("figure: stripped image size, bytes:");
    for name in PRODUCTS.iter().chain([&TEST_KERNEL]) {
        let elf = image(name);
        let unstripped = std::fs::metadata(&elf).unwrap().len();
        let stripped = stripped_size(&elf);
        assert!(stripped > 0 && stripped <= unstripped);
        line += &format!(" {name} {stripped} (unstripped {unstripped});");
    }
    println!("{line}");
}
