//! The verdict on a finished scenario: its expectations applied to its [`Outcome`], and
//! the emulator's world-switch fault recognised in a dead guest's vCPU state.

use crate::{Outcome, Scenario, Shutdown};

/// Apply expectations to a finished outcome.
pub fn evaluate(sc: &Scenario, o: &mut Outcome) {
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

#[cfg(test)]
mod evaluate_tests {
    use super::evaluate;
    use crate::{Outcome, Scenario, Shutdown};

    fn sc() -> Scenario {
        Scenario::new("s", "/k", "/c.cfg")
            .marker("Test result: SUCCESS")
            .timeout_secs(30)
    }

    fn ran(shutdown: Shutdown, console: &str) -> Outcome {
        Outcome {
            shutdown: Some(shutdown),
            console: console.into(),
            ..Outcome::default()
        }
    }

    fn eval(sc: &Scenario, mut o: Outcome) -> Outcome {
        evaluate(sc, &mut o);
        o
    }

    #[test]
    fn pass_and_plain_failures() {
        let o = eval(&sc(), ran(Shutdown::Poweroff, "Test result: SUCCESS\n"));
        assert!(o.passed() && o.status() == "ok", "{:?}", o.failures);
        let o = eval(&sc(), ran(Shutdown::Crash, "Test result: SUCCESS\n"));
        assert_eq!(o.failures, vec!["shutdown: expected poweroff, got crash"]);
        let o = eval(&sc(), ran(Shutdown::Poweroff, "other\n"));
        assert_eq!(
            o.failures,
            vec!["console marker not found: \"Test result: SUCCESS\""]
        );
        let o = eval(&sc(), ran(Shutdown::Timeout, ""));
        assert_eq!(
            o.failures[0],
            "timeout: the guest did not shut down within 30s; the guest never printed to its console"
        );
        assert!(o.failures[1].ends_with("(the guest never printed)"));
        let o = eval(&sc(), Outcome::default());
        assert_eq!(
            o.failures,
            vec!["the guest never ran (no shutdown reason reported)"]
        );
        // A failure already there (e.g. xl create refused): no second one.
        let mut refused = Outcome::default();
        refused.failures.push("xl create failed (rc=1)".into());
        assert_eq!(eval(&sc(), refused).failures.len(), 1);
    }

    #[test]
    fn script_status_and_checks() {
        let s = sc().script_status(0).check(|o| {
            if o.domid == Some(3) {
                Ok(())
            } else {
                Err("domid".into())
            }
        });
        let mut o = ran(Shutdown::Poweroff, "Test result: SUCCESS");
        o.script_status = Some(2);
        let o = eval(&s, o);
        assert_eq!(
            o.failures,
            vec![
                "dom0 script exited with 2, expected 0",
                "check failed: domid"
            ]
        );
        let mut o = ran(Shutdown::Poweroff, "Test result: SUCCESS");
        o.script_killed = true;
        o.domid = Some(3);
        assert_eq!(
            eval(&s, o).failures,
            vec!["dom0 script still running after its wait bound (killed)"]
        );
        let o = ran(Shutdown::Poweroff, "Test result: SUCCESS");
        assert!(eval(&s, o).failures[0] == "dom0 script did not run");
    }

    #[test]
    fn guest_traps_are_lab_faults() {
        let o = eval(
            &sc(),
            ran(
                Shutdown::Poweroff,
                "Test result: SUCCESS\n traps: x[1] trap\n",
            ),
        );
        assert_eq!(o.lab_faults, vec!["guest console: traps: x[1] trap"]);
        assert_eq!(o.status(), "LAB-FAULT");
    }

    #[test]
    fn expected_tolerated_and_emulator_faults() {
        let xfail = sc().expect_failure("marker not found");
        let o = eval(&xfail, ran(Shutdown::Poweroff, ""));
        assert!(o.passed() && o.status() == "ok (xfail)");
        let o = eval(&xfail, ran(Shutdown::Poweroff, "Test result: SUCCESS"));
        assert_eq!(
            o.failures,
            vec!["expected a failure containing \"marker not found\", but the scenario passed"]
        );
        let o = eval(&xfail, ran(Shutdown::Reboot, "Test result: SUCCESS"));
        assert!(o.failures[1].starts_with("expected a failure containing"));

        let tol = sc().tolerate_failure("baseline");
        let o = eval(&tol, ran(Shutdown::Crash, ""));
        assert!(o.passed() && o.status() == "TOLERATED");
        assert_eq!(o.tolerated.last().unwrap(), "tolerated because baseline");

        let mut o = ran(Shutdown::Reboot, "");
        o.vcpu_state = "rip: ffff82d0402044a5\n cs: e008\n".into();
        o.triple_fault = true;
        let o = eval(&sc(), o);
        assert!(o.passed() && o.status() == "EMULATOR-FAULT");
        assert!(o.emulator_fault.is_some());
        assert!(o.tolerated.last().unwrap().starts_with("EMULATOR FAULT: "));
    }
}
