//! blkfront against the stock Linux blkback: raw images and loop devices
//! in Dom0, the guest side in tests/kernel/src/blk.rs, src/blk.rs.
//!
//! * `blk`: a 64 MiB image of random bytes (`disk = [...]`, loop device via
//!   the `block` hotplug script); the guest reads all of it, writes a
//!   pattern over it, flushes, reads it back, closes. Dom0 hashes the
//!   image before `xl create` (`dom0_precreate`) and once the guest is
//!   gone: the guest's sha256 of what it read must equal the first, that
//!   of what it wrote the second.
//! * `blk-multi`: three loop devices at once (`phy:`): writable (unaligned
//!   I/O, discard), read-only (`r`: writes refused, image unchanged), and
//!   4096-byte sectors (`losetup -b 4096`).
//! * `blk-detach`: Dom0 `xl block-detach`es the disk while the guest reads
//!   it, then `xl block-attach`es another image, which the guest reads.
//! * `blk-features`: the same disk with each feature set (ring order,
//!   indirect, persistent grants); figures.
//! * `blk-hostile`: `xf-blk-back` (peers/) plays a blkback that answers
//!   with a bad id, a bad status, a wrong operation, or not at all.
//! * `linux-pv-blk`: Debian's Linux blkfront on the same kind of image.

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{line, lines, out, Mode};

/// Waits until an earlier scenario's disks are gone (loop devices
/// detached, backends removed) before the block hotplug script runs again.
pub const WAIT_DISKS_GONE: &str = r#"
i=0
while { [ -n "$(losetup -a 2>/dev/null)" ] || [ -n "$(xenstore-list /local/domain/0/backend/vbd 2>/dev/null)" ]; } && [ $i -lt 150 ]; do
    usleep 200000; i=$((i + 1))
done
[ $i -eq 0 ] || echo "waited $((i / 5)) s for the previous disk to go"
"#;

/// `img NAME MIB`: a fresh image of random bytes and its sha256 in
/// `$OUT/NAME.before`.
const IMG: &str = r#"
img() {
    rm -f "/tmp/$1.img"
    head -c $(($2 * 1048576)) /dev/urandom >"/tmp/$1.img"
    sha256sum "/tmp/$1.img" | cut -d' ' -f1 >"$OUT/$1.before"
}
"#;

/// Waits for the guest to be gone and its backends removed, then hashes
/// each image named in `$IMAGES` into `$OUT/<name>.after`.
const AFTER: &str = r#"
xf_poll 600 sh -c '! xl domid "$NAME" >/dev/null 2>&1' || echo "domain still there" >&2
xf_poll 30 sh -c '[ -z "$(xenstore-list /local/domain/0/backend/vbd/$DOMID 2>/dev/null)" ]' || echo "backend still there" >&2
for i in $IMAGES; do sha256sum "/tmp/$i.img" | cut -d' ' -f1 >"$OUT/$i.after"; done
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
    l.rsplit('(')
        .next()
        .unwrap_or("")
        .trim_end_matches(')')
        .trim_end_matches(" MB/s")
}

/// `resources: before <r> after <r>` (`grants <n> deferred <n> free pages
/// <n> open ports <n>`): grants, deferred grants and open ports equal.
/// Returns the line.
fn check_resources(o: &Outcome) -> Result<&str, String> {
    let l = line(o, "resources: before ")?;
    let (before, after) = l
        .split_once(" after ")
        .ok_or_else(|| format!("resources line {l:?}"))?;
    fn counts(r: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
        let w: Vec<&str> = r.split_whitespace().collect();
        (w.get(1).copied(), w.get(3).copied(), w.get(9).copied())
    }
    if counts(before) != counts(after) || counts(before).2.is_none() {
        return Err(format!("resources not back at their baseline: {l:?}"));
    }
    Ok(l)
}

fn eq(what: &str, guest: &str, dom0: &str) -> Result<(), String> {
    if guest != dom0 {
        return Err(format!("{what}: guest sha256 {guest}, Dom0 {dom0}"));
    }
    Ok(())
}

fn check(o: &Outcome) -> Result<(), String> {
    let info = line(o, "blk: ")?;
    if !info.starts_with("131072 sectors of 512 bytes, read-only 0") {
        return Err(format!("guest's disk: {info:?}, want 64 MiB writable"));
    }
    let ring = line(o, "blk: ring order ")?;
    // Linux 6.1 blkback: max-ring-page-order 4, 256 indirect segments,
    // persistent grants.
    if !ring.starts_with("4 (512 slots), 256 segments per request, persistent 1") {
        return Err(format!(
            "ring set-up {ring:?}, want order 4, 256 segments, persistent"
        ));
    }
    let read = line(o, "blk: read ")?;
    let wrote = line(o, "blk: wrote ")?;
    let verified = line(o, "blk: verified ")?;
    line(o, "blk: closed")?;
    let (r, w) = (sha_in(read)?, sha_in(wrote)?);
    eq("read", r, out(o, "disk.before")?)?;
    eq("written", w, out(o, "disk.after")?)?;
    if r == w {
        return Err("the image did not change".into());
    }
    let res = check_resources(o)?;
    let stats = lines(o)
        .find(|l| l.starts_with("blk: ") && l.contains(" requests ("))
        .unwrap_or("");
    println!(
        "    figure: blkfront {}: 64 MiB read {} MB/s, write {} MB/s, read back {} MB/s; sha256 equal Dom0's ({r} / {w}); {stats}; {res}",
        o.name,
        rate(read),
        rate(wrote),
        rate(verified),
    );
    Ok(())
}

/// The hotplug script of `blk-multi`'s disks: what the stock `block`
/// script does for a `phy:` device once its checks pass (Xen's
/// tools/hotplug/Linux/block: `physical-device` as `major:minor` in hex,
/// which blkback waits for, and `hotplug-status`, which libxl waits for).
const HOTPLUG: &str = "/tmp/xf-blk-hotplug";
const MAKE_HOTPLUG: &str = r#"
cat >/tmp/xf-blk-hotplug <<'EOS'
#!/bin/sh
[ "$1" = add ] || exit 0
dev=$(xenstore-read "$XENBUS_PATH/params")
xenstore-write "$XENBUS_PATH/physical-device" "$(stat -L -c %t:%T "$dev")" \
    "$XENBUS_PATH/physical-device-path" "$dev" "$XENBUS_PATH/hotplug-status" connected
EOS
chmod 755 /tmp/xf-blk-hotplug
"#;

/// The loop devices of `blk-multi`: writable, read-only, 4 KiB sectors
/// (util-linux's `/sbin/losetup`: busybox's, first in Dom0's PATH, has no
/// `-b`).
const LOOP_RW: &str = "/dev/loop5";
const LOOP_RO: &str = "/dev/loop6";
const LOOP4K: &str = "/dev/loop7";
/// `blk-detach`'s second disk, attached after the first is detached.
const LOOP_ATTACH: &str = "/dev/loop6";

fn check_multi(o: &Outcome) -> Result<(), String> {
    let disks: Vec<&str> = lines(o).filter(|l| l.starts_with("blk: disk ")).collect();
    if disks.len() != 3 {
        return Err(format!("want three disks open at once, got {disks:?}"));
    }
    for want in [
        "8192 sectors of 512 bytes, read-only 0",
        "2048 sectors of 512 bytes, read-only 1",
        "8192 sectors of 4096 bytes, read-only 0",
    ] {
        if !disks.iter().any(|d| d.ends_with(want)) {
            return Err(format!("no disk with {want:?} among {disks:?}"));
        }
    }
    let un = line(o, "blk: unaligned: ")?;
    eq(
        "first 64 KiB of the writable disk",
        sha_in(un)?,
        out(o, "rw.head")?,
    )?;
    let discard = line(o, "blk: discard ")?;
    if discard.contains("reads back zero")
        && (!discard.ends_with("zero 1") || out(o, "rw.hole")? != "0")
    {
        return Err(format!(
            "discard: guest {discard:?}, Dom0 non-zero bytes in the range {:?}",
            out(o, "rw.hole")
        ));
    }
    let ro = line(o, "blk: read-only disk: read ")?;
    eq("read-only disk", sha_in(ro)?, out(o, "ro.before")?)?;
    eq(
        "read-only disk after",
        out(o, "ro.after")?,
        out(o, "ro.before")?,
    )?;
    let refused = line(o, "blk: read-only disk: write refused: ")?;
    if !refused.contains("read-only") {
        return Err(format!("refusal {refused:?} does not name the cause"));
    }
    line(o, "blk: read-only disk: still reads")?;
    let big = line(o, "blk: 4096-byte sectors: ")?;
    eq("4096-byte-sector disk", sha_in(big)?, out(o, "big.after")?)?;
    line(o, "blk: closed all")?;
    let res = check_resources(o)?;
    println!(
        "    figure: blkfront {}: 3 disks at once; unaligned I/O, read-only refusal, 4 KiB sectors agree with Dom0; discard {discard}; {res}",
        o.name
    );
    Ok(())
}

fn check_detach(o: &Outcome) -> Result<(), String> {
    let d = line(o, "blk: detached mid-I/O after ")?;
    if !d.contains("Closing") && !d.contains("closed") && !d.contains("disconnected") {
        return Err(format!(
            "detach error {d:?} does not name the backend's close"
        ));
    }
    line(o, "blk: later I/O fails: disconnected")?;
    line(o, "blk: guest still running")?;
    if out(o, "detach.rc")? != "0" {
        return Err(format!(
            "xl block-detach failed: {:?}",
            out(o, "detach.out")
        ));
    }
    if out(o, "attach.rc")? != "0" {
        return Err(format!(
            "xl block-attach failed: {:?}",
            out(o, "attach.out")
        ));
    }
    let again = line(o, "blk: attached again: ")?;
    eq("attached disk", sha_in(again)?, out(o, "b.before")?)?;
    line(o, "blk: closed")?;
    let res = check_resources(o)?;
    println!(
        "    figure: blkfront {}: detach mid-I/O → {d}; re-attached disk read, sha256 equal Dom0's; {res}",
        o.name
    );
    Ok(())
}

/// MiB of the `blk-features` disk: `XF_BLK_FEATURES_MIB`, else 4 (CI's
/// smoke run; `./xf bench` uses 64).
fn features_mib() -> u32 {
    std::env::var("XF_BLK_FEATURES_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=1024).contains(n))
        .unwrap_or(4)
}

fn check_features(o: &Outcome) -> Result<(), String> {
    let first = line(o, "blk-feat: first read ")?;
    eq("first read", sha_in(first)?, out(o, "disk.before")?)?;
    let last = line(o, "blk-feat: last write ")?;
    eq("last write", sha_in(last)?, out(o, "disk.after")?)?;
    let sets: Vec<&str> = lines(o)
        .filter(|l| l.starts_with("blk-feat: order"))
        .collect();
    if sets.len() != 5 {
        return Err(format!("want 5 feature sets, got {sets:?}"));
    }
    check_resources(o)?;
    for s in sets {
        println!("    figure: blkfront {} {s}", o.name);
    }
    Ok(())
}

fn check_hostile(o: &Outcome) -> Result<(), String> {
    for (fault, error) in [
        ("bad-id", "unknown id"),
        ("bad-status", "status 7"),
        ("bad-op", "operation"),
        ("stall", "unanswered"),
    ] {
        let l = line(o, &format!("blk-hostile: {fault}: "))?;
        if !l.contains(error) || !l.ends_with("disconnected") {
            return Err(format!(
                "{fault}: {l:?} does not name {error:?} and a disconnect"
            ));
        }
        println!(
            "    figure: blkfront {} hostile backend {fault}: {l}",
            o.name
        );
    }
    let back = out(o, "blk-back.out")?;
    if out(o, "blk-back.status")? != "0" || !back.contains("blk-back: done") {
        return Err(format!("xf-blk-back: {back}"));
    }
    check_resources(o)?;
    Ok(())
}

fn base(name: &str, test: &str) -> Scenario {
    Mode::Pv
        .scenario(name)
        .timeout_secs(600)
        .extra(format!("test={test}"))
        .marker("Test result: SUCCESS")
        .shutdown(Some(Shutdown::Poweroff))
}

pub fn scenarios() -> Vec<Scenario> {
    vec![
        base("blk", "blk")
            .config_line("disk = ['format=raw,vdev=xvda,access=rw,target=/tmp/disk.img']")
            .dom0_precreate(format!("{WAIT_DISKS_GONE}{IMG}img disk 64\nls -l /tmp/disk.img\n"))
            .dom0_script(format!("IMAGES=disk\n{AFTER}"))
            .marker("blk: closed")
            .check(check),
        base("blk-multi", "blk-multi")
            .timeout_secs(240)
            // Loop devices made before `xl create`, and a minimal hotplug
            // script: three runs of the stock `block` script, serialised
            // on its lock, overrun libxl's 10 s hotplug timeout under TCG.
            .config_line(format!(
                "disk = ['vdev=xvda,access=rw,script={HOTPLUG},target={LOOP_RW}', \
                 'vdev=xvdb,access=ro,script={HOTPLUG},target={LOOP_RO}', \
                 'vdev=xvdc,access=rw,script={HOTPLUG},target={LOOP4K}']"
            ))
            .dom0_precreate(format!(
                "{WAIT_DISKS_GONE}{IMG}img rw 4\nimg ro 1\nimg big 4\n\
                 {MAKE_HOTPLUG}\
                 losetup {LOOP_RW} /tmp/rw.img\nlosetup -r {LOOP_RO} /tmp/ro.img\n\
                 /sbin/losetup -b 4096 {LOOP4K} /tmp/big.img\nlosetup -a\n"
            ))
            .dom0_script(format!(
                "IMAGES='rw ro big'\n{AFTER}\
                 losetup -d {LOOP_RW}; losetup -d {LOOP_RO}; losetup -d {LOOP4K}\n\
                 head -c 65536 /tmp/rw.img | sha256sum | cut -d' ' -f1 >\"$OUT/rw.head\"\n\
                 dd if=/tmp/rw.img bs=65536 skip=16 count=1 2>/dev/null | tr -d '\\000' | wc -c | tr -d ' ' >\"$OUT/rw.hole\"\n"
            ))
            .marker("blk: closed all")
            .check(check_multi),
        // Loop devices and the minimal hotplug script again: the stock
        // `block` script run by `xl block-attach` overran libxl's 10 s
        // hotplug timeout on a loaded host.
        base("blk-detach", "blk-detach")
            .config_line(format!(
                "disk = ['vdev=xvda,access=rw,script={HOTPLUG},target={LOOP_RW}']"
            ))
            .dom0_precreate(format!(
                "{WAIT_DISKS_GONE}{IMG}img disk 4\nimg b 4\n{MAKE_HOTPLUG}\
                 losetup {LOOP_RW} /tmp/disk.img\nlosetup {LOOP_ATTACH} /tmp/b.img\n"
            ))
            .dom0_script(format!(
                r#"
xf_poll 120 xenstore-read "/local/domain/$DOMID/data/xf-blk-io" >/dev/null || echo "guest never started I/O" >&2
usleep 300000
xl block-detach "$NAME" xvda >"$OUT/detach.out" 2>&1; echo $? >"$OUT/detach.rc"
xf_poll 60 sh -c '[ -z "$(xenstore-list /local/domain/0/backend/vbd/$DOMID 2>/dev/null)" ]' || echo "backend still there after detach" >&2
xl block-attach "$NAME" vdev=xvda,access=rw,script={HOTPLUG},target={LOOP_ATTACH} >"$OUT/attach.out" 2>&1; echo $? >"$OUT/attach.rc"
xenstore-write "/local/domain/$DOMID/data/xf-blk-attached" 1
IMAGES=''
{AFTER}
losetup -d {LOOP_RW}; losetup -d {LOOP_ATTACH}
"#
            ))
            .marker("blk: closed")
            .check(check_detach),
        base("blk-features", "blk-features")
            .config_line("disk = ['format=raw,vdev=xvda,access=rw,target=/tmp/disk.img']")
            .dom0_precreate(format!("{WAIT_DISKS_GONE}{IMG}img disk {}\n", features_mib()))
            .dom0_script(format!("IMAGES=disk\n{AFTER}"))
            .marker("blk-feat: last write")
            .check(check_features),
        base("blk-hostile", "blk-hostile")
            .file(crate::common::peer("xf-blk-back"), "xf-blk-back")
            .dom0_script(
                r#"
"$FILES/xf-blk-back" "$DOMID" 99 --faults bad-id,bad-status,bad-op,stall >"$OUT/blk-back.out" 2>&1 &
P=$!
# Ready once it is InitWait: the device exists with its permissions.
xf_poll 30 sh -c '[ "$(xenstore-read /local/domain/0/backend/xf-blk/$DOMID/99/state 2>/dev/null)" = 2 ]' || echo "no device" >&2
xenstore-write "/local/domain/$DOMID/data/xf-blk-hostile" 1
wait $P; echo $? >"$OUT/blk-back.status"
"#,
            )
            .marker("blk-hostile: all faults")
            .check(check_hostile),
        linux_scenario(),
    ]
}

// ------------------------------------------------------- Linux baseline

/// The Linux baseline guest's init: Debian's own blkfront
/// (`xen-blkfront.ko` from the locked kernel package) reads and writes the
/// same 64 MiB image with `dd` and 1 MiB direct I/O, timed from
/// `/proc/uptime`, and `ioping` measures 4 KiB random direct reads.
const LINUX_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
insmod /lib/xen-blkfront.ko
i=0; until [ -b /dev/xvda ]; do i=$((i+1)); [ $i -gt 300 ] && break; usleep 100000; done
up() { cut -d' ' -f1 /proc/uptime; }
rate() { awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN { d = z - a; if (d <= 0) d = 0.01; printf "%d bytes in %.2f s (%.1f MB/s)", b, d, b / d / 1e6 }'; }
B=$(cat /sys/block/xvda/size); B=$((B * 512))
echo "XF-LINUX-BLK: xvda $B bytes"
t0=$(up); dd if=/dev/xvda of=/dev/null bs=1M iflag=direct 2>/dev/null; t1=$(up)
echo "XF-LINUX-BLK: read $(rate $B $t0 $t1)"
t0=$(up); dd if=/dev/zero of=/dev/xvda bs=1M count=$((B / 1048576)) oflag=direct 2>/dev/null; sync; t1=$(up)
echo "XF-LINUX-BLK: wrote $(rate $B $t0 $t1)"
echo "XF-LINUX-BLK: 4k-random-read $(ioping -c 200 -i 0 -s 4k -S 64m -D -q -B /dev/xvda | cut -d' ' -f3) IOPS"
echo "XF-LINUX-BLK: powering off"
poweroff -f
"#;

/// The Linux blk baseline's initrd (busybox, the init above,
/// xen-blkfront.ko, ioping with the libc and libm it links), built once per test
/// run.
fn linux_initrd() -> Result<std::path::PathBuf, String> {
    let (a, _) = lab::baseline::artifacts();
    let dir = crate::common::root().join("target/lab/linux-blk");
    let out = crate::common::root().join("target/lab/linux-blk-initrd.cpio.gz");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("init"), LINUX_INIT).map_err(|e| e.to_string())?;
    let script = format!(
        r#"set -e
cd '{dir}'
rm -rf x r; mkdir -p x r/bin r/lib
deb=$(ls '{debs}'/linux-image-*.deb | head -n1)
dpkg-deb --fsys-tarfile "$deb" | (cd x && tar -x --wildcards './lib/modules/*/kernel/drivers/block/xen-blkfront.ko')
cp x/lib/modules/*/kernel/drivers/block/xen-blkfront.ko r/lib/
# ioping links libc and libm: those and the loader from the Dom0 image.
dpkg-deb --fsys-tarfile '{debs}'/ioping_*.deb | (cd x && tar -x ./usr/bin/ioping)
(cd x && zcat '{dom0}' | cpio -id --quiet 'lib/x86_64-linux-gnu/libc.so.6' 'lib/x86_64-linux-gnu/libm.so.6' 'lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' 2>/dev/null || true)
mkdir -p r/lib64 r/lib/x86_64-linux-gnu
cp x/usr/bin/ioping r/bin/
for f in libc.so.6 libm.so.6 ld-linux-x86-64.so.2; do
  src=$(ls x/lib/x86_64-linux-gnu/$f 2>/dev/null | head -n1)
  [ -n "$src" ] || {{ echo "no $f in the Dom0 image" >&2; exit 1; }}
  cp -L "$src" r/lib/x86_64-linux-gnu/
done
cp -L r/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 r/lib64/
cp '{bb}' r/bin/busybox
cp init r/init; chmod 755 r/init r/bin/busybox
(cd r && find . | cpio -o -H newc --quiet | gzip -1) >'{out}.tmp'
mv '{out}.tmp' '{out}'
"#,
        dir = dir.display(),
        debs = lab::util::cache_dir().join("debs").display(),
        dom0 = a.dom0_initrd.display(),
        bb = a.busybox.display(),
        out = out.display(),
    );
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "building the Linux blk initrd failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(out)
}

/// `(<x.x> MB/s)` of the `XF-LINUX-BLK: <what> ...` line.
fn linux_rate<'a>(o: &'a Outcome, what: &str) -> Result<&'a str, String> {
    let l = line(o, &format!("XF-LINUX-BLK: {what} "))?;
    Ok(rate(l))
}

fn check_linux(o: &Outcome) -> Result<(), String> {
    let size = line(o, "XF-LINUX-BLK: xvda ")?;
    if size != "67108864 bytes" {
        return Err(format!("Linux saw xvda as {size:?}, want 64 MiB"));
    }
    let (r, w) = (linux_rate(o, "read")?, linux_rate(o, "wrote")?);
    // The Linux guest wrote zeros over the image.
    if out(o, "disk.after")? != out(o, "zeros")? {
        return Err("the image is not the zeros the Linux guest wrote".into());
    }
    let iops = line(o, "XF-LINUX-BLK: 4k-random-read ")?;
    if iops
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .is_none()
    {
        return Err(format!("Linux ioping gave {iops:?}"));
    }
    println!(
        "    figure: blkfront linux-pv (Debian 6.1 xen-blkfront, dd bs=1M direct): 64 MiB read {r} MB/s, write {w} MB/s, 4k-random-read {iops}; Dom0 reads the image file at {} MB/s, 4k-random-read {} IOPS",
        out(o, "dom0.rate")?,
        out(o, "dom0.iops")?
    );
    Ok(())
}

/// Debian's Linux as a PV domU on the same kind of 64 MiB image as `blk`,
/// with Dom0's own read of the file (the physical limit here).
pub fn linux_scenario() -> Scenario {
    let (a, _) = lab::baseline::artifacts();
    let s = Scenario::new(
        "linux-pv-blk",
        a.vmlinuz,
        crate::common::root().join("xl-config/linux-pv.cfg"),
    )
    .extra("console=hvc0")
    .config_line("disk = ['format=raw,vdev=xvda,access=rw,target=/tmp/disk.img']")
    .dom0_precreate(format!(
        "{WAIT_DISKS_GONE}{IMG}img disk 64\n\
         head -c 67108864 /dev/zero | sha256sum | cut -d' ' -f1 >\"$OUT/zeros\"\n\
         t0=$(cut -d' ' -f1 /proc/uptime); cat /tmp/disk.img >/dev/null; t1=$(cut -d' ' -f1 /proc/uptime)\n\
         awk -v a=$t0 -v z=$t1 'BEGIN {{ d = z - a; if (d <= 0) d = 0.01; printf \"%.1f\", 67108864 / d / 1e6 }}' >\"$OUT/dom0.rate\"\n\
         ioping -c 200 -i 0 -s 4k -S 64m -q -B /tmp/disk.img | cut -d' ' -f3 >\"$OUT/dom0.iops\"\n"
    ))
    .dom0_script(format!("IMAGES=disk\n{AFTER}"))
    .marker("XF-LINUX-BLK: powering off")
    .shutdown(Some(Shutdown::Poweroff))
    .timeout_secs(400)
    .check(check_linux);
    match linux_initrd() {
        Ok(i) => s.ramdisk(i),
        // The host check then reports the missing ramdisk.
        Err(e) => {
            eprintln!("blk: {e}");
            s.ramdisk(crate::common::root().join("target/lab/linux-blk-initrd-missing"))
        }
    }
}
