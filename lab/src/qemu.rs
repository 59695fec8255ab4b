//! Starting QEMU (Xen + Dom0 under TCG), reading its serial line, and stopping it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::image::Artifacts;
use crate::util;
use crate::LabError;

/// A running QEMU and the thread that reads its serial line.
pub struct Qemu {
    child: Child,
    /// Serial lines (without the line end); `None` once QEMU's output ended.
    lines: Receiver<Option<String>>,
    reader: JoinHandle<()>,
    /// When QEMU was started (the origin of the boot figures).
    pub started: Instant,
}

/// The emulator the lab runs: which QEMU binary, its data directory, and how TCG
/// uses the host's cores. Defaults: `qemu-system-x86_64` on `PATH`, multi-threaded
/// TCG. `XF_LAB_QEMU=/path/to/qemu-system-x86_64` picks another build (its firmware
/// directory `XF_LAB_QEMU_DATA`, passed as `-L`), `XF_LAB_TCG=single` selects
/// single-threaded TCG (`-accel tcg,thread=single`); docs/lab.md has the measurements
/// behind the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emulator {
    /// The QEMU binary.
    pub binary: String,
    /// `-L` firmware directory, if not the binary's own.
    pub data_dir: Option<String>,
    /// `-accel` argument.
    pub accel: String,
}

impl Emulator {
    /// The emulator chosen by the environment (see the type's documentation).
    pub fn from_env() -> Result<Emulator, LabError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Emulator::from_vars(
            var("XF_LAB_QEMU").as_deref(),
            var("XF_LAB_QEMU_DATA").as_deref(),
            var("XF_LAB_TCG").as_deref(),
        )
    }

    /// The emulator for these variable values (`None` = unset).
    pub fn from_vars(
        qemu: Option<&str>,
        data: Option<&str>,
        tcg: Option<&str>,
    ) -> Result<Emulator, LabError> {
        let accel = match tcg {
            None | Some("multi") => "tcg,thread=multi",
            Some("single") => "tcg,thread=single",
            Some(other) => {
                return Err(LabError::Setup(format!(
                    "XF_LAB_TCG={other:?}: expected \"single\" or \"multi\""
                )))
            }
        };
        Ok(Emulator {
            binary: qemu.unwrap_or("qemu-system-x86_64").to_string(),
            data_dir: data.map(str::to_string),
            accel: accel.to_string(),
        })
    }

    /// The first line of `binary --version` (e.g. `QEMU emulator version 7.2.22 ...`).
    pub fn version(&self) -> String {
        Command::new(&self.binary)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("{}: no version", self.binary))
    }
}

/// Xen's command line: serial console, Dom0's memory, full logging, plus `xen_args`.
pub fn xen_cmdline(xen_args: &str) -> String {
    format!("console=com1 com1=115200 dom0_mem=1024M loglvl=all guest_loglvl=all {xen_args}")
        .trim()
        .to_string()
}

impl Qemu {
    /// Boot `art`'s Xen and Dom0 kernel with `initrd`; QEMU's stderr goes to
    /// `run_dir/qemu.stderr`, everything on the serial line to `serial_log`.
    pub fn start(
        art: &Artifacts,
        initrd: &Path,
        xen_args: &str,
        run_dir: &Path,
        serial_log: &Path,
    ) -> Result<Qemu, LabError> {
        let stderr_file = util::io(
            std::fs::File::create(run_dir.join("qemu.stderr")),
            "qemu.stderr",
        )?;
        let emu = Emulator::from_env()?;
        eprintln!(
            "lab: emulator {} ({}, -accel {})",
            emu.binary,
            emu.version(),
            emu.accel
        );
        let mut cmd = Command::new(&emu.binary);
        if let Some(d) = &emu.data_dir {
            cmd.arg("-L").arg(d);
        }
        let started = Instant::now();
        let mut child = util::io(
            cmd.args(["-accel", &emu.accel])
                .args(["-cpu", "qemu64,+npt", "-m", "2048", "-smp", "2"])
                .args([
                    "-display",
                    "none",
                    "-vga",
                    "none",
                    "-monitor",
                    "none",
                    "-serial",
                    "stdio",
                    "-no-reboot",
                    // No emulated NIC: every packet the lab makes stays between
                    // Dom0 and its guests.
                    "-nic",
                    "none",
                ])
                .arg("-kernel")
                .arg(&art.xen)
                .arg("-append")
                .arg(xen_cmdline(xen_args))
                .arg("-initrd")
                .arg(format!(
                    "{} console=hvc0 earlyprintk=xen,{}",
                    art.vmlinuz.display(),
                    initrd.display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr_file)
                .spawn(),
            "starting QEMU",
        )?;
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log_path = serial_log.to_path_buf();
        let reader = std::thread::spawn(move || read_serial(stdout, &log_path, tx));
        Ok(Qemu {
            child,
            lines,
            reader,
            started,
        })
    }

    /// The next serial line: `Ok(Some(line))`, `Ok(None)` when QEMU's output ended, or
    /// a timeout.
    pub fn next_line(&self, wait: Duration) -> Result<Option<String>, RecvTimeoutError> {
        self.lines.recv_timeout(wait)
    }

    /// Wait for QEMU's exit (after its output ended) and describe its status.
    pub fn exit_status(&mut self) -> String {
        self.child.wait().map(|s| s.to_string()).unwrap_or_default()
    }

    /// Let QEMU exit by itself within `grace` (Dom0 powers off), else kill it. Returns
    /// whether it exited by itself.
    pub fn stop(mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let exited = loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break true,
                _ if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break false;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        drop(self.lines);
        let _ = self.reader.join();
        exited
    }
}

/// Copy QEMU's output to `log_path` byte for byte and send it on as lines (lossy UTF-8,
/// line end removed), then `None`.
fn read_serial(stdout: ChildStdout, log_path: &Path, tx: mpsc::Sender<Option<String>>) {
    let mut log = std::fs::File::create(log_path).ok();
    let mut r = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(f) = log.as_mut() {
                    let _ = f.write_all(&buf);
                }
                let s = String::from_utf8_lossy(&buf);
                let s = s.trim_end_matches(['\n', '\r']).to_string();
                if tx.send(Some(s)).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(None);
}

#[cfg(test)]
mod tests {
    #[test]
    fn xen_cmdline() {
        assert_eq!(
            super::xen_cmdline(""),
            "console=com1 com1=115200 dom0_mem=1024M loglvl=all guest_loglvl=all"
        );
        assert!(super::xen_cmdline("sched=credit2 ").ends_with("guest_loglvl=all sched=credit2"));
    }
}
