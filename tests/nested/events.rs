//! Event channels, traps, time (PV). Values are parsed from the
//! guest console (docs/console.md, "Events and time") and checked: upcall
//! counts, starvation bound, timer order and measured durations, wall clock
//! against Dom0's clock, round trips with a Dom0 peer, fatal trap reports.

use std::path::PathBuf;

use lab::{Outcome, Scenario, Shutdown};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kernel() -> PathBuf {
    root().join("target/x86_64-unknown-none/release/xenfront-test")
}

fn pv(name: &str, test: &str) -> Scenario {
    Scenario::new(name, kernel(), root().join("xl-config/pv.cfg"))
        .extra(format!("test={test}"))
        .marker(format!("test: {test}"))
        .timeout_secs(90)
}

fn lines(o: &Outcome) -> impl Iterator<Item = &str> {
    o.console.lines().map(|l| l.trim_end_matches('\r'))
}

/// Numbers in `s` (digits, optionally with one `.`), in order.
fn numbers(s: &str) -> Vec<f64> {
    s.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.trim_matches('.').parse().ok())
        .collect()
}

fn line_with<'a>(o: &'a Outcome, prefix: &str) -> Result<&'a str, String> {
    lines(o)
        .find_map(|l| l.strip_prefix(prefix))
        .ok_or_else(|| format!("no console line starting with {prefix:?}"))
}

fn check_timer(o: &Outcome) -> Result<(), String> {
    // Concurrent deadlines: "timer: deadline 10ms -> fired at 10.3ms (#1)".
    let fired: Vec<(f64, f64)> = lines(o)
        .filter_map(|l| l.strip_prefix("timer: deadline "))
        .map(|l| {
            let n = numbers(l);
            (n[0], n[1])
        })
        .collect();
    let req: Vec<f64> = fired.iter().map(|f| f.0).collect();
    if req != [10.0, 30.0, 50.0] {
        return Err(format!("deadlines fired in order {req:?}, want 10, 30, 50"));
    }
    for (want, got) in &fired {
        if got < want || *got > want + 500.0 {
            return Err(format!("deadline {want}ms fired at {got}ms"));
        }
    }
    // Sequential sleeps: "timer: slept 10ms -> measured 10.2ms".
    let slept: Vec<(f64, f64)> = lines(o)
        .filter_map(|l| l.strip_prefix("timer: slept "))
        .map(|l| {
            let n = numbers(l);
            (n[0], n[1])
        })
        .collect();
    if slept.len() != 5 {
        return Err(format!("{} sleeps reported, want 5", slept.len()));
    }
    for (want, got) in &slept {
        // Rounded to 0.1 ms on the console.
        if *got + 0.05 < *want || *got > want + 500.0 {
            return Err(format!("sleep {want}ms measured {got}ms"));
        }
    }
    // Wall clock vs Dom0's `date -u +%s` taken when the line appeared.
    let wc = line_with(o, "wallclock: ")?;
    let guest = numbers(wc.split("unix ").nth(1).ok_or("no unix time")?)[0];
    let dom0: f64 = o
        .out_files
        .get("dom0-date")
        .ok_or("Dom0 script left no dom0-date")?
        .trim()
        .parse()
        .map_err(|e| format!("dom0-date: {e}"))?;
    if (guest - dom0).abs() > 5.0 {
        return Err(format!("guest wall clock {guest} vs Dom0 {dom0}"));
    }
    Ok(())
}

/// Records Dom0's clock as soon as the guest printed its wall clock.
const DATE_SCRIPT: &str = r#"
wait_console '^wallclock: ' 60
date -u +%s >"$OUT/dom0-date"
cat "$OUT/dom0-date"
"#;

fn check_events(o: &Outcome) -> Result<(), String> {
    // "events: 10000 sends -> 10000 handler calls, 10000 upcalls in N ms (R upcalls/s)"
    let l = line_with(o, "events: 10000 sends -> ")?;
    let n = numbers(l);
    if n[0] != 10000.0 || n[1] < 10000.0 {
        return Err(format!("handler calls / upcalls {l:?}"));
    }
    // "events: storm port A fired S times; victim port C fired at storm
    //  event 10, handled at H (...)"
    let l = line_with(o, "events: storm port ")?;
    let n = numbers(l);
    let (storm, fired_at, handled) = (n[1], n[3], n[4]);
    if handled < fired_at || handled > fired_at + 2.0 {
        return Err(format!(
            "victim handled at storm event {handled}, fired at {fired_at}"
        ));
    }
    if storm != handled + 100.0 {
        return Err(format!("storm ran {storm} times, want {}", handled + 100.0));
    }
    Ok(())
}

/// Dom0 side of `test=evtchn-echo`: read the port from the console, echo.
const ECHO_SCRIPT: &str = r#"
wait_console '^evtchn: port [0-9]+' 60
port=$(console_line '^evtchn: port [0-9]+' | sed 's/^evtchn: port \([0-9]*\).*/\1/')
"$FILES/xf-evtchn-echo" "$DOMID" "$port" 2000 --timeout-ms 30000 --start
"#;

fn check_echo(o: &Outcome) -> Result<(), String> {
    let g = line_with(o, "evtchn-echo: 2000 round trips in ")?;
    let guest_rate = numbers(g)[1];
    if !o
        .script_output
        .contains("evtchn-echo: absorbed the bind-time event, sent start")
    {
        return Err("peer did not absorb the bind-time event before starting".into());
    }
    let peer = o
        .script_output
        .lines()
        .find(|l| l.starts_with("evtchn-echo: 2000/2000 round trips"))
        .ok_or("peer did not report 2000/2000 round trips")?;
    let peer_rate = numbers(peer)[3];
    if guest_rate <= 0.0 || peer_rate <= 0.0 {
        return Err(format!("rates guest {guest_rate} peer {peer_rate}"));
    }
    Ok(())
}

fn fatal(name: &str, test: &str, line: &'static str) -> Scenario {
    pv(name, test)
        .marker(line)
        .shutdown(Some(Shutdown::Crash))
        .check(|o| {
            if o.console.contains("Test result:") {
                Err("a fatal trap must not print a verdict".into())
            } else {
                Ok(())
            }
        })
}

pub fn scenarios() -> Vec<Scenario> {
    vec![
        pv("pv-events-timer", "timer")
            .dom0_script(DATE_SCRIPT)
            .marker("Test result: SUCCESS")
            .script_status(0)
            .shutdown(Some(Shutdown::Poweroff))
            .check(check_timer),
        pv("pv-events-selftest", "events")
            .marker("Test result: SUCCESS")
            .shutdown(Some(Shutdown::Poweroff))
            .check(check_events),
        pv("pv-events-echo", "evtchn-echo")
            .timeout_secs(420)
            .file(
                root().join("target/release/xf-evtchn-echo"),
                "xf-evtchn-echo",
            )
            .dom0_script(ECHO_SCRIPT)
            .marker("Test result: SUCCESS")
            .script_status(0)
            .shutdown(Some(Shutdown::Poweroff))
            .check(check_echo),
        fatal(
            "pv-events-pagefault",
            "pagefault",
            "fatal: page fault at rip=",
        )
        .marker("cr2=0xdead0000)"),
        fatal(
            "pv-events-invalid-op",
            "invalid-op",
            "fatal: invalid opcode at rip=",
        ),
        fatal(
            "pv-events-divide",
            "divide-error",
            "fatal: divide error at rip=",
        ),
    ]
}
