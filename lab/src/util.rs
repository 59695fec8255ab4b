//! Small host helpers: paths, shelling out, hashing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

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

pub fn qp(p: &Path) -> String {
    q(p.to_string_lossy())
}

pub fn sha256_file(p: &Path) -> Result<String, LabError> {
    let out = sh(&format!("sha256sum {}", qp(p)))?;
    Ok(out.split_whitespace().next().unwrap_or("").to_string())
}

pub fn sha256_bytes(data: &[u8]) -> Result<String, LabError> {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Setup(format!("sha256sum: {e}")))?;
    c.stdin
        .take()
        .unwrap()
        .write_all(data)
        .map_err(|e| LabError::Setup(e.to_string()))?;
    let o = c
        .wait_with_output()
        .map_err(|e| LabError::Setup(e.to_string()))?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

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

pub fn io<T>(r: std::io::Result<T>, what: impl std::fmt::Display) -> Result<T, LabError> {
    r.map_err(|e| LabError::Setup(format!("{what}: {e}")))
}

/// Make sure the host tools exist; install them with apt as root, else fail clearly.
pub fn ensure_host_tools() -> Result<(), LabError> {
    let needed = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("cpio", "cpio"),
        ("depmod", "kmod"),
        ("modprobe", "kmod"),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(c, _)| !have(c) && !Path::new(&format!("/sbin/{c}")).exists())
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pk = missing.clone();
    pk.dedup();
    if !is_root() {
        return Err(LabError::Setup(format!(
            "missing host packages: {} — not running as root, so the lab cannot install them; run `sudo apt-get install -y {}`",
            pk.join(" "),
            pk.join(" ")
        )));
    }
    eprintln!("lab: installing {} with apt-get", pk.join(" "));
    sh(&format!("DEBIAN_FRONTEND=noninteractive apt-get install -y {} >&2 || (apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y {} >&2)", pk.join(" "), pk.join(" ")))?;
    Ok(())
}

/// Decompress gzip data with the host's `gzip -dc`.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, LabError> {
    let mut c = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| LabError::Setup(format!("gzip: {e}")))?;
    let mut stdin = c.stdin.take().unwrap();
    let owned = data.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&owned);
    });
    let o = c
        .wait_with_output()
        .map_err(|e| LabError::Setup(e.to_string()))?;
    let _ = w.join();
    Ok(o.stdout)
}
