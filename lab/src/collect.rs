//! Outcome collection: the state machine over the serial lines of one lab boot. It
//! follows the boot (Xen → Dom0 kernel → /init → toolstack → ready), gathers each
//! scenario's results into its [`Outcome`], says how long the next line may take, and
//! at the end turns everything into the [`Report`] (or the `LAB FAILED` error).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::run::{ConsoleSink, FILE_CAP};
use crate::serial::{self, Event, FileRx, Msg, Received, Timing};
use crate::stage::Prepared;
use crate::verdict::evaluate;
use crate::{LabError, Outcome, Report};

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
/// Serial lines kept for the "last words" of a dying machine.
const LAST_LINES: usize = 60;

/// Where the boot is, i.e. what the next lab line should be.
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

/// What the caller should do after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    More,
    /// Dom0 said `done`.
    Done,
    /// Dom0 gave up (`XFLAB:abort`): the lab failed at this stage.
    Abort(String),
}

/// The bound on the wait for the next serial line.
#[derive(Debug)]
pub struct Wait {
    /// The stage's whole budget.
    pub budget: Duration,
    /// What is left of it now (at least the file-transfer idle bound while a file streams).
    pub left: Duration,
    /// What did not happen if it runs out.
    pub what: String,
}

/// The collection state of one lab boot.
pub struct Collector<'a> {
    prepared: &'a [Prepared],
    on_console: Option<&'a mut ConsoleSink>,
    echo_serial: bool,
    /// QEMU's start: the origin of the boot figures.
    t_qemu: Instant,
    report: Report,
    outcomes: Vec<Option<Outcome>>,
    st: St,
    stage_start: Instant,
    live: BTreeMap<usize, Outcome>,
    con_lines: BTreeMap<usize, Vec<String>>,
    begin_at: BTreeMap<usize, Instant>,
    file: Option<FileRx>,
    /// Position in `prepared` of the next scenario expected.
    next_pos: usize,
    last_xfer: Option<Instant>,
    last_lines: VecDeque<String>,
}

impl<'a> Collector<'a> {
    /// Start collecting for `prepared` (the staged scenarios) into `outcomes` (one slot
    /// per scenario of the suite) and `report`; QEMU started at `t_qemu`.
    pub fn new(
        prepared: &'a [Prepared],
        outcomes: Vec<Option<Outcome>>,
        report: Report,
        t_qemu: Instant,
        on_console: Option<&'a mut ConsoleSink>,
        echo_serial: bool,
    ) -> Collector<'a> {
        Collector {
            prepared,
            on_console,
            echo_serial,
            t_qemu,
            report,
            outcomes,
            st: St::Xen,
            stage_start: Instant::now(),
            live: BTreeMap::new(),
            con_lines: BTreeMap::new(),
            begin_at: BTreeMap::new(),
            file: None,
            next_pos: 0,
            last_xfer: None,
            last_lines: VecDeque::new(),
        }
    }

    fn by_idx(&self, n: usize) -> Option<&'a Prepared> {
        self.prepared.iter().find(|p| p.idx == n)
    }

    fn enter(&mut self, st: St) {
        self.st = st;
        self.stage_start = Instant::now();
    }

    /// Have all scenarios ended?
    pub fn all_ended(&self) -> bool {
        self.st == St::Done
    }

    /// How long the next serial line may take.
    pub fn wait(&self) -> Wait {
        let (budget, what) = match self.st {
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
                    self.prepared
                        .get(self.next_pos)
                        .map(|p| p.sc.name.as_str())
                        .unwrap_or("?")
                ),
            ),
            St::InScenario(n) => {
                let p = self.by_idx(n).unwrap();
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
        let mut left = budget.saturating_sub(self.stage_start.elapsed());
        // A file still streaming in (115200 baud) keeps the scenario alive.
        if let Some(t) = self.last_xfer {
            left = left.max(T_XFER_IDLE.saturating_sub(t.elapsed()));
        }
        Wait { budget, left, what }
    }

    /// Take one serial line.
    pub fn line(&mut self, line: &str) -> Flow {
        if self.last_lines.len() >= LAST_LINES {
            self.last_lines.pop_front();
        }
        self.last_lines.push_back(line.to_string());
        if self.echo_serial {
            eprintln!("{line}");
        }
        match serial::parse(line) {
            None => {
                self.plain(line);
                Flow::More
            }
            Some(m) => self.msg(m),
        }
    }

    /// Xen's and Dom0's own output: boot progress, and Xen's verdicts on a guest.
    fn plain(&mut self, line: &str) {
        match self.st {
            St::Xen if line.contains("(XEN)") || line.contains("Xen version") => {
                self.report.t_xen = Some(self.t_qemu.elapsed());
                self.enter(St::Dom0Kernel);
            }
            St::Dom0Kernel if line.contains("Linux version") => self.enter(St::Dom0Init),
            // Xen's own verdict on an HVM/PVH guest (scenarios run one at a time).
            St::InScenario(n) if line.contains("Triple fault") => {
                if let Some(o) = self.live.get_mut(&n) {
                    o.triple_fault = true;
                    o.notes.push(format!("Xen: {}", line.trim()));
                }
            }
            _ => {}
        }
    }

    fn msg(&mut self, m: Msg<'_>) -> Flow {
        match m {
            Msg::Stage(w) => {
                if w == "init" {
                    self.report.t_dom0_init = Some(self.t_qemu.elapsed());
                    if matches!(self.st, St::Xen | St::Dom0Kernel | St::Dom0Init) {
                        self.enter(St::Toolstack);
                    }
                }
            }
            Msg::Ready => {
                self.report.t_ready = Some(self.t_qemu.elapsed());
                eprintln!(
                    "lab: Dom0 ready after {:.1}s",
                    self.t_qemu.elapsed().as_secs_f64()
                );
                self.enter(St::Between);
            }
            Msg::Abort(why) => return Flow::Abort(why.to_string()),
            Msg::Fault { n, text } => match n.and_then(|n| self.live.get_mut(&n)) {
                Some(o) => o.lab_faults.push(text.to_string()),
                None => self.report.lab_faults.push(text.to_string()),
            },
            Msg::Begin(n) => {
                let p = self.by_idx(n);
                let o = Outcome {
                    name: p.map(|p| p.sc.name.clone()).unwrap_or_default(),
                    domain: p.map(|p| p.domain.clone()).unwrap_or_default(),
                    ..Outcome::default()
                };
                eprintln!("lab: scenario {} ...", o.name);
                self.live.insert(n, o);
                self.begin_at.insert(n, Instant::now());
                self.enter(St::InScenario(n));
            }
            Msg::Con(n, l) => {
                let p = self.by_idx(n);
                if let (Some(cb), Some(p)) = (self.on_console.as_mut(), p) {
                    cb(&p.sc.name, l);
                }
                self.con_lines.entry(n).or_default().push(l.to_string());
            }
            Msg::File(h) => self.file = Some(FileRx::new(h)),
            Msg::B64(b) => {
                self.last_xfer = Some(Instant::now());
                if let Some(f) = self.file.as_mut() {
                    f.push(b);
                }
            }
            Msg::EndFile { sum, enc } => {
                if let Some(f) = self.file.take() {
                    let r = f.finish(sum, enc);
                    if let Some(o) = self.live.get_mut(&r.header.n) {
                        take_file(o, r);
                    }
                }
            }
            Msg::Done => return Flow::Done,
            Msg::Result(n, e) => self.event(n, e),
            Msg::Ignored => {}
        }
        Flow::More
    }

    /// A result line of scenario n (ignored unless n is running).
    fn event(&mut self, n: usize, e: Event<'_>) {
        let Some(o) = self.live.get_mut(&n) else {
            return;
        };
        match e {
            Event::CreateLog(l) => o.notes.push(format!("xl create: {l}")),
            Event::Retry(why) => o.retried = Some(why.to_string()),
            Event::Fail(why) => o.failures.push(why.to_string()),
            Event::LabFail(why) => o.lab_faults.push(why.to_string()),
            Event::Note(t) => o.notes.push(t.to_string()),
            Event::Domid(d) => o.domid = d,
            Event::Time(k, v) => match k {
                Timing::Create => o.t_create = v,
                Timing::CreateFirst => o.t_create_first_line = v,
                Timing::UnpauseFirst => o.t_unpause_first_line = v,
                Timing::UnpauseGone => o.t_gone = v,
            },
            Event::Shutdown(s) => o.shutdown = Some(s),
            Event::Script(s) => o.script_status = s,
            Event::ScriptKilled => o.script_killed = true,
            Event::End => self.end(n),
            Event::Unknown => {}
        }
    }

    /// Scenario n sent all its results: evaluate it.
    fn end(&mut self, n: usize) {
        let mut o = self.live.remove(&n).unwrap();
        if o.console.is_empty() {
            if let Some(c) = self.con_lines.remove(&n) {
                o.console = c.join("\n");
            }
        }
        o.wall = self.begin_at.get(&n).map(|t| t.elapsed());
        let p = self.by_idx(n).unwrap();
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
        self.outcomes[n] = Some(o);
        self.next_pos += 1;
        self.enter(if self.next_pos >= self.prepared.len() {
            St::Done
        } else {
            St::Between
        });
    }

    /// A lab fault of the run as a whole (not of one scenario).
    pub fn lab_fault(&mut self, f: String) {
        self.report.lab_faults.push(f);
    }

    /// The report; with `fail` (the stage at which the lab failed) the `LAB FAILED`
    /// error, in which the running scenario and those not yet run fail with that stage.
    pub fn finish(
        self,
        fail: Option<String>,
        serial_log: PathBuf,
        t_total: Instant,
    ) -> Result<Report, LabError> {
        let Collector {
            prepared,
            report,
            mut outcomes,
            live,
            last_lines,
            ..
        } = self;
        if let Some(mut stage) = fail {
            if let Some(w) = last_words(&last_lines) {
                stage = format!("{stage}; last words: {w}");
            }
            for (n, mut o) in live {
                o.failures
                    .push(format!("lab failed during this scenario: {stage}"));
                outcomes[n] = Some(o);
            }
            for p in prepared {
                if outcomes[p.idx].is_none() {
                    outcomes[p.idx] = Some(Outcome {
                        name: p.sc.name.clone(),
                        domain: p.domain.clone(),
                        failures: vec![format!("not run: lab failed ({stage})")],
                        ..Outcome::default()
                    });
                }
            }
            return Err(LabError::Failed {
                stage,
                serial_log,
                partial: Box::new(finish(report, outcomes, t_total)),
            });
        }
        Ok(finish(report, outcomes, t_total))
    }
}

/// The report with its outcomes (in suite order) and total time.
pub fn finish(mut report: Report, outcomes: Vec<Option<Outcome>>, t: Instant) -> Report {
    report.outcomes = outcomes.into_iter().flatten().collect();
    report.t_total = t.elapsed();
    report
}

/// Put a received file where it belongs in the scenario's outcome.
fn take_file(o: &mut Outcome, r: Received) {
    let label = r.label();
    if r.corrupt {
        o.lab_faults.push(format!(
            "serial transfer of {label} corrupted (sha256 mismatch, {} bytes received)",
            r.data.len()
        ));
    }
    let truncated = r.header.truncated;
    if truncated {
        o.truncated.push(label.clone());
        o.notes
            .push(format!("{label} truncated at {FILE_CAP} bytes"));
    }
    let text = String::from_utf8_lossy(&r.data).into_owned();
    match r.header.kind.as_str() {
        "console" => {
            o.console = text;
            o.console_truncated = truncated;
        }
        "xllog" => o.xl_log = text,
        "scriptout" => o.script_output = text,
        "out" => {
            o.out_files.insert(r.header.name.clone(), text);
            o.out_bytes.insert(r.header.name, r.data);
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

/// The most telling line of a dying machine's last output (Xen or Linux panic).
fn last_words(lines: &VecDeque<String>) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::tests::transfer;
    use crate::{Scenario, Shutdown};

    fn prepared(names: &[&str]) -> Vec<Prepared> {
        names
            .iter()
            .enumerate()
            .map(|(idx, n)| Prepared {
                idx,
                sc: Scenario::new(*n, "/k", "/c.cfg").marker("hello"),
                domain: format!("xf{idx}-{n}"),
            })
            .collect()
    }

    /// Feed `lines`; the flow after the last one.
    fn feed(c: &mut Collector, lines: &[String]) -> Flow {
        let mut f = Flow::More;
        for l in lines {
            f = c.line(l);
            if f != Flow::More {
                break;
            }
        }
        f
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const BOOT: &[&str] = &[
        " Xen 4.17.5-pre",
        "(XEN) Xen version 4.17.5 (Debian)",
        "[    0.000000] Linux version 6.1.0-28-amd64",
        "XFLAB:stage init 5.10",
        "XFLAB:stage toolstack 8.00",
        "XFLAB:ready 12.30",
    ];

    fn scenario(n: usize, code: &str) -> Vec<String> {
        let mut v = s(&[
            &format!("XFLAB:begin {n} xf{n}-x"),
            &format!("XFLAB:t {n} create_ms 400"),
            &format!("XFLAB:domid {n} {}", n + 1),
            &format!("XFLAB:con {n} hello\r"),
            &format!("(XEN) d{}v0 a Xen line between lab lines", n + 1),
            &format!("XFLAB:con {n} world"),
            &format!("XFLAB:t {n} unpause_gone_ms 4700"),
            &format!("XFLAB:shutdown {n} {code}"),
            &format!("XFLAB:script {n} 0"),
        ]);
        v.extend(transfer(n, "console", "", b"hello\r\nworld\r\n"));
        v.extend(transfer(n, "out", "res.txt", b"42\n"));
        v.push(format!("XFLAB:end {n}"));
        v
    }

    #[test]
    fn a_whole_run() {
        let p = prepared(&["a", "b"]);
        let mut sink: ConsoleSink = Box::new(|_, _| {});
        let mut c = Collector::new(
            &p,
            vec![None, None],
            Report::default(),
            Instant::now(),
            Some(&mut sink),
            false,
        );
        assert!(c.wait().what.starts_with("Xen did not start"));
        assert_eq!(feed(&mut c, &s(&BOOT[..2])), Flow::More);
        assert_eq!(c.wait().what, "Dom0 kernel did not start");
        assert_eq!(feed(&mut c, &s(&BOOT[2..])), Flow::More);
        assert_eq!(c.wait().what, "Dom0 did not start scenario a");
        let mut lines = scenario(0, "0");
        lines.truncate(3);
        feed(&mut c, &lines);
        let w = c.wait();
        assert_eq!(w.what, "Dom0 stopped answering during scenario a");
        assert_eq!(w.budget, Duration::from_secs(120) + T_SCENARIO_SLACK);
        feed(&mut c, &scenario(0, "0")[3..]);
        assert_eq!(c.wait().what, "Dom0 did not start scenario b");
        feed(&mut c, &scenario(1, "3"));
        assert!(c.all_ended());
        assert_eq!(c.wait().what, "Dom0 did not finish after the last scenario");
        assert_eq!(feed(&mut c, &s(&["XFLAB:done"])), Flow::Done);
        let r = c.finish(None, "serial.log".into(), Instant::now()).unwrap();
        assert!(r.t_xen.is_some() && r.t_dom0_init.is_some() && r.t_ready.is_some());
        assert_eq!(r.outcomes.len(), 2);
        let a = &r.outcomes[0];
        assert!(a.passed(), "{:?}", a.failures);
        assert_eq!((a.name.as_str(), a.domain.as_str()), ("a", "xf0-a"));
        assert_eq!(a.domid, Some(1));
        assert_eq!(a.console, "hello\r\nworld\r\n");
        assert_eq!(a.out_files["res.txt"], "42\n");
        assert_eq!(a.out_bytes["res.txt"], b"42\n");
        assert_eq!(a.script_status, Some(0));
        assert_eq!(a.t_create, Some(Duration::from_millis(400)));
        assert_eq!(a.t_gone, Some(Duration::from_millis(4700)));
        assert!(a.wall.is_some());
        let b = &r.outcomes[1];
        assert_eq!(b.shutdown, Some(Shutdown::Crash));
        assert_eq!(b.failures, vec!["shutdown: expected poweroff, got crash"]);
    }

    #[test]
    fn console_callback_and_live_lines() {
        let p = prepared(&["a"]);
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        let mut sink: ConsoleSink =
            Box::new(move |n, l| g.lock().unwrap().push(format!("{n}: {l}")));
        let mut c = Collector::new(
            &p,
            vec![None],
            Report::default(),
            Instant::now(),
            Some(&mut sink),
            false,
        );
        // No console file (e.g. it never came): the relayed lines stand in.
        let lines: Vec<String> = scenario(0, "0")
            .into_iter()
            .filter(|l| {
                !l.contains(" console ")
                    && !l.starts_with("XFLAB:b64")
                    && !l.starts_with("XFLAB:endfile 0")
            })
            .collect();
        feed(&mut c, &s(BOOT));
        feed(&mut c, &lines);
        let r = c.finish(None, "s".into(), Instant::now()).unwrap();
        assert_eq!(*got.lock().unwrap(), vec!["a: hello", "a: world"]);
        assert_eq!(r.outcomes[0].console, "hello\nworld");
        assert!(r.outcomes[0].passed(), "{:?}", r.outcomes[0].failures);
    }

    #[test]
    fn faults_corruption_and_triple_faults() {
        let p = prepared(&["a"]);
        let mut c = Collector::new(
            &p,
            vec![None],
            Report::default(),
            Instant::now(),
            None,
            false,
        );
        feed(&mut c, &s(BOOT));
        let mut lines = s(&[
            "XFLAB:fault - dom0: traps: xenstored[88] general protection",
            "XFLAB:begin 0 xf0-a",
            "XFLAB:fault 0 dom0: segfault at 0",
            "(XEN) d1v0 Triple fault - invoking HVM shutdown action 1",
            "XFLAB:shutdown 0 1",
        ]);
        let mut t = transfer(0, "console", "", b"hello\n");
        // One character of the deflate data (not of gzip's header or trailer) changed.
        let mut b: Vec<char> = t[1].chars().collect();
        b[10 + 16] = if b[10 + 16] == 'Q' { 'R' } else { 'Q' };
        t[1] = b.into_iter().collect();
        lines.extend(t);
        lines.push("XFLAB:end 0".into());
        feed(&mut c, &lines);
        let r = c.finish(None, "s".into(), Instant::now()).unwrap();
        assert_eq!(
            r.lab_faults,
            vec!["dom0: traps: xenstored[88] general protection"]
        );
        let o = &r.outcomes[0];
        assert_eq!(o.lab_faults[0], "dom0: segfault at 0");
        assert!(
            o.lab_faults[1].starts_with("serial transfer of console corrupted (sha256 mismatch")
        );
        assert!(o.triple_fault);
        assert!(o
            .notes
            .iter()
            .any(|n| n.starts_with("Xen: (XEN) d1v0 Triple fault")));
        assert_eq!(o.status(), "LAB-FAULT");
    }

    #[test]
    fn lines_of_unknown_or_finished_scenarios_are_ignored() {
        let p = prepared(&["a"]);
        let mut c = Collector::new(
            &p,
            vec![None],
            Report::default(),
            Instant::now(),
            None,
            false,
        );
        feed(&mut c, &s(BOOT));
        feed(&mut c, &scenario(0, "0"));
        feed(
            &mut c,
            &s(&[
                "XFLAB:fail 0 late",
                "XFLAB:end 0",
                "XFLAB:shutdown 7 3",
                "XFLAB:end 7",
            ]),
        );
        let r = c.finish(None, "s".into(), Instant::now()).unwrap();
        assert!(r.outcomes[0].passed());
    }

    #[test]
    fn abort_fails_the_lab() {
        let p = prepared(&["a", "b"]);
        let mut c = Collector::new(
            &p,
            vec![None, None],
            Report::default(),
            Instant::now(),
            None,
            false,
        );
        let f = feed(
            &mut c,
            &s(&[
                BOOT[0],
                BOOT[1],
                BOOT[2],
                BOOT[3],
                "XFLAB:abort toolstack: xl info failed",
            ]),
        );
        let Flow::Abort(why) = f else { panic!("{f:?}") };
        assert_eq!(why, "toolstack: xl info failed");
        let Err(LabError::Failed { stage, partial, .. }) =
            c.finish(Some(why), "s".into(), Instant::now())
        else {
            panic!()
        };
        assert_eq!(
            stage,
            "toolstack: xl info failed; last words: XFLAB:abort toolstack: xl info failed"
        );
        assert_eq!(partial.outcomes.len(), 2);
        assert!(partial.outcomes[1].failures[0].starts_with("not run: lab failed (toolstack"));
    }

    #[test]
    fn a_lab_failure_mid_scenario() {
        let p = prepared(&["a", "b"]);
        let mut c = Collector::new(
            &p,
            vec![None, None],
            Report::default(),
            Instant::now(),
            None,
            false,
        );
        feed(&mut c, &s(BOOT));
        feed(&mut c, &scenario(0, "0"));
        feed(
            &mut c,
            &s(&[
                "XFLAB:begin 1 xf1-b",
                "(XEN) Panic on CPU 0:",
                "(XEN) FATAL TRAP: vector = 6",
            ]),
        );
        let Err(LabError::Failed { stage, partial, .. }) = c.finish(
            Some("Dom0 stopped answering during scenario b within 360s".into()),
            "s".into(),
            Instant::now(),
        ) else {
            panic!()
        };
        assert!(
            stage.ends_with("; last words: FATAL TRAP: vector = 6"),
            "{stage}"
        );
        assert!(partial.outcomes[0].passed());
        assert!(partial.outcomes[1].failures[0]
            .starts_with("lab failed during this scenario: Dom0 stopped"));
    }

    #[test]
    fn last_words() {
        let q = |v: &[&str]| super::last_words(&v.iter().map(|x| x.to_string()).collect());
        assert_eq!(q(&["a", "b"]), None);
        assert_eq!(
            q(&["[ 1.0] Kernel panic - not syncing: x", "more"]).unwrap(),
            "[ 1.0] Kernel panic - not syncing: x"
        );
        assert_eq!(
            q(&[
                "(XEN) Panic on CPU 1:",
                "(XEN) Xen BUG at x.c:1",
                "(XEN) ****"
            ])
            .unwrap(),
            "Xen BUG at x.c:1"
        );
        assert_eq!(q(&["(XEN) Panic on CPU 1:"]), None);
    }
}
