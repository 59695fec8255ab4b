//! Running a suite: stage the scenarios, boot the lab under QEMU, collect the outcomes
//! from the serial line, tear down. The jobs live in `stage` (host checks, scenario
//! archive, initrd), `qemu` (start/stop, serial reader), `serial` (the line protocol),
//! `collect` (the state machine over the lines) and `verdict` (expectations).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::collect::{self, Collector, Flow};
use crate::qemu::Qemu;
use crate::stage;
use crate::{image, util, LabError, Report, Scenario};

/// Cap on every file shipped back over the serial line (console log, script output, $OUT).
pub const FILE_CAP: usize = 256 * 1024;

/// How long QEMU may take to exit after Dom0's poweroff before it is killed.
const T_QEMU_EXIT: Duration = Duration::from_secs(30);

/// Receives (scenario name, console line) as the guest prints.
pub type ConsoleSink = Box<dyn FnMut(&str, &str) + Send>;

/// How to run the suite.
pub struct RunOptions {
    /// Called with (scenario name, console line) as the guest prints (relayed live by Dom0).
    pub on_console: Option<ConsoleSink>,
    /// Echo every serial line (Xen + Dom0) to stderr.
    pub echo_serial: bool,
    /// Extra words for Xen's command line.
    pub xen_args: String,
}

impl RunOptions {
    /// Defaults from the environment: XF_LAB_VERBOSE=1 streams guest consoles to stderr
    /// (prefixed with the scenario name), XF_LAB_SERIAL=1 echoes the whole serial line.
    pub fn from_env() -> RunOptions {
        let on = |v: &str| {
            std::env::var(v)
                .map(|x| !x.is_empty() && x != "0")
                .unwrap_or(false)
        };
        RunOptions {
            on_console: if on("XF_LAB_VERBOSE") {
                Some(Box::new(|n: &str, l: &str| eprintln!("[{n}] {l}")))
            } else {
                None
            },
            echo_serial: on("XF_LAB_SERIAL"),
            xen_args: std::env::var("XF_LAB_XEN_ARGS").unwrap_or_default(),
        }
    }
}

/// Run scenarios in one lab boot with options from the environment.
pub fn run_suite(scenarios: Vec<Scenario>) -> Result<Report, LabError> {
    run_suite_with(scenarios, RunOptions::from_env())
}

/// `target/lab/run-<time>-<pid>`.
fn new_run_dir() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    util::out_dir().join(format!("run-{stamp}-{}", std::process::id()))
}

/// Boot the lab once and run `scenarios` in order.
pub fn run_suite_with(scenarios: Vec<Scenario>, mut opts: RunOptions) -> Result<Report, LabError> {
    let t_total = Instant::now();
    let run_dir = new_run_dir();
    let staged = stage::stage_all(scenarios, &run_dir)?;
    let mut report = Report {
        run_dir: Some(run_dir.clone()),
        ..Report::default()
    };
    if staged.prepared.is_empty() {
        let _ = std::fs::remove_dir_all(&run_dir);
        report.run_dir = None;
        return Ok(collect::finish(report, staged.outcomes, t_total));
    }

    util::ensure_host_tools()?;
    let art = image::prepare()?;
    let initrd = stage::pack_initrd(&staged, &run_dir, &art.dom0_initrd)?;
    let serial_log = run_dir.join("serial.log");
    report.serial_log = Some(serial_log.clone());
    eprintln!(
        "lab: booting Xen + Dom0 ({} scenario(s)); serial log: {}",
        staged.prepared.len(),
        serial_log.display()
    );
    let mut qemu = Qemu::start(&art, &initrd, &opts.xen_args, &run_dir, &serial_log)?;

    let mut c = Collector::new(
        &staged.prepared,
        staged.outcomes,
        report,
        qemu.started,
        opts.on_console.as_mut(),
        opts.echo_serial,
    );
    let fail = loop {
        let w = c.wait();
        match qemu.next_line(w.left) {
            Ok(Some(line)) => match c.line(&line) {
                Flow::More => {}
                Flow::Done => break None,
                Flow::Abort(why) => break Some(why),
            },
            Ok(None) if c.all_ended() => break None,
            Ok(None) => break Some(format!("{} (QEMU exited: {})", w.what, qemu.exit_status())),
            Err(_) => break Some(format!("{} within {}s", w.what, w.budget.as_secs())),
        }
    };

    // Let QEMU exit by itself after Dom0's poweroff; kill it if it does not.
    let grace = if fail.is_some() {
        Duration::ZERO
    } else {
        T_QEMU_EXIT
    };
    if !qemu.stop(grace) && fail.is_none() {
        c.lab_fault("QEMU did not exit after Dom0 powered off (killed)".into());
    }
    // The combined initrd is large and reproducible; keep only the logs.
    let _ = std::fs::remove_file(&initrd);
    let _ = std::fs::remove_file(run_dir.join("overlay.cpio.gz"));
    c.finish(fail, serial_log, t_total)
}
