//! Small host helpers: paths, shelling out, hashing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::LabError;

/// Repository root (the workspace containing this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The lab crate's directory (lab/).
pub fn lab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// ~/.cache/xenfront (or $XF_LAB_CACHE).
pub fn cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("XF_LAB_CACHE") {
        return PathBuf::from(p);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache")
        });
    base.join("xenfront")
}

/// target/lab (honours CARGO_TARGET_DIR).
pub fn out_dir() -> PathBuf {
    let t = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    t.join("lab")
}

/// Are we root (then the lab may apt-get install)?
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Is `cmd` on PATH?
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run a shell command; error with its stderr when it fails.
pub fn sh(script: &str) -> Result<String, LabError> {
    let o = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Setup(format!("cannot run sh: {e}")))?;
    if !o.status.success() {
        return Err(LabError::Setup(format!(
            "command failed ({}): {}\n{}",
            o.status,
            if script.len() > 300 {
                format!(
                    "{}…",
                    &script[..script
                        .char_indices()
                        .nth(300)
                        .map(|c| c.0)
                        .unwrap_or(script.len())]
                )
            } else {
                script.to_string()
            },
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Single-quote for sh.
pub fn q(s: impl AsRef<str>) -> String {
    format!("'{}'", s.as_ref().replace('\'', "'\\''"))
}

/// Single-quote a path for sh.
pub fn qp(p: &Path) -> String {
    q(p.to_string_lossy())
}

/// Hex sha256 of a file (streamed).
pub fn sha256_file(p: &Path) -> Result<String, LabError> {
    let mut f = io(std::fs::File::open(p), p.display())?;
    let mut h = Sha256::new();
    io(std::io::copy(&mut f, &mut h), p.display())?;
    Ok(hex(&h.finalize()))
}

/// Hex sha256 of `data` (never fails; the `Result` is kept for callers).
pub fn sha256_bytes(data: &[u8]) -> Result<String, LabError> {
    Ok(sha256_hex(data))
}

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decode base64, skipping every byte outside the alphabet (line breaks, padding, and
/// whatever noise a serial line might add: the sha256 check catches the damage).
pub fn base64_decode(text: &str) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text.as_bytes() {
        if let Some(v) = val(c) {
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
    }
    out
}

/// An I/O error as a setup error about `what`.
pub fn io<T>(r: std::io::Result<T>, what: impl std::fmt::Display) -> Result<T, LabError> {
    r.map_err(|e| LabError::Setup(format!("{what}: {e}")))
}

/// Host tools the lab shells out to, with the Debian package that has each. Hashing and
/// gunzip are done in-process (sha2, flate2); `gzip` still compresses the cpio archives.
pub const HOST_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("cpio", "cpio"),
    ("depmod", "kmod"),
    ("modprobe", "kmod"),
    ("gzip", "gzip"),
    ("dpkg-deb", "dpkg"),
];

/// Make sure the host tools exist; install them with apt as root, else fail clearly,
/// naming each missing tool and its package.
pub fn ensure_host_tools() -> Result<(), LabError> {
    let missing: Vec<(&str, &str)> = HOST_TOOLS
        .iter()
        .filter(|(c, _)| !have(c) && !Path::new(&format!("/sbin/{c}")).exists())
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<String> = missing
        .iter()
        .map(|(c, p)| format!("{c} (Debian package {p})"))
        .collect();
    let mut pk: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pk.dedup();
    if !is_root() {
        return Err(LabError::Setup(format!(
            "missing host tools: {} — not running as root, so the lab cannot install them; run `sudo apt-get install -y {}`",
            tools.join(", "),
            pk.join(" ")
        )));
    }
    eprintln!(
        "lab: missing host tools: {}; installing {} with apt-get",
        tools.join(", "),
        pk.join(" ")
    );
    sh(&format!("DEBIAN_FRONTEND=noninteractive apt-get install -y {} >&2 || (apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y {} >&2)", pk.join(" "), pk.join(" ")))?;
    Ok(())
}

/// Decompress gzip data (one gzip member, as `gzip -c` writes). A truncated or corrupt
/// stream gives the bytes decoded up to the damage, like `gzip -dc` did, and an error.
pub fn gunzip_partial(data: &[u8]) -> (Vec<u8>, Option<std::io::Error>) {
    let mut out = Vec::new();
    let e = flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .err();
    (out, e)
}

/// Decompress gzip data; what could be decoded even if the stream is damaged (the
/// callers check a sha256 of the result). Never fails; the `Result` is kept for callers.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, LabError> {
    Ok(gunzip_partial(data).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn sha256_known_values() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_bytes(b"abc").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let p = std::env::temp_dir().join(format!("lab-sha-{}", std::process::id()));
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_hex(b"abc"));
        let _ = std::fs::remove_file(&p);
        assert!(sha256_file(Path::new("/nonexistent/lab-file")).is_err());
    }

    #[test]
    fn gunzip_round_trip_and_damage() {
        let text: Vec<u8> = (0..20000u32).flat_map(|i| i.to_le_bytes()).collect();
        let z = gz(&text);
        assert_eq!(gunzip(&z).unwrap(), text);
        let (all, e) = gunzip_partial(&z);
        assert!(e.is_none() && all == text);
        // Cut short: a prefix of the data and an error, like `gzip -dc`.
        let (part, e) = gunzip_partial(&z[..z.len() / 2]);
        assert!(e.is_some());
        assert!(part.len() < text.len() && text.starts_with(&part));
        // Not gzip at all: nothing, and an error.
        let (none, e) = gunzip_partial(b"this is not gzip");
        assert!(none.is_empty() && e.is_some());
        assert_eq!(gunzip(b"").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn base64_skips_noise() {
        assert_eq!(base64_decode("aGVsbG8="), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8=\r\n"), b"hello");
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(base64_decode(""), b"");
        // Bytes outside the alphabet are dropped; the rest still decodes.
        assert_eq!(base64_decode("aG\u{1b}[*]VsbG8"), b"hello");
    }
}
