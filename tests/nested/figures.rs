//! Benchmark figures, printed side by side after a lab boot (never asserted:
//! speed is reported, not tested). Each figure is read from what a scenario
//! printed — the guest console, the Dom0 script output or an `$OUT` file —
//! so whatever ran in this boot is reported and the rest shows `-`.
//!
//! The xenfront and Linux columns come from the same lab boot, so they saw
//! the same emulated machine and the same host load.

use lab::Outcome;

/// One row: a label, the scenario per column (xenfront pv, xenfront pvh,
/// Linux pv), the text a line must contain and the unit the number precedes.
struct Row {
    label: &'static str,
    scenarios: [&'static str; 3],
    line: &'static str,
    unit: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        label: "event upcalls/s (loopback port)",
        scenarios: ["pv-events-selftest", "pvh-events-selftest", ""],
        line: "events: ",
        unit: "upcalls/s",
    },
    Row {
        label: "upcalls/s sustained (60 s soak)",
        scenarios: ["pv-soak", "pvh-soak", ""],
        line: "soak: done in ",
        unit: "upcalls/s",
    },
    Row {
        label: "evtchn round trips/s with Dom0",
        scenarios: ["pv-events-echo", "pvh-events-echo", ""],
        line: "evtchn-echo: ",
        unit: "round trips/s",
    },
    Row {
        label: "XenStore read round trips/s",
        scenarios: ["services-xenstore", "pvh-services-xenstore", ""],
        line: "xenstore: ",
        unit: "round trips/s",
    },
    Row {
        label: "grant+revoke ops/s",
        scenarios: ["services-grant", "pvh-services-grant", ""],
        line: "grant: ",
        unit: "ops/s)",
    },
    Row {
        label: "demo ring requests/s (guest front)",
        scenarios: ["pv-demo-front", "pvh-demo-front", ""],
        line: "demo-front: ",
        unit: "req/s",
    },
    Row {
        label: "demo notifications per request",
        scenarios: ["pv-demo-front", "pvh-demo-front", ""],
        line: "demo-front: ",
        unit: "per request",
    },
    Row {
        label: "demo ring requests/s (Dom0 front)",
        scenarios: ["pv-demo-back", "pvh-demo-back", ""],
        line: "ring-front: ",
        unit: "req/s",
    },
    Row {
        label: "vchan 16 MiB echo MB/s each way",
        scenarios: ["pv-vchan-server", "pvh-vchan-server", "linux-pv-vchan"],
        line: "vchan-pump: sent ",
        unit: "MB/s",
    },
    Row {
        label: "vchan round trips/s",
        scenarios: ["pv-vchan-server", "pvh-vchan-server", "linux-pv-vchan"],
        line: "vchan-pump: pings ",
        unit: "round trips/s",
    },
];

/// Every text the scenario left: console, Dom0 script output, `$OUT` files.
fn texts(o: &Outcome) -> impl Iterator<Item = &str> {
    [o.console.as_str(), o.script_output.as_str()]
        .into_iter()
        .chain(o.out_files.values().map(String::as_str))
}

/// The number right before `unit` on the first line containing both `line`
/// and `unit`.
pub fn number_before(text: &str, line: &str, unit: &str) -> Option<f64> {
    let l = text
        .lines()
        .find(|l| l.contains(line) && l.contains(unit))?;
    let before = &l[..l.find(unit)?];
    let tok = before.split_whitespace().last()?;
    tok.trim_start_matches('(').parse().ok()
}

fn figure(outcomes: &[Outcome], scenario: &str, line: &str, unit: &str) -> Option<f64> {
    let o = outcomes.iter().find(|o| o.name == scenario)?;
    texts(o).find_map(|t| number_before(t, line, unit))
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The figures table; empty if nothing in this boot produced a figure.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut body = String::new();
    for r in ROWS {
        let v: Vec<Option<f64>> = r
            .scenarios
            .iter()
            .map(|s| figure(outcomes, s, r.line, r.unit))
            .collect();
        if v.iter().all(Option::is_none) {
            continue;
        }
        let ratio = match (v[0], v[2]) {
            (Some(x), Some(l)) if l > 0.0 => format!("{:.2}x", x / l),
            _ => "-".into(),
        };
        body += &format!(
            "{:38} {:>12} {:>12} {:>12} {:>8}\n",
            r.label,
            cell(v[0]),
            cell(v[1]),
            cell(v[2]),
            ratio
        );
    }
    // Boot: the guest's own start (unpause → first console line) and the whole
    // `xl create` → first line, xenfront vs Debian's Linux in the same boot.
    type Timing = fn(&Outcome) -> Option<std::time::Duration>;
    // xenfront: the hello example (the test kernel if it did not run).
    let timings: [(&str, Timing); 2] = [
        ("boot: xl create -> 1st console line, s", |o| {
            o.t_create_first_line
        }),
        ("boot: xl unpause -> 1st console line, s", |o| {
            o.t_unpause_first_line
        }),
    ];
    for (label, t) in timings {
        let secs = |name: &str| {
            outcomes
                .iter()
                .find(|o| o.name == name && o.passed())
                .and_then(t)
                .map(|d| d.as_secs_f64())
        };
        let v = [
            secs("pv-app-hello").or_else(|| secs("pv-boot-hello")),
            secs("pvh-app-hello").or_else(|| secs("pvh-boot-hello")),
            secs("linux-pv-boot-baseline").or_else(|| secs("linux-pv")),
        ];
        if v.iter().all(Option::is_none) {
            continue;
        }
        let ratio = match (v[0], v[2]) {
            (Some(x), Some(l)) if l > 0.0 => format!("{:.2}x", x / l),
            _ => "-".into(),
        };
        body += &format!(
            "{:38} {:>12} {:>12} {:>12} {:>8}\n",
            label,
            cell(v[0]),
            cell(v[1]),
            cell(v[2]),
            ratio
        );
    }
    for (scenario, image) in [
        ("bench-memory", "test kernel"),
        ("bench-memory-hello", "hello"),
    ] {
        let Some(o) = outcomes.iter().find(|o| o.name.ends_with(scenario)) else {
            continue;
        };
        let min = |mode: &str| {
            o.out_files
                .get(&format!("min-memory-{mode}"))
                .map(|s| s.trim().to_string())
        };
        body += &format!(
            "{:38} {:>12} {:>12}\n",
            format!("smallest memory= ({image}), MiB"),
            min("pv").unwrap_or_else(|| "-".into()),
            min("pvh").unwrap_or_else(|| "-".into())
        );
    }
    for name in ["hello", "vchan-echo", "ring-demo", "xenfront-test"] {
        if let Some(n) = stripped_size(&crate::apps::image(name)) {
            body += &format!("{:38} {:>12}\n", format!("image {name}, stripped bytes"), n);
        }
    }
    if body.is_empty() {
        return body;
    }
    format!(
        "figures (same lab boot):\n{:38} {:>12} {:>12} {:>12} {:>8}\n{body}",
        "", "xenfront pv", "xenfront pvh", "linux pv", "xf/linux"
    )
}

/// Size of `elf` after `strip --strip-all` (binutils), if it can be had.
fn stripped_size(elf: &std::path::Path) -> Option<u64> {
    let out = std::env::temp_dir().join(format!(
        "xf-fig-{}-{}",
        std::process::id(),
        elf.file_name()?.to_string_lossy()
    ));
    let ok = std::process::Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(&out)
        .arg(elf)
        .status()
        .ok()?
        .success();
    let n = std::fs::metadata(&out).ok().map(|m| m.len());
    let _ = std::fs::remove_file(&out);
    n.filter(|_| ok)
}
