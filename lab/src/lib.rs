//! xenfront nested-Xen test lab.
//!
//! Boots Xen 4.17 with a Debian Dom0 under QEMU TCG (built from locked Debian packages),
//! runs a list of [`Scenario`]s (guest kernel + xl config + expectations) one after
//! another inside that Dom0 and brings back an [`Outcome`] per scenario. See docs/lab.md.

#![warn(missing_docs)]

pub mod baseline;
pub mod cfg;
mod collect;
pub mod image;
pub mod pkgs;
mod qemu;
mod run;
mod serial;
mod stage;
pub mod util;
mod verdict;
pub mod xen_dump;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use run::{run_suite, run_suite_with, RunOptions};

/// Why a domain stopped (xl "reason code", plus the lab's own outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Reason code 0: the guest powered off.
    Poweroff,
    /// Reason code 1: the guest asked for a reboot (also Xen's verdict on an HVM triple fault).
    Reboot,
    /// Reason code 2: the guest suspended.
    Suspend,
    /// Reason code 3: the guest crashed.
    Crash,
    /// Reason code 4: the guest's watchdog fired.
    Watchdog,
    /// Reason code 5: the guest asked for a soft reset.
    SoftReset,
    /// Another reason code.
    Other(i32),
    /// Disappeared from `xl list` without a logged reason.
    Gone,
    /// Still running when the scenario's timeout expired (then destroyed).
    Timeout,
}

impl Shutdown {
    /// The reason for xl's `reason code <c>`.
    pub fn from_code(c: i32) -> Shutdown {
        match c {
            0 => Shutdown::Poweroff,
            1 => Shutdown::Reboot,
            2 => Shutdown::Suspend,
            3 => Shutdown::Crash,
            4 => Shutdown::Watchdog,
            5 => Shutdown::SoftReset,
            c => Shutdown::Other(c),
        }
    }
}

impl fmt::Display for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shutdown::Poweroff => write!(f, "poweroff"),
            Shutdown::Reboot => write!(f, "reboot"),
            Shutdown::Suspend => write!(f, "suspend"),
            Shutdown::Crash => write!(f, "crash"),
            Shutdown::Watchdog => write!(f, "watchdog"),
            Shutdown::SoftReset => write!(f, "soft_reset"),
            Shutdown::Other(c) => write!(f, "reason code {c}"),
            Shutdown::Gone => write!(f, "gone (no reason logged)"),
            Shutdown::Timeout => write!(f, "timeout"),
        }
    }
}

/// What a scenario must show to pass.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Substrings that must all appear in the guest console log.
    pub markers: Vec<String>,
    /// Required shutdown reason (None: any).
    pub shutdown: Option<Shutdown>,
    /// Required exit status of the Dom0 script (None: any).
    pub script_status: Option<i32>,
    /// The scenario is *expected to fail* with a failure reason containing this text
    /// (used by the lab's self-test); it then passes iff such a failure is recorded.
    pub failure: Option<String>,
    /// A third-party baseline that this emulated lab cannot always run (e.g. Debian's
    /// Linux as PVH, which sometimes triple-faults early under QEMU TCG): a failure is
    /// reported with this reason as `TOLERATED` and does not fail the run. Lab faults
    /// still do. Never used for xenfront scenarios.
    pub tolerate: Option<String>,
}

/// A value assertion on an outcome (see [`Scenario::check`]); `Err(reason)` fails it.
pub type Check = Box<dyn Fn(&Outcome) -> Result<(), String> + Send + Sync>;

/// One guest run inside the lab.
pub struct Scenario {
    /// Unique, human-readable name (filters with XF_ONLY match on it).
    pub name: String,
    /// Guest kernel on the host: an ELF (or a Linux bzImage for the baseline).
    pub kernel: PathBuf,
    /// xl config on the host. kernel=, name= and on_* are overridden by the lab.
    pub config: PathBuf,
    /// Extra config statements appended to `config` (e.g. `type="pvh"`).
    pub config_lines: Vec<String>,
    /// Guest ramdisk on the host (else the config's ramdisk=, resolved next to the config).
    pub ramdisk: Option<PathBuf>,
    /// Appended to the config's extra= (the guest command line).
    pub extra: Option<String>,
    /// busybox sh script run in Dom0 after `xl unpause`, concurrently with the guest.
    pub dom0_script: Option<String>,
    /// busybox sh script run in Dom0 before `xl create` (and waited for): prepares what
    /// the config refers to, e.g. a disk image. Output goes to `$OUT/precreate.out`.
    pub dom0_precreate: Option<String>,
    /// (host path, name) files shipped into Dom0 under $FILES/name.
    pub files: Vec<(PathBuf, String)>,
    /// What the scenario must show to pass.
    pub expect: Expect,
    /// From `xl unpause` until the domain must have shut down.
    pub timeout: Duration,
    /// Extra value assertions on the outcome.
    pub check: Option<Check>,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("kernel", &self.kernel)
            .field("config", &self.config)
            .field("extra", &self.extra)
            .field("expect", &self.expect)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    /// A scenario expecting the guest to power off within 120 s.
    pub fn new(
        name: impl Into<String>,
        kernel: impl Into<PathBuf>,
        config: impl Into<PathBuf>,
    ) -> Scenario {
        Scenario {
            name: name.into(),
            kernel: kernel.into(),
            config: config.into(),
            config_lines: Vec::new(),
            ramdisk: None,
            extra: None,
            dom0_script: None,
            dom0_precreate: None,
            files: Vec::new(),
            expect: Expect {
                shutdown: Some(Shutdown::Poweroff),
                ..Expect::default()
            },
            timeout: Duration::from_secs(120),
            check: None,
        }
    }
    /// Append `s` to the config's `extra=` (the guest command line).
    pub fn extra(mut self, s: impl Into<String>) -> Self {
        self.extra = Some(s.into());
        self
    }
    /// Add an xl config statement (e.g. `memory = 64`).
    pub fn config_line(mut self, s: impl Into<String>) -> Self {
        self.config_lines.push(s.into());
        self
    }
    /// Use this ramdisk instead of the config's `ramdisk=`.
    pub fn ramdisk(mut self, p: impl Into<PathBuf>) -> Self {
        self.ramdisk = Some(p.into());
        self
    }
    /// Run this busybox sh script in Dom0 after `xl unpause` (docs/lab.md, "Dom0 script environment").
    pub fn dom0_script(mut self, s: impl Into<String>) -> Self {
        self.dom0_script = Some(s.into());
        self
    }
    /// Run `s` in Dom0 before `xl create` ([`Scenario::dom0_precreate`]).
    pub fn dom0_precreate(mut self, s: impl Into<String>) -> Self {
        self.dom0_precreate = Some(s.into());
        self
    }
    /// Ship a host file into Dom0 as `$FILES/<name>`.
    pub fn file(mut self, host: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        self.files.push((host.into(), name.into()));
        self
    }
    /// Require this substring in the guest console log.
    pub fn marker(mut self, m: impl Into<String>) -> Self {
        self.expect.markers.push(m.into());
        self
    }
    /// Expected shutdown reason; `None` accepts any.
    pub fn shutdown(mut self, s: Option<Shutdown>) -> Self {
        self.expect.shutdown = s;
        self
    }
    /// Require this exit status of the Dom0 script.
    pub fn script_status(mut self, s: i32) -> Self {
        self.expect.script_status = Some(s);
        self
    }
    /// See [`Expect::tolerate`]: for third-party baselines only.
    pub fn tolerate_failure(mut self, why: impl Into<String>) -> Self {
        self.expect.tolerate = Some(why.into());
        self
    }
    /// See [`Expect::failure`]: for the lab's self-tests.
    pub fn expect_failure(mut self, reason_contains: impl Into<String>) -> Self {
        self.expect.failure = Some(reason_contains.into());
        self
    }
    /// Time from `xl unpause` until the guest must have shut down.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// [`Scenario::timeout`] in seconds.
    pub fn timeout_secs(self, s: u64) -> Self {
        self.timeout(Duration::from_secs(s))
    }
    /// Add value assertions on the outcome, run when the guest ran; `Err(reason)` fails it.
    pub fn check(
        mut self,
        f: impl Fn(&Outcome) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Box::new(f));
        self
    }
}

/// What happened in one scenario.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The scenario's name.
    pub name: String,
    /// xl domain name used in Dom0.
    pub domain: String,
    /// The guest's domain id.
    pub domid: Option<u32>,
    /// Guest console log (xenconsoled's `guest-<name>.log`), capped at 256 KiB.
    pub console: String,
    /// The console log was cut at 256 KiB.
    pub console_truncated: bool,
    /// None when the guest was never started (host-side validation or `xl create` failed).
    pub shutdown: Option<Shutdown>,
    /// Exit status of the Dom0 script (None: no script, or killed after its wait bound).
    pub script_status: Option<i32>,
    /// The Dom0 script was still running after its wait bound and was killed.
    pub script_killed: bool,
    /// stdout+stderr of the Dom0 script.
    pub script_output: String,
    /// Files the Dom0 script left in $OUT (lossy UTF-8; raw bytes in `out_bytes`).
    pub out_files: BTreeMap<String, String>,
    /// Files the Dom0 script left in $OUT, as bytes.
    pub out_bytes: BTreeMap<String, Vec<u8>>,
    /// Names of files that were cut at the 256 KiB cap.
    pub truncated: Vec<String>,
    /// xl's per-domain log (`/var/log/xen/xl-<name>.log`).
    pub xl_log: String,
    /// Duration of `xl create -p`.
    pub t_create: Option<Duration>,
    /// `xl create` start → first byte in the console log.
    pub t_create_first_line: Option<Duration>,
    /// `xl unpause` (just before) → first byte in the console log.
    pub t_unpause_first_line: Option<Duration>,
    /// `xl unpause` → domain shut down.
    pub t_gone: Option<Duration>,
    /// Some(reason) when `xl create` crashed once and was retried.
    pub retried: Option<String>,
    /// Problems of the lab itself (toolstack crashes, Dom0 traps/segfaults, corruption
    /// signs), reported apart from the guest's result.
    pub lab_faults: Vec<String>,
    /// Why the scenario failed (empty: passed, unless `expected_failure` is set).
    pub failures: Vec<String>,
    /// When the scenario expected a failure: the failure that matched.
    pub expected_failure: Option<String>,
    /// Failures of a tolerated baseline ([`Expect::tolerate`]): reported, not fatal.
    pub tolerated: Vec<String>,
    /// Xen logged a triple fault for this guest while the scenario ran.
    pub triple_fault: bool,
    /// `xenctx`/`xen-hvmctx` output for a guest that died or hung (empty otherwise).
    pub vcpu_state: String,
    /// The emulated CPU entered the guest with Xen's own host state (Xen's RIP and CS
    /// in the guest's saved vCPU state; docs/lab.md): the evidence line. The
    /// scenario's failures are then reported as `EMULATOR-FAULT`, not as xenfront's.
    pub emulator_fault: Option<String>,
    /// Informational lines from the runner.
    pub notes: Vec<String>,
    /// Host wall time of the scenario (begin → end lines on the serial).
    pub wall: Option<Duration>,
}

impl Outcome {
    /// No failures and no lab faults.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.lab_faults.is_empty()
    }
    /// `ok`, `FAIL`, `LAB-FAULT`, `EMULATOR-FAULT`, `ok (xfail)` or `TOLERATED`.
    pub fn status(&self) -> &'static str {
        if !self.lab_faults.is_empty() {
            "LAB-FAULT"
        } else if !self.failures.is_empty() {
            "FAIL"
        } else if self.emulator_fault.is_some() {
            "EMULATOR-FAULT"
        } else if self.expected_failure.is_some() {
            "ok (xfail)"
        } else if !self.tolerated.is_empty() {
            "TOLERATED"
        } else {
            "ok"
        }
    }
}

/// All outcomes of one lab boot.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One outcome per scenario, in suite order.
    pub outcomes: Vec<Outcome>,
    /// QEMU start → first Xen line.
    pub t_xen: Option<Duration>,
    /// QEMU start → Dom0 /init running.
    pub t_dom0_init: Option<Duration>,
    /// QEMU start → Dom0 ready (`xl info` answers).
    pub t_ready: Option<Duration>,
    /// Whole run including image preparation.
    pub t_total: Duration,
    /// Faults not tied to one scenario (Dom0 boot).
    pub lab_faults: Vec<String>,
    /// The serial log of the boot (everything QEMU printed).
    pub serial_log: Option<PathBuf>,
    /// `target/lab/run-<time>-<pid>/` (None if nothing was booted).
    pub run_dir: Option<PathBuf>,
}

fn fmt_d(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}s", d.as_secs_f64()))
        .unwrap_or_else(|| "-".into())
}

impl Report {
    /// Every scenario passed and the boot had no lab faults.
    pub fn passed(&self) -> bool {
        self.lab_faults.is_empty() && self.outcomes.iter().all(Outcome::passed)
    }
    /// The outcome of the scenario called `name`.
    pub fn get(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }
    /// Table of results and timing figures.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        s += &format!(
            "lab figures: QEMU start → Xen {} → Dom0 /init {} → Dom0 ready {}; total run {:.1}s\n",
            fmt_d(self.t_xen),
            fmt_d(self.t_dom0_init),
            fmt_d(self.t_ready),
            self.t_total.as_secs_f64()
        );
        let w = self
            .outcomes
            .iter()
            .map(|o| o.name.len())
            .max()
            .unwrap_or(4)
            .max(8);
        s += &format!(
            "{:w$}  {:10}  {:10}  {:>8}  {:>12}  {:>13}  {:>9}  {}\n",
            "scenario",
            "result",
            "shutdown",
            "create",
            "create→1st",
            "unpause→1st",
            "→gone",
            "notes"
        );
        for o in &self.outcomes {
            let mut notes = Vec::new();
            if let Some(r) = &o.retried {
                notes.push(format!("retried: {r}"));
            }
            notes.extend(o.failures.iter().cloned());
            notes.extend(o.lab_faults.iter().map(|f| format!("LAB FAULT: {f}")));
            if let Some(e) = &o.expected_failure {
                notes.push(format!("expected failure: {e}"));
            }
            notes.extend(o.tolerated.iter().map(|t| format!("tolerated: {t}")));
            s += &format!(
                "{:w$}  {:10}  {:10}  {:>8}  {:>12}  {:>13}  {:>9}  {}\n",
                o.name,
                o.status(),
                o.shutdown
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "-".into()),
                fmt_d(o.t_create),
                fmt_d(o.t_create_first_line),
                fmt_d(o.t_unpause_first_line),
                fmt_d(o.t_gone),
                notes.join("; ")
            );
        }
        for f in &self.lab_faults {
            s += &format!("LAB FAULT (Dom0): {f}\n");
        }
        if let Some(p) = &self.serial_log {
            s += &format!("serial log: {}\n", p.display());
        }
        s
    }
}

/// Errors that stop the lab as a whole (scenario failures are in [`Outcome`]s instead).
#[derive(Debug)]
pub enum LabError {
    /// Preparing inputs failed (packages, lock, image build, host tools).
    Setup(String),
    /// Xen or Dom0 did not come up, or Dom0 stopped answering: `LAB FAILED: <stage>`.
    Failed {
        /// What did not happen (the stage), with the machine's last words if any.
        stage: String,
        /// The serial log of the boot.
        serial_log: PathBuf,
        /// The outcomes so far; the others fail as not run.
        partial: Box<Report>,
    },
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Setup(s) => write!(f, "LAB SETUP FAILED: {s}"),
            LabError::Failed {
                stage, serial_log, ..
            } => {
                write!(
                    f,
                    "LAB FAILED: {stage} (serial log: {})",
                    serial_log.display()
                )
            }
        }
    }
}

impl std::error::Error for LabError {}
