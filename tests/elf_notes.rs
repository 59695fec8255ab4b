//! Host check of the kernel image: Xen ELF notes (parsed here from the
//! PT_NOTE segments, cross-checked with `readelf -n`) and the program headers
//! (p_vaddr == p_paddr, linked at 1 MiB). Prints the image size figures.
//!
//! Uses the test kernel, target/x86_64-unknown-none/release/xenfront-test
//! (every image carries the same notes: they come with the library). If it is missing, builds
//! it into target/elf-test (another target dir, so the nested cargo does not
//! wait for the build-directory lock held by this `cargo test`).

use std::path::{Path, PathBuf};
use std::process::Command;

const KERNEL: &str = "target/x86_64-unknown-none/release/xenfront-test";

fn kernel() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = root.join(KERNEL);
    if main.exists() {
        return main;
    }
    let dir = root.join("target/elf-test");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-none",
            "-p",
            "xenfront-test",
        ])
        .arg("--target-dir")
        .arg(&dir)
        .status()
        .expect("run cargo build for the kernel");
    assert!(
        status.success(),
        "kernel build failed; build it with `cargo build --release --target x86_64-unknown-none`"
    );
    dir.join("x86_64-unknown-none/release/xenfront-test")
}

fn u16le(b: &[u8], o: usize) -> u64 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap()) as u64
}
fn u32le(b: &[u8], o: usize) -> u64 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64
}
fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

struct Phdr {
    kind: u64,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

struct Elf {
    entry: u64,
    phdrs: Vec<Phdr>,
    /// (type, desc) of every "Xen" note in PT_NOTE segments.
    notes: Vec<(u64, Vec<u8>)>,
}

fn parse(b: &[u8]) -> Elf {
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(b[4], 2, "not ELF64");
    assert_eq!(u16le(b, 18), 62, "not x86_64");
    let entry = u64le(b, 24);
    let phoff = u64le(b, 32) as usize;
    let phentsize = u16le(b, 54) as usize;
    let phnum = u16le(b, 56) as usize;
    let phdrs: Vec<Phdr> = (0..phnum)
        .map(|i| {
            let p = phoff + i * phentsize;
            Phdr {
                kind: u32le(b, p),
                offset: u64le(b, p + 8),
                vaddr: u64le(b, p + 16),
                paddr: u64le(b, p + 24),
                filesz: u64le(b, p + 32),
                memsz: u64le(b, p + 40),
            }
        })
        .collect();
    let mut notes = Vec::new();
    for ph in phdrs.iter().filter(|p| p.kind == 4) {
        assert_ne!(ph.offset, 0, "libelf skips PT_NOTE with p_offset 0");
        let seg = &b[ph.offset as usize..(ph.offset + ph.filesz) as usize];
        let mut o = 0;
        while o + 12 <= seg.len() {
            let namesz = u32le(seg, o) as usize;
            let descsz = u32le(seg, o + 4) as usize;
            let kind = u32le(seg, o + 8);
            let name = &seg[o + 12..o + 12 + namesz];
            let desc_off = o + 12 + ((namesz + 3) & !3);
            let desc = seg[desc_off..desc_off + descsz].to_vec();
            if name == b"Xen\0" {
                notes.push((kind, desc));
            }
            o = desc_off + ((descsz + 3) & !3);
        }
    }
    Elf {
        entry,
        phdrs,
        notes,
    }
}

fn note(elf: &Elf, kind: u64) -> &[u8] {
    let found: Vec<_> = elf.notes.iter().filter(|(k, _)| *k == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one Xen note of type {kind}"
    );
    &found[0].1
}

fn note_num(elf: &Elf, kind: u64) -> u64 {
    let d = note(elf, kind);
    match d.len() {
        1 => d[0] as u64,
        2 => u16le(d, 0),
        4 => u32le(d, 0),
        8 => u64le(d, 0),
        n => panic!("note {kind}: numeric desc of {n} bytes reads as 0 in libelf"),
    }
}

fn note_str(elf: &Elf, kind: u64) -> &str {
    let d = note(elf, kind);
    let s = d
        .strip_suffix(b"\0")
        .expect("string note not NUL-terminated");
    std::str::from_utf8(s).unwrap()
}

#[test]
fn xen_notes_and_layout() {
    let path = kernel();
    let bytes = std::fs::read(&path).unwrap();
    let elf = parse(&bytes);

    // Notes (elfnote.h numbers) the PV builder needs.
    assert_eq!(note_str(&elf, 6), "xenfront"); // GUEST_OS
    assert_eq!(note_str(&elf, 8), "generic"); // LOADER
    assert!(note_str(&elf, 5).starts_with("xen-3.0")); // XEN_VERSION
    assert_eq!(note_num(&elf, 3), 0); // VIRT_BASE
    assert_eq!(note_num(&elf, 4), 0); // PADDR_OFFSET
    let entry = note_num(&elf, 1); // ENTRY
    assert_eq!(entry, elf.entry, "ENTRY note != e_entry");
    let hpage = note_num(&elf, 2); // HYPERCALL_PAGE
    assert_eq!(hpage % 4096, 0, "hypercall page not page aligned");
    assert!(
        elf.notes.iter().all(|(k, _)| *k != 10),
        "no FEATURES note expected"
    );
    // PVH: the same ELF carries PHYS32_ENTRY, a 32-bit physical entry that
    // is not the PV entry.
    let phys32 = note_num(&elf, 18);
    assert!(phys32 < 1 << 32, "PHYS32_ENTRY not 32-bit: {phys32:#x}");
    assert_ne!(phys32, entry, "PHYS32_ENTRY must be the 32-bit PVH entry");

    // Program headers: one fixed-address image, p_vaddr == p_paddr.
    let loads: Vec<&Phdr> = elf.phdrs.iter().filter(|p| p.kind == 1).collect();
    assert!(!loads.is_empty());
    for p in &loads {
        assert_eq!(p.vaddr, p.paddr, "PT_LOAD with p_vaddr != p_paddr");
    }
    let start = loads.iter().map(|p| p.vaddr).min().unwrap();
    let end = loads.iter().map(|p| p.vaddr + p.memsz).max().unwrap();
    assert_eq!(start, 0x100000, "image must be linked at 1 MiB");
    assert!((start..end).contains(&entry), "entry outside the image");
    assert!(
        loads
            .iter()
            .any(|p| (p.paddr..p.paddr + p.filesz).contains(&phys32)),
        "PHYS32_ENTRY not inside a loaded segment"
    );
    assert!(
        loads
            .iter()
            .any(|p| (p.vaddr..p.vaddr + p.filesz).contains(&hpage)
                && (p.vaddr..p.vaddr + p.filesz).contains(&(hpage + 4095))),
        "hypercall page not inside a loaded segment"
    );

    // Cross-check with binutils if it is installed.
    if let Ok(out) = Command::new("readelf").arg("-nW").arg(&path).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        let xen = text
            .lines()
            .filter(|l| l.trim_start().starts_with("Xen "))
            .count();
        assert_eq!(
            xen,
            elf.notes.len(),
            "readelf -n sees a different note count:\n{text}"
        );
    }

    // Figures.
    let filesz: u64 = loads.iter().map(|p| p.filesz).sum();
    println!(
        "Figures: image {} bytes (file), {} bytes loaded, {} bytes in memory (with .bss)",
        bytes.len(),
        filesz,
        end - start
    );
}
