//! Booting the lab under QEMU and talking to Dom0 over the serial line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{self, qp, sh};
use crate::{cfg, image, LabError, Outcome, Report, Scenario, Shutdown};

/// Cap on every file shipped back over the serial line (console log, script output, $OUT).
pub const FILE_CAP: usize = 256 * 1024;

/// Bounded waits for each stage of the boot.
const T_XEN: Duration = Duration::from_secs(60);
const T_DOM0_KERNEL: Duration = Duration::from_secs(120);
const T_DOM0_INIT: Duration = Duration::from_secs(120);
const T_TOOLSTACK: Duration = Duration::from_secs(180);
/// Beyond a scenario's own timeout: xl create/destroy, script wait, file transfer.
const T_SCENARIO_SLACK: Duration = Duration::from_secs(240);
/// While a file transfer is in progress: longest silence tolerated.
const T_XFER_IDLE: Duration = Duration::from_secs(60);
const T_DONE: Duration = Duration::from_secs(60);

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

struct Prepared {
    idx: usize,
    sc: Scenario,
    domain: String,
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

/// Host-side checks and staging of one scenario into `dir` (= /scenarios/<n> in Dom0).
fn stage(sc: &Scenario, n: usize, domain: &str, dir: &Path) -> Result<(), String> {
    if sc.name.trim().is_empty() {
        return Err("scenario has an empty name".into());
    }
    if !sc.kernel.exists() {
        return Err(format!("kernel {} does not exist", sc.kernel.display()));
    }
    image::check_kernel(&sc.kernel)?;
    let text = std::fs::read_to_string(&sc.config)
        .map_err(|e| format!("config {}: {e}", sc.config.display()))?;
    let mut text = text;
    for l in &sc.config_lines {
        text.push('\n');
        text.push_str(l);
    }
    let stmts = cfg::parse(&text).map_err(|e| format!("config {}: {e}", sc.config.display()))?;
    let unknown = cfg::unknown_keys(&stmts);
    if !unknown.is_empty() {
        return Err(format!(
            "config {}: unknown xl config key(s): {}",
            sc.config.display(),
            unknown.join(", ")
        ));
    }
    let d0 = format!("/scenarios/{n}");
    let cfg_dir = sc.config.parent().unwrap_or(Path::new("."));
    let probe = cfg::rewrite(&stmts, cfg_dir, domain, "", None, None, "");
    let ramdisk = sc.ramdisk.clone().or(probe.cfg_ramdisk);
    if let Some(r) = &ramdisk {
        if !r.exists() {
            return Err(format!("ramdisk {} does not exist", r.display()));
        }
    }
    for (p, name) in &sc.files {
        if !p.exists() {
            return Err(format!(
                "file {} (for $FILES/{name}) does not exist",
                p.display()
            ));
        }
        if name.is_empty() || name.contains("..") || name.starts_with('/') {
            return Err(format!("bad file name {name:?} for {}", p.display()));
        }
    }
    let rw = cfg::rewrite(
        &stmts,
        cfg_dir,
        domain,
        &format!("{d0}/kernel"),
        ramdisk.as_ref().map(|_| format!("{d0}/ramdisk")).as_deref(),
        sc.extra.as_deref(),
        &format!("{d0}/files"),
    );
    let mut cfg_text = rw.text;
    let pin = std::env::var("XF_LAB_HVM_CPUS").unwrap_or_else(|_| cfg::HVM_PCPU.to_string());
    if let Some(l) = cfg::hvm_pin(&stmts, &pin) {
        cfg_text.push_str(&l);
        cfg_text.push('\n');
    }
    let err = |e: std::io::Error| format!("staging {}: {e}", dir.display());
    std::fs::create_dir_all(dir.join("files")).map_err(err)?;
    std::fs::write(dir.join("cfg"), cfg_text).map_err(err)?;
    std::fs::copy(&sc.kernel, dir.join("kernel")).map_err(err)?;
    if let Some(r) = &ramdisk {
        std::fs::copy(r, dir.join("ramdisk")).map_err(err)?;
    }
    for (p, name) in &sc.files {
        let dst = dir.join("files").join(name);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::copy(p, &dst).map_err(|e| format!("copying {}: {e}", p.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p)
                .map(|m| m.permissions().mode())
                .unwrap_or(0o644);
            let _ = std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode | 0o400));
        }
    }
    if let Some(s) = &sc.dom0_script {
        std::fs::write(dir.join("script"), s).map_err(err)?;
    }
    std::fs::write(
        dir.join("meta"),
        format!(
            "NAME='{domain}'\nTIMEOUT={}\nSCRIPT_WAIT=30\nCAP={FILE_CAP}\n",
            sc.timeout.as_secs().max(1)
        ),
    )
    .map_err(err)?;
    Ok(())
}

/// Apply expectations to a finished outcome.
fn evaluate(sc: &Scenario, o: &mut Outcome) {
    let never_printed = o.console.trim().is_empty();
    match o.shutdown {
        Some(Shutdown::Timeout) => o.failures.push(format!(
            "timeout: the guest did not shut down within {}s{}",
            sc.timeout.as_secs(),
            if never_printed {
                "; the guest never printed to its console"
            } else {
                ""
            }
        )),
        Some(got) => {
            if let Some(want) = sc.expect.shutdown {
                if got != want {
                    o.failures
                        .push(format!("shutdown: expected {want}, got {got}"));
                }
            }
        }
        None => {
            if o.failures.is_empty() {
                o.failures
                    .push("the guest never ran (no shutdown reason reported)".into());
            }
        }
    }
    if o.shutdown.is_some() {
        for m in &sc.expect.markers {
            if !o.console.contains(m.as_str()) {
                o.failures.push(format!(
                    "console marker not found: {m:?}{}",
                    if never_printed {
                        " (the guest never printed)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    if let Some(want) = sc.expect.script_status {
        match (o.script_status, o.script_killed) {
            (_, true) => o
                .failures
                .push("dom0 script still running after its wait bound (killed)".into()),
            (Some(s), _) if s == want => {}
            (Some(s), _) => o
                .failures
                .push(format!("dom0 script exited with {s}, expected {want}")),
            (None, _) => o.failures.push("dom0 script did not run".into()),
        }
    }
    for l in o.console.lines() {
        if l.contains("traps:") || l.contains("segfault at") {
            o.lab_faults.push(format!("guest console: {}", l.trim()));
        }
    }
    if o.triple_fault {
        // Never expected: the guest's own #DF handler reports everything it can catch.
        o.failures.push(
            "Xen reported a triple fault (its line and the dead vCPU's state are in the notes)"
                .into(),
        );
    }
    if let Some(c) = &sc.check {
        if o.shutdown.is_some() {
            if let Err(e) = c(o) {
                o.failures.push(format!("check failed: {e}"));
            }
        }
    }
    // Only a failure with the emulator's fingerprint is set aside; lab faults never are.
    if !o.failures.is_empty() {
        if let Some(ev) = emulator_fault(&o.vcpu_state) {
            o.tolerated = std::mem::take(&mut o.failures);
            o.tolerated.push(format!("EMULATOR FAULT: {ev}"));
            o.emulator_fault = Some(ev);
        }
    }
    if let Some(why) = &sc.expect.tolerate {
        if !o.failures.is_empty() {
            o.tolerated = std::mem::take(&mut o.failures);
            o.tolerated.push(format!("tolerated because {why}"));
        }
    }
    if let Some(sub) = &sc.expect.failure {
        if let Some(f) = o
            .failures
            .iter()
            .find(|f| f.contains(sub.as_str()))
            .cloned()
        {
            o.expected_failure = Some(f);
            o.failures.clear();
        } else if o.failures.is_empty() {
            o.failures.push(format!(
                "expected a failure containing {sub:?}, but the scenario passed"
            ));
        } else {
            let got = o.failures.join("; ");
            o.failures
                .push(format!("expected a failure containing {sub:?}, got: {got}"));
        }
    }
}

fn ms(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_millis)
}

struct FileRx {
    n: usize,
    kind: String,
    name: String,
    truncated: bool,
    b64: String,
}

/// Boot the lab once and run `scenarios` in order.
pub fn run_suite_with(scenarios: Vec<Scenario>, mut opts: RunOptions) -> Result<Report, LabError> {
    let t_total = Instant::now();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let run_dir = util::out_dir().join(format!("run-{stamp}-{}", std::process::id()));
    let overlay = run_dir.join("overlay");
    util::io(
        std::fs::create_dir_all(overlay.join("scenarios")),
        run_dir.display(),
    )?;
    util::io(
        std::fs::create_dir_all(overlay.join("lab")),
        run_dir.display(),
    )?;

    let mut report = Report {
        run_dir: Some(run_dir.clone()),
        ..Report::default()
    };
    let mut outcomes: Vec<Option<Outcome>> = Vec::new();
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, sc) in scenarios.into_iter().enumerate() {
        let domain = format!("xf{n}-{}", sanitize(&sc.name));
        let mut o = Outcome {
            name: sc.name.clone(),
            domain: domain.clone(),
            ..Outcome::default()
        };
        let r = if !seen.insert(sc.name.clone()) {
            Err(format!("duplicate scenario name {:?}", sc.name))
        } else {
            stage(
                &sc,
                n,
                &domain,
                &overlay.join("scenarios").join(n.to_string()),
            )
        };
        match r {
            Ok(()) => {
                outcomes.push(None);
                prepared.push(Prepared { idx: n, sc, domain });
            }
            Err(e) => {
                o.failures.push(format!("host check: {e}"));
                evaluate(&sc, &mut o);
                outcomes.push(Some(o));
            }
        }
    }
    let finish = |mut report: Report, outcomes: Vec<Option<Outcome>>, t: Instant| {
        report.outcomes = outcomes.into_iter().flatten().collect();
        report.t_total = t.elapsed();
        report
    };
    if prepared.is_empty() {
        let _ = std::fs::remove_dir_all(&run_dir);
        report.run_dir = None;
        return Ok(finish(report, outcomes, t_total));
    }

    util::ensure_host_tools()?;
    let art = image::prepare()?;
    let manifest: String = prepared.iter().map(|p| format!("{}\n", p.idx)).collect();
    util::io(
        std::fs::write(overlay.join("scenarios/manifest"), manifest),
        "manifest",
    )?;
    let runner = util::lab_dir().join("dom0/runner.sh");
    util::io(
        std::fs::copy(&runner, overlay.join("lab/runner.sh")),
        runner.display(),
    )?;
    let initrd = run_dir.join("initrd.cpio.gz");
    sh(&format!(
        "set -e; cd {ov}; chmod 755 lab/runner.sh; find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1 > ../overlay.cpio.gz; \
         cat {base} ../overlay.cpio.gz > {out}",
        ov = qp(&overlay),
        base = qp(&art.dom0_initrd),
        out = qp(&initrd)
    ))?;
    let _ = std::fs::remove_dir_all(&overlay);

    let serial_path = run_dir.join("serial.log");
    report.serial_log = Some(serial_path.clone());
    eprintln!(
        "lab: booting Xen + Dom0 ({} scenario(s)); serial log: {}",
        prepared.len(),
        serial_path.display()
    );

    let xen_cmdline = format!(
        "console=com1 com1=115200 dom0_mem=1024M loglvl=all guest_loglvl=all {}",
        opts.xen_args
    );
    let stderr_file = util::io(
        std::fs::File::create(run_dir.join("qemu.stderr")),
        "qemu.stderr",
    )?;
    let t_qemu = Instant::now();
    let mut child: Child = util::io(
        Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-cpu",
                "qemu64,+npt",
                "-m",
                "2048",
                "-smp",
                "2",
            ])
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
            ])
            .arg("-kernel")
            .arg(&art.xen)
            .arg("-append")
            .arg(xen_cmdline.trim())
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
        "starting qemu-system-x86_64",
    )?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let log_path = serial_path.clone();
    let reader = std::thread::spawn(move || {
        let mut log = std::fs::File::create(&log_path).ok();
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
    });

    // --- the state machine over serial lines ---
    #[derive(PartialEq, Clone, Copy, Debug)]
    enum St {
        Xen,
        Dom0Kernel,
        Dom0Init,
        Toolstack,
        Between,
        InScenario(usize),
        Done,
    }
    let mut st = St::Xen;
    let mut stage_start = Instant::now();
    let mut live: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut con_lines: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut begin_at: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut file: Option<FileRx> = None;
    let by_idx = |n: usize| prepared.iter().find(|p| p.idx == n);
    let mut fail: Option<String> = None;
    let mut next_pos = 0usize; // position in `prepared` of the next scenario expected
    let mut last_xfer: Option<Instant> = None;
    let mut last_lines: std::collections::VecDeque<String> = std::collections::VecDeque::new();

    loop {
        let (budget, what) = match st {
            St::Xen => (
                T_XEN,
                "Xen did not start (no Xen output on the serial line)".to_string(),
            ),
            St::Dom0Kernel => (T_DOM0_KERNEL, "Dom0 kernel did not start".to_string()),
            St::Dom0Init => (T_DOM0_INIT, "Dom0 /init did not run".to_string()),
            St::Toolstack => (
                T_TOOLSTACK,
                "Dom0 toolstack did not come up (xl info)".to_string(),
            ),
            St::Between => (
                T_SCENARIO_SLACK,
                format!(
                    "Dom0 did not start scenario {}",
                    prepared
                        .get(next_pos)
                        .map(|p| p.sc.name.as_str())
                        .unwrap_or("?")
                ),
            ),
            St::InScenario(n) => {
                let p = by_idx(n).unwrap();
                (
                    p.sc.timeout + T_SCENARIO_SLACK,
                    format!("Dom0 stopped answering during scenario {}", p.sc.name),
                )
            }
            St::Done => (
                T_DONE,
                "Dom0 did not finish after the last scenario".to_string(),
            ),
        };
        let mut left = budget.saturating_sub(stage_start.elapsed());
        // A file still streaming in (115200 baud) keeps the scenario alive.
        if let Some(t) = last_xfer {
            left = left.max(T_XFER_IDLE.saturating_sub(t.elapsed()));
        }
        let line = match rx.recv_timeout(left) {
            Ok(Some(l)) => l,
            Ok(None) => {
                if st != St::Done {
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    fail = Some(format!("{what} (QEMU exited: {status})"));
                }
                break;
            }
            Err(_) => {
                fail = Some(format!("{what} within {}s", budget.as_secs()));
                break;
            }
        };
        if last_lines.len() >= 60 {
            last_lines.pop_front();
        }
        last_lines.push_back(line.clone());
        if opts.echo_serial {
            eprintln!("{line}");
        }
        let Some(pos) = line.find("XFLAB:") else {
            match st {
                St::Xen if line.contains("(XEN)") || line.contains("Xen version") => {
                    report.t_xen = Some(t_qemu.elapsed());
                    st = St::Dom0Kernel;
                    stage_start = Instant::now();
                }
                St::Dom0Kernel if line.contains("Linux version") => {
                    st = St::Dom0Init;
                    stage_start = Instant::now();
                }
                // Xen's own verdict on an HVM/PVH guest (scenarios run one at a time).
                St::InScenario(n) if line.contains("Triple fault") => {
                    if let Some(o) = live.get_mut(&n) {
                        o.triple_fault = true;
                        o.notes.push(format!("Xen: {}", line.trim()));
                    }
                }
                _ => {}
            }
            continue;
        };
        let msg = &line[pos + 6..];
        let (tag, rest) = msg.split_once(' ').unwrap_or((msg, ""));
        let mut words = rest.splitn(2, ' ');
        let n_word = words.next().unwrap_or("");
        let tail = words.next().unwrap_or("").to_string();
        let n: Option<usize> = n_word.parse().ok();
        match tag {
            "stage" => {
                if n_word == "init" {
                    report.t_dom0_init = Some(t_qemu.elapsed());
                    if matches!(st, St::Xen | St::Dom0Kernel | St::Dom0Init) {
                        st = St::Toolstack;
                        stage_start = Instant::now();
                    }
                }
            }
            "ready" => {
                report.t_ready = Some(t_qemu.elapsed());
                eprintln!(
                    "lab: Dom0 ready after {:.1}s",
                    t_qemu.elapsed().as_secs_f64()
                );
                st = St::Between;
                stage_start = Instant::now();
            }
            "abort" => {
                fail = Some(rest.to_string());
                break;
            }
            "fault" => match n.and_then(|n| live.get_mut(&n)) {
                Some(o) => o.lab_faults.push(tail),
                None => report.lab_faults.push(if n.is_none() {
                    rest.trim_start_matches("- ").to_string()
                } else {
                    tail
                }),
            },
            "begin" => {
                if let Some(n) = n {
                    let p = by_idx(n);
                    let mut o = Outcome {
                        name: p.map(|p| p.sc.name.clone()).unwrap_or_default(),
                        ..Outcome::default()
                    };
                    o.domain = p.map(|p| p.domain.clone()).unwrap_or_default();
                    eprintln!("lab: scenario {} ...", o.name);
                    live.insert(n, o);
                    begin_at.insert(n, Instant::now());
                    st = St::InScenario(n);
                    stage_start = Instant::now();
                }
            }
            "con" => {
                if let Some(n) = n {
                    let l = tail.trim_end_matches('\r').to_string();
                    if let (Some(cb), Some(p)) = (opts.on_console.as_mut(), by_idx(n)) {
                        cb(&p.sc.name, &l);
                    }
                    con_lines.entry(n).or_default().push(l);
                }
            }
            "file" => {
                // file <n> <kind> <size> <trunc> [name]
                let f: Vec<&str> = rest.splitn(5, ' ').collect();
                if f.len() >= 4 {
                    file = Some(FileRx {
                        n: f[0].parse().unwrap_or(usize::MAX),
                        kind: f[1].to_string(),
                        name: f.get(4).unwrap_or(&"").to_string(),
                        truncated: f[3] == "1",
                        b64: String::new(),
                    });
                }
            }
            "b64" => {
                last_xfer = Some(Instant::now());
                if let Some(f) = file.as_mut() {
                    f.b64.push_str(rest.trim());
                }
            }
            "endfile" => {
                if let Some(f) = file.take() {
                    let (want_sum, enc) = tail.trim().split_once(' ').unwrap_or((tail.trim(), ""));
                    let mut data = util::base64_decode(&f.b64);
                    if enc == "gz" {
                        data = util::gunzip(&data).unwrap_or_default();
                    }
                    let text = String::from_utf8_lossy(&data).into_owned();
                    if let Some(o) = live.get_mut(&f.n) {
                        let label = if f.name.is_empty() {
                            f.kind.clone()
                        } else {
                            format!("{}:{}", f.kind, f.name)
                        };
                        if !want_sum.is_empty()
                            && util::sha256_bytes(&data).ok().as_deref() != Some(want_sum)
                        {
                            o.lab_faults.push(format!(
                                "serial transfer of {label} corrupted (sha256 mismatch, {} bytes received)",
                                data.len()
                            ));
                        }
                        if f.truncated {
                            o.truncated.push(label.clone());
                            o.notes
                                .push(format!("{label} truncated at {FILE_CAP} bytes"));
                        }
                        match f.kind.as_str() {
                            "console" => {
                                o.console = text;
                                o.console_truncated = f.truncated;
                            }
                            "xllog" => o.xl_log = text,
                            "scriptout" => o.script_output = text,
                            "out" => {
                                o.out_files.insert(f.name.clone(), text);
                                o.out_bytes.insert(f.name, data);
                            }
                            "xlcreate" => o.notes.push(format!("xl create output:\n{text}")),
                            "vcpuctx" => {
                                o.notes
                                    .push(format!("vCPU state of the dead guest:\n{text}"));
                                o.vcpu_state = text;
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {
                let Some(n) = n else {
                    if tag == "done" {
                        break;
                    }
                    continue;
                };
                let Some(o) = live.get_mut(&n) else { continue };
                match tag {
                    "createlog" => o.notes.push(format!("xl create: {tail}")),
                    "retry" => o.retried = Some(tail),
                    "fail" => o.failures.push(tail),
                    "labfail" => o.lab_faults.push(tail),
                    "note" => o.notes.push(tail),
                    "domid" => o.domid = tail.trim().parse().ok(),
                    "t" => {
                        let (k, v) = tail.split_once(' ').unwrap_or(("", ""));
                        match k {
                            "create_ms" => o.t_create = ms(v),
                            "create_first_ms" => o.t_create_first_line = ms(v),
                            "unpause_first_ms" => o.t_unpause_first_line = ms(v),
                            "unpause_gone_ms" => o.t_gone = ms(v),
                            _ => {}
                        }
                    }
                    "shutdown" => {
                        o.shutdown = Some(match tail.trim() {
                            "timeout" => Shutdown::Timeout,
                            "gone" => Shutdown::Gone,
                            c => c.parse().map(Shutdown::from_code).unwrap_or(Shutdown::Gone),
                        })
                    }
                    "script" => match tail.trim() {
                        "killed" => o.script_killed = true,
                        s => o.script_status = s.parse().ok(),
                    },
                    "end" => {
                        let mut o = live.remove(&n).unwrap();
                        if o.console.is_empty() {
                            if let Some(c) = con_lines.remove(&n) {
                                o.console = c.join("\n");
                            }
                        }
                        o.wall = begin_at.get(&n).map(|t| t.elapsed());
                        let p = by_idx(n).unwrap();
                        evaluate(&p.sc, &mut o);
                        eprintln!(
                            "lab: scenario {} {} ({}; {:.1}s)",
                            o.name,
                            o.status(),
                            o.shutdown
                                .map(|s| s.to_string())
                                .unwrap_or("not run".into()),
                            o.wall.unwrap_or_default().as_secs_f64()
                        );
                        outcomes[n] = Some(o);
                        next_pos += 1;
                        st = if next_pos >= prepared.len() {
                            St::Done
                        } else {
                            St::Between
                        };
                        stage_start = Instant::now();
                    }
                    _ => {}
                }
            }
        }
    }

    // Let QEMU exit by itself after Dom0's poweroff; kill it if it does not.
    let deadline = Instant::now() + Duration::from_secs(if fail.is_some() { 0 } else { 30 });
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            _ if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                if fail.is_none() {
                    report
                        .lab_faults
                        .push("QEMU did not exit after Dom0 powered off (killed)".into());
                }
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    drop(rx);
    let _ = reader.join();
    // The combined initrd is large and reproducible; keep only the logs.
    let _ = std::fs::remove_file(&initrd);
    let _ = std::fs::remove_file(run_dir.join("overlay.cpio.gz"));

    if let Some(mut stage) = fail {
        if let Some(w) = last_words(&last_lines) {
            stage = format!("{stage}; last words: {w}");
        }
        for (n, o) in live {
            let mut o = o;
            o.failures
                .push(format!("lab failed during this scenario: {stage}"));
            outcomes[n] = Some(o);
        }
        for p in &prepared {
            if outcomes[p.idx].is_none() {
                let o = Outcome {
                    name: p.sc.name.clone(),
                    domain: p.domain.clone(),
                    failures: vec![format!("not run: lab failed ({stage})")],
                    ..Outcome::default()
                };
                outcomes[p.idx] = Some(o);
            }
        }
        let report = finish(report, outcomes, t_total);
        return Err(LabError::Failed {
            stage,
            serial_log: serial_path,
            partial: Box::new(report),
        });
    }
    Ok(finish(report, outcomes, t_total))
}

/// The most telling line of a dying machine's last output (Xen or Linux panic).
fn last_words(lines: &std::collections::VecDeque<String>) -> Option<String> {
    let v: Vec<&String> = lines.iter().collect();
    for (i, l) in v.iter().enumerate() {
        if l.contains("(XEN) Panic on CPU") {
            return v
                .get(i + 1)
                .map(|n| n.trim_start_matches("(XEN) ").trim().to_string());
        }
    }
    v.iter()
        .rev()
        .find(|l| l.contains("Kernel panic") || l.contains("XFLAB:abort"))
        .map(|l| l.trim().to_string())
}

/// Xen's hypervisor code selector and text range (x86-64, 4.17): no guest ever runs there.
const XEN_CS: u64 = 0xe008;
const XEN_TEXT: std::ops::Range<u64> = 0xffff_82d0_4000_0000..0xffff_82d0_8000_0000;

/// Does a dead (or hung) guest's saved vCPU state (`xenctx -a` output) show the
/// emulated CPU's world-switch fault: the guest "ran" with *Xen's own* state — RIP in
/// Xen's text with Xen's CS (0xe008), i.e. the host state of Xen's `vmrun`? No guest
/// instruction can load either, so this is QEMU's emulated SVM corrupting the guest
/// (docs/lab.md, "PVH guests: the emulator's world-switch fault"). Returns the evidence.
pub fn emulator_fault(xenctx: &str) -> Option<String> {
    // The hex word after `name` (`rip: ffff...`, ` cs: e008\t ss: ...`).
    let field = |name: &str| {
        xenctx.lines().find_map(|l| {
            let v = l.split_whitespace().skip_while(|k| *k != name).nth(1)?;
            u64::from_str_radix(v, 16).ok()
        })
    };
    let (rip, cs) = (field("rip:")?, field("cs:")?);
    (cs == XEN_CS && XEN_TEXT.contains(&rip)).then(|| {
        format!(
            "the guest's saved vCPU state is Xen's own (rip {rip:#x} in Xen's text, cs {cs:#x})"
        )
    })
}

#[cfg(test)]
mod emulator_fault_tests {
    use super::emulator_fault;

    const DEAD: &str = "# xenctx -a 2\nrip: ffff82d0402044a5\nflags: 00000246 i z p\n\
        rsp: ffff83007ffd7f70\n cs: e008\t ss: 0000\t ds: 0000\t es: 0000\n";

    #[test]
    fn xen_state_in_a_guest_is_recognised() {
        let ev = emulator_fault(DEAD).unwrap();
        assert!(
            ev.contains("0xffff82d0402044a5") && ev.contains("0xe008"),
            "{ev}"
        );
    }

    #[test]
    fn guest_states_are_not() {
        // xenfront PVH faulting in its own code; a PV guest in Linux's kernel text.
        assert_eq!(
            emulator_fault("rip: 0000000000104a2c\n cs: 0008\t ss: 0010\n"),
            None
        );
        assert_eq!(
            emulator_fault("rip: ffffffff81000000\n cs: e033\t ss: e02b\n"),
            None
        );
        // Xen's CS with a guest RIP, or a RIP in Xen's range with another CS: not both.
        assert_eq!(emulator_fault("rip: 0000000000104a2c\n cs: e008\n"), None);
        assert_eq!(emulator_fault("rip: ffff82d0402044a5\n cs: 0010\n"), None);
        assert_eq!(emulator_fault(""), None);
        assert_eq!(emulator_fault("xenctx: failed to pause domain\n"), None);
    }
}
