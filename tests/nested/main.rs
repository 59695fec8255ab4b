//! The nested-Xen lab test binary (`cargo test --test nested`, harness = false).
//!
//! One lab boot (Xen + Dom0 under QEMU TCG, see docs/lab.md) runs the scenarios of every
//! module listed in `MODULES`, one after another. Each module exposes
//! `pub fn scenarios() -> Vec<lab::Scenario>`; adding one is two lines: `mod name;` below
//! and an entry in `MODULES`. Each xenfront scenario on xl-config/pv.cfg is also run
//! as PVH (`pv-x` → `pvh-x`, other names get a `pvh-` prefix) unless the module
//! already declares that name (common::with_pvh_twins).
//!
//! Environment: `XF_ONLY=<substring>[,<substring>...]` runs only scenarios whose name
//! contains one of them; `XF_LAB_VERBOSE=1` streams guest consoles; `XF_LAB_SERIAL=1`
//! echoes the whole serial line. `--list` prints the scenario names.

use std::process::ExitCode;
use std::time::Instant;

use lab::Scenario;

mod apps;
mod bench;
mod blk;
mod common;
mod demo;
mod events;
mod figures;
mod hostile;
mod lab_selftest;
mod limits;
mod net;
mod peers_loopback;
mod pv_boot;
mod services;
mod soak;
mod vchan;

/// A scenario module: its name and its scenario list.
type Module = (&'static str, fn() -> Vec<Scenario>);

const MODULES: &[Module] = &[
    ("lab_selftest", lab_selftest::scenarios),
    ("events", events::scenarios),
    ("pv_boot", pv_boot::scenarios),
    ("peers_loopback", peers_loopback::scenarios),
    ("services", services::scenarios),
    ("demo", demo::scenarios),
    ("vchan", vchan::scenarios),
    ("soak", soak::scenarios),
    ("bench", bench::scenarios),
    ("apps", apps::scenarios),
    ("limits", limits::scenarios),
    ("hostile", hostile::scenarios),
    ("blk", blk::scenarios),
    ("net", net::scenarios),
];

fn main() -> ExitCode {
    let t0 = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only: Vec<String> = std::env::var("XF_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));

    let mut scenarios = Vec::new();
    for (module, f) in MODULES {
        // Every xenfront PV scenario also runs as PVH (tests/nested/common.rs).
        for s in common::with_pvh_twins(*f) {
            if wanted(&s.name) {
                if args.iter().any(|a| a == "--list") {
                    println!("{module}::{}: test", s.name);
                }
                scenarios.push(s);
            }
        }
    }
    if args.iter().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
    if scenarios.is_empty() {
        println!("nested: no scenario matches XF_ONLY={only:?}");
        return ExitCode::SUCCESS;
    }
    println!(
        "nested: running {} scenario(s) in one lab boot",
        scenarios.len()
    );

    let report = match lab::run_suite(scenarios) {
        Ok(r) => r,
        Err(e) => {
            if let lab::LabError::Failed { partial, .. } = &e {
                print!("{}", partial.summary());
            }
            println!("{e}");
            println!("nested: FAILED after {:.1}s", t0.elapsed().as_secs_f64());
            return ExitCode::FAILURE;
        }
    };

    println!();
    for o in &report.outcomes {
        println!(
            "test {} ... {}",
            o.name,
            if o.passed() {
                o.status().to_string()
            } else {
                format!("FAILED ({})", o.status())
            }
        );
        for t in &o.tolerated {
            println!("    {}: {t}", o.status());
        }
        if !o.passed() {
            for f in &o.failures {
                println!("    failure: {f}");
            }
            for f in &o.lab_faults {
                println!("    lab fault: {f}");
            }
            for n in &o.notes {
                println!("    note: {n}");
            }
            if !o.console.is_empty() {
                println!("    console (last 15 lines):");
                let lines: Vec<&str> = o.console.lines().collect();
                for l in &lines[lines.len().saturating_sub(15)..] {
                    println!("      | {}", l.trim_end_matches('\r'));
                }
            }
            if !o.script_output.is_empty() {
                println!("    dom0 script output:\n{}", o.script_output.trim_end());
            }
        }
    }
    println!();
    print!("{}", report.summary());
    print!("{}", common::boot_figures(&report.outcomes));
    print!("{}", figures::table(&report.outcomes));
    let failed = report.outcomes.iter().filter(|o| !o.passed()).count();
    let emulator = report
        .outcomes
        .iter()
        .filter(|o| o.emulator_fault.is_some())
        .count();
    println!(
        "nested: {} passed ({emulator} of them EMULATOR-FAULT: QEMU ran the guest with Xen's own state, docs/lab.md), {} failed, {} lab fault(s) outside scenarios; took {:.1}s",
        report.outcomes.len() - failed,
        failed,
        report.lab_faults.len(),
        t0.elapsed().as_secs_f64()
    );
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
