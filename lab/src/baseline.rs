//! Linux baseline scenarios: Debian's own kernel (the Dom0 vmlinuz) with a tiny busybox
//! initrd that prints [`MARKER`] and powers off, as PV and as PVH. Later benchmarks
//! compare xenfront against these numbers.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::image::{self, Artifacts};
use crate::{util, Scenario, Shutdown};

/// Printed by the baseline guest's init once userspace runs.
pub const MARKER: &str = "XF-LINUX-BASELINE up";
/// Printed just before `poweroff -f`.
pub const MARKER_POWEROFF: &str = "XF-LINUX-BASELINE: powering off";

static PREPARED: OnceLock<Result<(Artifacts, PathBuf), String>> = OnceLock::new();

/// Dom0 kernel + baseline initrd, building the cached image on first use.
/// Panics with a `LAB SETUP FAILED` message if the lab inputs cannot be prepared.
pub fn artifacts() -> (Artifacts, PathBuf) {
    PREPARED
        .get_or_init(|| {
            let a = image::prepare().map_err(|e| e.to_string())?;
            let i = image::baseline_initrd(&a).map_err(|e| e.to_string())?;
            Ok((a, i))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn config(name: &str) -> PathBuf {
    util::repo_root().join("xl-config").join(name)
}

fn linux(name: &str, cfg: &str) -> Scenario {
    let (a, initrd) = artifacts();
    Scenario::new(name, a.vmlinuz, config(cfg))
        .ramdisk(initrd)
        .extra("console=hvc0")
        .marker(MARKER)
        .marker(MARKER_POWEROFF)
        .shutdown(Some(Shutdown::Poweroff))
        .timeout(Duration::from_secs(180))
}

/// Debian's kernel as a PV domU (xl-config/linux-pv.cfg), expected to print the marker
/// and power off.
pub fn linux_pv() -> Scenario {
    linux("linux-pv", "linux-pv.cfg")
}

/// The same kernel as a PVH domU (xl-config/linux-pvh.cfg, `type="pvh"`).
///
/// Debian's 6.1 kernel as PVH sometimes triple-faults early in this emulated lab (QEMU
/// TCG, `-cpu qemu64,+npt`; seen in about one boot of three even with
/// `tsc_mode="native"`), so its failures are tolerated: reported, never fatal. It is a
/// baseline for figures, not the product under test.
pub fn linux_pvh() -> Scenario {
    linux("linux-pvh", "linux-pvh.cfg").tolerate_failure(
        "Debian's Linux PVH guest is not reliable under QEMU TCG (early triple fault)",
    )
}
