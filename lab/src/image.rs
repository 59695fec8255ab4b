//! Dom0 image (built once per input hash, cached) and the Linux baseline guest initrd.

use std::path::{Path, PathBuf};

use crate::pkgs::{self, Locked};
use crate::util::{self, qp, sh};
use crate::LabError;

/// Modules Dom0 loads, in order (modprobe resolves their dependencies).
pub const DOM0_MODULES: &[&str] = &[
    "xen-privcmd",
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "xenfs",
    "xen-blkback",
    "xen-netback",
    "loop",
    "bridge",
];

/// Bump when the image layout changes without any input file changing.
const IMAGE_REV: &str = "dom0-image-v1";

/// Binaries whose shared libraries must all resolve inside the image.
const LIB_CHECK: &[&str] = &[
    "/usr/lib/xen-4.17/bin/xl",
    "/usr/lib/xen-4.17/bin/xenstored",
    "/usr/lib/xen-4.17/bin/xenconsoled",
    "/usr/lib/xen-4.17/bin/xen-init-dom0",
    "/usr/lib/xen-4.17/bin/vchan-socket-proxy",
    "/usr/bin/xenstore-read",
    "/bin/bash",
    "/bin/ip",
    "/sbin/losetup",
    "/usr/bin/flock",
    "/usr/bin/stat",
    "/usr/bin/socat",
    "/bin/kmod",
];

/// Everything QEMU needs to boot the lab.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// Gunzipped Xen (multiboot1 ELF).
    pub xen: PathBuf,
    /// Debian's kernel (Dom0 and the Linux baseline guest).
    pub vmlinuz: PathBuf,
    /// Dom0 initramfs (gzip cpio).
    pub dom0_initrd: PathBuf,
    /// busybox-static binary from the locked packages.
    pub busybox: PathBuf,
    /// Hash of the image inputs (lock, lab/dom0/init, module list), part of the file names.
    pub hash: String,
}

fn inputs_hash(lock: &[Locked]) -> Result<String, LabError> {
    let init = util::io(
        std::fs::read(util::lab_dir().join("dom0/init")),
        "lab/dom0/init",
    )?;
    let mut data = Vec::new();
    data.extend_from_slice(IMAGE_REV.as_bytes());
    for l in lock {
        data.extend_from_slice(format!("{} {} {}\n", l.name, l.version, l.sha256).as_bytes());
    }
    data.extend_from_slice(DOM0_MODULES.join(" ").as_bytes());
    data.extend_from_slice(&init);
    Ok(util::sha256_bytes(&data)?[..16].to_string())
}

/// Serialises [`prepare`] within a process: test threads that all find the
/// image missing would otherwise build it at once in the same directory.
static PREPARE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Verify the package cache against the lock and build (or reuse) the Dom0 image.
pub fn prepare() -> Result<Artifacts, LabError> {
    let _one = PREPARE.lock().unwrap_or_else(|e| e.into_inner());
    let lock = pkgs::fetch_verified()?;
    let h = inputs_hash(&lock)?;
    let c = util::cache_dir();
    let a = Artifacts {
        xen: c.join(format!("xen-{h}")),
        vmlinuz: c.join(format!("vmlinuz-{h}")),
        dom0_initrd: c.join(format!("dom0-{h}.cpio.gz")),
        busybox: c.join(format!("busybox-{h}")),
        hash: h.clone(),
    };
    if [&a.xen, &a.vmlinuz, &a.dom0_initrd, &a.busybox]
        .iter()
        .all(|p| p.exists())
    {
        return Ok(a);
    }
    util::ensure_host_tools()?;
    let t0 = std::time::Instant::now();
    eprintln!(
        "lab: building Dom0 image {} (inputs hash {h})",
        a.dom0_initrd.display()
    );
    let tmp = c.join(format!("build-{h}-{}", std::process::id()));
    let debs: Vec<String> = lock
        .iter()
        .map(|l| qp(&pkgs::debs_dir().join(&l.file)))
        .collect();
    let excludes = [
        "./boot",
        "./usr/share/doc",
        "./usr/share/man",
        "./usr/share/locale",
        "./usr/share/info",
        "./lib/modules",
        "./usr/lib/modules",
    ]
    .iter()
    .map(|e| format!("--exclude={e}"))
    .collect::<Vec<_>>()
    .join(" ");
    let lib_check = if util::is_root() {
        format!(
            "for b in {}; do out=$(chroot \"$T/img\" /lib64/ld-linux-x86-64.so.2 --list \"$b\" 2>&1) || {{ echo \"lib check: $b: $out\" >&2; exit 1; }}; \
             if echo \"$out\" | grep -q 'not found'; then echo \"$out\" | grep 'not found' | sed \"s|^|lib check: $b: |\" >&2; exit 1; fi; done",
            LIB_CHECK.join(" ")
        )
    } else {
        "echo 'lab: not root, skipping the shared-library check of the Dom0 image' >&2".to_string()
    };
    let script = format!(
        r#"set -e
T={tmp}
rm -rf "$T"; mkdir -p "$T/x" "$T/img"
for d in {debs}; do dpkg-deb -x "$d" "$T/x"; done
K=$(ls "$T/x/lib/modules" | head -n1)
depmod -b "$T/x" "$K"
(cd "$T/x" && tar cf - {excludes} .) | tar xf - -C "$T/img"
for m in {mods}; do modprobe -d "$T/x" -S "$K" --show-depends "$m"; done | awk '$1=="insmod"{{print $2}}' | sort -u > "$T/mods"
mkdir -p "$T/img/lib/modules/$K"
while read -r m; do rel=${{m#$T/x/}}; mkdir -p "$T/img/$(dirname "$rel")"; cp "$m" "$T/img/$rel"; done < "$T/mods"
for f in modules.order modules.builtin modules.builtin.modinfo; do cp "$T/x/lib/modules/$K/$f" "$T/img/lib/modules/$K/"; done
cd "$T/img"
for a in $(./bin/busybox --list-full); do
  b=${{a##*/}}; found=
  for d in bin sbin usr/bin usr/sbin; do if [ -e "$d/$b" ] || [ -L "$d/$b" ]; then found=1; fi; done
  if [ -z "$found" ]; then mkdir -p "$(dirname "$a")"; ln -s /bin/busybox "$a"; fi
done
mkdir -p proc sys dev run tmp root lab var/log/xen
cp {init} init; chmod 755 init
{lib_check}
find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1 > {initrd}.tmp
cp "$T/x/boot/vmlinuz-$K" {vmlinuz}.tmp
cp "$T/x/bin/busybox" {busybox}.tmp
"#,
        tmp = qp(&tmp),
        debs = debs.join(" "),
        excludes = excludes,
        mods = DOM0_MODULES.join(" "),
        init = qp(&util::lab_dir().join("dom0/init")),
        lib_check = lib_check,
        initrd = qp(&a.dom0_initrd),
        vmlinuz = qp(&a.vmlinuz),
        busybox = qp(&a.busybox),
    );
    let r = sh(&script).and_then(|_| finish_build(&tmp, &a));
    let _ = std::fs::remove_dir_all(&tmp);
    r?;
    let size = std::fs::metadata(&a.dom0_initrd)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "lab: Dom0 image built in {:.1} s ({} MB)",
        t0.elapsed().as_secs_f64(),
        size / 1_000_000
    );
    Ok(a)
}

/// Gunzip Xen out of the unpacked .debs in `tmp`, then move the four artifacts in place
/// (each was written as `<path>.tmp`; Xen last, as `prepare` checks all four).
fn finish_build(tmp: &Path, a: &Artifacts) -> Result<(), LabError> {
    let gz = tmp.join("x/boot/xen-4.17-amd64.gz");
    let data = util::io(std::fs::read(&gz), gz.display())?;
    let (xen, err) = util::gunzip_partial(&data);
    if let Some(e) = err {
        return Err(LabError::Setup(format!("gunzip {}: {e}", gz.display())));
    }
    let tmp_of = |p: &Path| PathBuf::from(format!("{}.tmp", p.display()));
    util::io(std::fs::write(tmp_of(&a.xen), xen), a.xen.display())?;
    for p in [&a.dom0_initrd, &a.vmlinuz, &a.busybox, &a.xen] {
        util::io(std::fs::rename(tmp_of(p), p), p.display())?;
    }
    Ok(())
}

const GUEST_INIT: &str = r#"#!/bin/busybox sh
# Linux baseline guest init (xenfront lab). Kernel command line knobs:
#   xf_action=poweroff (default) | crash | hang | reboot
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
action=poweroff
for a in $(cat /proc/cmdline); do
  case "$a" in xf_action=*) action=${a#xf_action=} ;; esac
done
echo "XF-LINUX-BASELINE up: kernel $(uname -r) guest_type $(cat /sys/hypervisor/guest_type 2>/dev/null) uptime $(cut -d' ' -f1 /proc/uptime)"
case "$action" in
  crash) echo "XF-LINUX-BASELINE: crashing on purpose"; echo c > /proc/sysrq-trigger ;;
  hang) while :; do sleep 3600; done ;;
  reboot) reboot -f ;;
esac
echo "XF-LINUX-BASELINE: powering off"
poweroff -f
"#;

/// The tiny busybox initrd of the Linux baseline guest (built on the host, cached).
pub fn baseline_initrd(a: &Artifacts) -> Result<PathBuf, LabError> {
    let mut data = GUEST_INIT.as_bytes().to_vec();
    data.extend_from_slice(a.hash.as_bytes());
    let h = &util::sha256_bytes(&data)?[..16];
    let out = util::cache_dir().join(format!("linux-guest-{h}.cpio.gz"));
    if out.exists() {
        return Ok(out);
    }
    let tmp = util::cache_dir().join(format!("guest-{h}-{}", std::process::id()));
    util::io(std::fs::create_dir_all(tmp.join("bin")), tmp.display())?;
    util::io(std::fs::write(tmp.join("init"), GUEST_INIT), "guest init")?;
    let r = sh(&format!(
        "set -e; cd {t}; cp {bb} bin/busybox; chmod 755 init bin/busybox; \
         find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9 > {o}.tmp; mv {o}.tmp {o}",
        t = qp(&tmp),
        bb = qp(&a.busybox),
        o = qp(&out)
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    r?;
    Ok(out)
}

/// Is this a kernel the lab can hand to xl: an ELF, or a Linux bzImage (the baseline)?
pub fn check_kernel(p: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut f = std::fs::File::open(p).map_err(|e| format!("kernel {}: {e}", p.display()))?;
    let mut buf = vec![0u8; 0x210];
    let n = f
        .read(&mut buf)
        .map_err(|e| format!("kernel {}: {e}", p.display()))?;
    if n >= 4 && &buf[..4] == b"\x7fELF" {
        return Ok(());
    }
    if n >= 0x206 && &buf[0x202..0x206] == b"HdrS" {
        return Ok(());
    }
    Err(format!(
        "kernel {} is not an ELF file (nor a Linux bzImage)",
        p.display()
    ))
}
