//! XenStore through the stock `xenstore-*` command-line tools (Dom0 has
//! them in PATH; the nested lab adds `/usr/lib/xen-4.17/bin`).

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

fn run(cmd: &mut Command, what: &str) -> io::Result<String> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot run: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{what}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\n')
        .to_string())
}

pub fn read(path: &str) -> io::Result<String> {
    run(
        Command::new("xenstore-read").arg(path),
        &format!("xenstore-read {path}"),
    )
}

/// Read several keys with one `xenstore-read` (one process, not one per
/// key): their values in order; an error if any is missing.
pub fn read_many(paths: &[&str]) -> io::Result<Vec<String>> {
    let out = run(
        Command::new("xenstore-read").args(paths),
        &format!("xenstore-read {}", paths.join(" ")),
    )?;
    let v: Vec<String> = out.lines().map(str::to_string).collect();
    if v.len() != paths.len() {
        return Err(io::Error::other(format!(
            "xenstore-read {}: {} values",
            paths.join(" "),
            v.len()
        )));
    }
    Ok(v)
}

/// Read `path` as a number, retrying every 50 ms until `timeout` (the other
/// side may not have published it yet).
pub fn wait_read_num(path: &str, timeout: Duration) -> io::Result<u64> {
    let start = Instant::now();
    loop {
        let r = read(path).and_then(|s| {
            crate::args::parse_num(s.trim())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
        });
        match r {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Write several keys; `xenstore-write` does them in one transaction.
pub fn write(pairs: &[(&str, &str)]) -> io::Result<()> {
    let mut c = Command::new("xenstore-write");
    for (k, v) in pairs {
        c.arg(k).arg(v);
    }
    run(&mut c, "xenstore-write").map(|_| ())
}

/// `xenstore-chmod path perm...`, perms like `n0`, `r5` (first = owner).
pub fn chmod(path: &str, perms: &[String]) -> io::Result<()> {
    run(
        Command::new("xenstore-chmod").arg(path).args(perms),
        &format!("xenstore-chmod {path}"),
    )
    .map(|_| ())
}

/// Perms that let only Dom0 write and `reader` read: `n0 r<reader>`.
pub fn dom0_owned_readable_by(reader: u16) -> Vec<String> {
    vec!["n0".to_string(), format!("r{reader}")]
}
