//! blkfront against the stock Linux blkback (issue 14): the guest gets a
//! 16 MiB raw image of random bytes (`disk = [...]`, loop device via the
//! `block` hotplug script), reads all of it, writes a pattern over it,
//! flushes, reads it back and closes the device. Guest side:
//! tests/kernel/src/blk.rs (`test=blk`), src/blk.rs.
//!
//! Dom0 creates the image before `xl create` (`dom0_precreate`) and hashes
//! it then and again once the guest is gone; the guest's sha256 of what it
//! read must equal the first, that of what it wrote the second.

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{line, out, Mode};
use crate::demo::check_grants_baseline;

/// The disk image in Dom0.
const IMAGE: &str = "/tmp/disk.img";

/// Runs before `xl create`: the image the config names, and its hash.
const PRECREATE: &str = r#"
# An earlier scenario's disk must be gone (loop device detached, backend
# removed) before the block hotplug script runs again.
i=0
while { [ -n "$(losetup -a 2>/dev/null)" ] || [ -n "$(xenstore-list /local/domain/0/backend/vbd 2>/dev/null)" ]; } && [ $i -lt 150 ]; do
    usleep 200000; i=$((i + 1))
done
[ $i -eq 0 ] || echo "waited $((i / 5)) s for the previous disk to go"
rm -f /tmp/disk.img
head -c 16777216 /dev/urandom >/tmp/disk.img
sha256sum /tmp/disk.img | cut -d' ' -f1 >"$OUT/before.sha256"
ls -l /tmp/disk.img
"#;

/// Runs with the guest: once the domain is gone (destroyed after its
/// poweroff, the disk detached), the image's hash again.
const SCRIPT: &str = r#"
xf_poll 600 sh -c '! xl domid "$NAME" >/dev/null 2>&1' || echo "domain still there" >&2
sha256sum /tmp/disk.img | cut -d' ' -f1 >"$OUT/after.sha256"
losetup -a >"$OUT/losetup" 2>&1
cp /var/log/xen/xen-hotplug.log "$OUT/xen-hotplug.log" 2>/dev/null
"#;

/// The 64-digit hex word after `sha256` in `l`.
fn sha_in(l: &str) -> Result<&str, String> {
    let w: Vec<&str> = l.split_whitespace().collect();
    let i = w
        .iter()
        .position(|x| *x == "sha256")
        .ok_or_else(|| format!("no sha256 in {l:?}"))?;
    w.get(i + 1)
        .copied()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("no sha256 value in {l:?}"))
}

/// `(<x.x> MB/s)` of a line.
fn rate(l: &str) -> &str {
    l.rsplit('(').next().unwrap_or("").trim_end_matches(')')
}

fn check(o: &Outcome) -> Result<(), String> {
    let info = line(o, "blk: ")?;
    if !info.starts_with("32768 sectors of 512 bytes, read-only 0") {
        return Err(format!("guest's disk: {info:?}, want 16 MiB writable"));
    }
    let read = line(o, "blk: read ")?;
    let wrote = line(o, "blk: wrote ")?;
    let verified = line(o, "blk: verified ")?;
    line(o, "blk: closed")?;
    let before = out(o, "before.sha256")?;
    let after = out(o, "after.sha256")?;
    let (r, w) = (sha_in(read)?, sha_in(wrote)?);
    if r != before {
        return Err(format!("guest read sha256 {r}, Dom0's image had {before}"));
    }
    if w != after {
        return Err(format!("guest wrote sha256 {w}, Dom0's image now {after}"));
    }
    if before == after {
        return Err("the image did not change".into());
    }
    let g = check_grants_baseline(o)?;
    let stats = crate::common::lines(o)
        .find(|l| l.starts_with("blk: ") && l.contains(" requests, "))
        .unwrap_or("");
    println!(
        "    figure: blkfront {}: read {} MB/s, write {} MB/s, read back {} MB/s; sha256 equal ({r} / {w}); {stats}; {g}",
        o.name,
        rate(read).trim_end_matches(" MB/s"),
        rate(wrote).trim_end_matches(" MB/s"),
        rate(verified).trim_end_matches(" MB/s"),
    );
    Ok(())
}

pub fn scenarios() -> Vec<Scenario> {
    vec![Mode::Pv
        .scenario("blk")
        .timeout_secs(600)
        .extra("test=blk")
        .config_line(format!(
            "disk = ['format=raw,vdev=xvda,access=rw,target={IMAGE}']"
        ))
        .dom0_precreate(PRECREATE)
        .dom0_script(SCRIPT)
        .marker("blk: closed")
        .marker("Test result: SUCCESS")
        .shutdown(Some(Shutdown::Poweroff))
        .check(check)]
}
