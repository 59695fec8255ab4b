//! What the boot path found out about the machine, independent of how the
//! kernel was entered (PV now, PVH later). `kernel_main` only sees this.

use crate::start_info::{StartInfo, CMDLINE_MAX};

/// How Xen started us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootKind {
    Pv,
    Pvh,
}

impl BootKind {
    pub fn name(self) -> &'static str {
        match self {
            BootKind::Pv => "pv",
            BootKind::Pvh => "pvh",
        }
    }
}

/// A shared ring page plus its (already bound) event channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingPage {
    /// Pseudo-physical frame number.
    pub pfn: u64,
    /// Virtual address the page is mapped at.
    pub va: usize,
    pub port: u32,
}

/// The platform description handed from the entry path to `kernel_main`.
#[derive(Clone)]
pub struct Platform {
    pub kind: BootKind,
    /// Magic of the boot info (PV: start_info.magic), NUL padded.
    pub magic: [u8; 32],
    pub nr_pages: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    /// PV console ring, if any (None for Dom0).
    pub console: Option<RingPage>,
    /// XenStore ring.
    pub store: Option<RingPage>,
}

impl Platform {
    /// Describe a PV boot from a copy of start_info. `mfn_to_pfn` translates
    /// machine frames through the M2P; `None` means the frame is not ours.
    pub fn from_pv(si: &StartInfo, mfn_to_pfn: impl Fn(u64) -> Option<u64>) -> Platform {
        let ring = |mfn: u64, port: u32| {
            if mfn == 0 {
                return None;
            }
            let pfn = mfn_to_pfn(mfn).filter(|&pfn| pfn < si.nr_pages)?;
            Some(RingPage {
                pfn,
                // VIRT_BASE is 0: pfn N is mapped at N << 12.
                va: (pfn << 12) as usize,
                port,
            })
        };
        let cmd = si.cmdline();
        let mut cmdline = [0u8; CMDLINE_MAX];
        cmdline[..cmd.len()].copy_from_slice(cmd);
        Platform {
            kind: BootKind::Pv,
            magic: si.magic,
            nr_pages: si.nr_pages,
            flags: si.flags,
            cmdline,
            cmdline_len: cmd.len(),
            console: ring(si.console_mfn, si.console_evtchn),
            store: ring(si.store_mfn, si.store_evtchn),
        }
    }

    /// Raw command line bytes (no NUL).
    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline[..self.cmdline_len]
    }

    /// Magic without padding.
    pub fn magic(&self) -> &[u8] {
        crate::start_info::c_str(&self.magic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn si() -> StartInfo {
        // SAFETY: StartInfo is plain old data; all-zero is a valid value.
        let mut si: StartInfo = unsafe { core::mem::zeroed() };
        si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
        si.nr_pages = 8192;
        si.console_mfn = 0x1234;
        si.console_evtchn = 2;
        si.store_mfn = 0x1235;
        si.store_evtchn = 1;
        si.cmd_line[..10].copy_from_slice(b"test=hello");
        si
    }

    #[test]
    fn pv_rings_go_through_m2p() {
        let p = Platform::from_pv(&si(), |mfn| Some(mfn - 0x1000));
        assert_eq!(p.kind, BootKind::Pv);
        assert_eq!(
            p.console,
            Some(RingPage {
                pfn: 0x234,
                va: 0x234000,
                port: 2
            })
        );
        assert_eq!(p.store.unwrap().pfn, 0x235);
        assert_eq!(p.cmdline(), b"test=hello");
        assert_eq!(p.magic(), b"xen-3.0-x86_64");
    }

    #[test]
    fn foreign_or_out_of_range_frames_are_rejected() {
        let p = Platform::from_pv(&si(), |_| None);
        assert_eq!(p.console, None);
        let p = Platform::from_pv(&si(), |_| Some(9000));
        assert_eq!(p.console, None);
        let mut s = si();
        s.console_mfn = 0;
        assert_eq!(Platform::from_pv(&s, Some).console, None);
    }
}
