//! Issues 5 and 7: the kernel boots as a PV and as a PVH guest (the same
//! ELF), prints its banner with values read at run time, and shuts down with a
//! reason Dom0 can read. Each scenario is declared once and instantiated for
//! both modes (`pv-boot-hello`, `pvh-boot-hello`, ...; tests/nested/common.rs).
//! Console format: docs/console.md. Run: `XF_ONLY=boot cargo test --test nested`
//! (adds the Linux PV/PVH baselines for the boot-figures table).

use lab::{baseline, Outcome, Scenario, Shutdown};

use crate::common::{for_each_mode_many, line, Mode};

/// `memory=` of the mode's xl config, in MiB.
fn config_memory_mib(mode: Mode) -> u64 {
    let text = std::fs::read_to_string(mode.config()).unwrap();
    text.lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "memory")
        .and_then(|(_, v)| v.trim().trim_matches('"').parse().ok())
        .expect("memory= in the xl config")
}

/// Value of `key : value` in `xl info` output.
fn xl_info<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

fn check_hello(mode: Mode, o: &Outcome) -> Result<(), String> {
    // Xen version as the guest saw it == what Dom0's xl reports.
    let info = o
        .out_files
        .get("xl-info")
        .ok_or("Dom0 script left no xl-info")?;
    let want = format!(
        "{}.{}{}",
        xl_info(info, "xen_major").ok_or("xl info: no xen_major")?,
        xl_info(info, "xen_minor").ok_or("xl info: no xen_minor")?,
        xl_info(info, "xen_extra").unwrap_or("")
    );
    let got = line(o, "xen: version ")?;
    if got != want {
        return Err(format!("guest saw Xen {got:?}, xl info says {want:?}"));
    }
    // The boot info line (PV: start_info, PVH: hvm_start_info), with
    // nr_pages == memory= in 4 KiB pages (PVH: RAM in the E820 map).
    let (prefix, want_start) = match mode {
        Mode::Pv => ("start_info: ", "magic \"xen-3.0-x86_64\" "),
        Mode::Pvh => ("hvm_start_info: ", "magic 0x336ec578 version 1 "),
    };
    let si = line(o, prefix)?;
    if !si.starts_with(want_start) {
        return Err(format!("unexpected {prefix}line {si:?}"));
    }
    let nr: u64 = si
        .split_whitespace()
        .skip_while(|w| *w != "nr_pages")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no nr_pages in {si:?}"))?;
    let want_pages = config_memory_mib(mode) * 256;
    if nr != want_pages {
        return Err(format!("nr_pages {nr}, memory= says {want_pages}"));
    }
    // Exactly one verdict, and it is the last line.
    let verdicts = o.console.matches("Test result: ").count();
    if verdicts != 1 {
        return Err(format!("{verdicts} 'Test result:' lines"));
    }
    let last = o.console.trim_end().lines().last().unwrap_or("");
    if last.trim_end_matches('\r') != "Test result: SUCCESS" {
        return Err(format!("last console line is {last:?}"));
    }
    Ok(())
}

/// Dom0 side of `test=echo`: wait for the guest to ask, then type a line
/// into the guest's console pty (xenconsoled forwards it into the in ring).
const ECHO_SCRIPT: &str = r#"
wait_console 'echo: ready' 30
tty=$(xenstore-read /local/domain/$DOMID/console/tty) || exit 2
echo "console tty: $tty"
printf 'ping from dom0\r' >"$tty"
"#;

/// One mode's boot scenarios.
fn boot(mode: Mode) -> Vec<Scenario> {
    vec![
        mode.scenario("boot-hello")
            .extra("test=hello")
            .dom0_script("xl info >\"$OUT/xl-info\"")
            .marker("cmdline: \"test=hello\"")
            .marker("test: hello")
            .marker("Test result: SUCCESS")
            .shutdown(Some(Shutdown::Poweroff))
            .check(move |o| check_hello(mode, o)),
        mode.scenario("boot-panic")
            .extra("test=panic")
            .marker("test: panic")
            .marker("panic: test=panic: deliberate panic at tests/kernel/src/scenario.rs:")
            .shutdown(Some(Shutdown::Crash))
            .check(|o| {
                if o.console.contains("Test result:") {
                    Err("a panicking run must not print a verdict".into())
                } else {
                    Ok(())
                }
            }),
        mode.scenario("boot-bad-cmdline")
            .extra("bogus")
            .marker("cmdline: \"bogus\"")
            .marker("error: cmdline: unknown option 'bogus'")
            .marker("Test result: ERROR")
            .shutdown(Some(Shutdown::Crash)),
        mode.scenario("boot-echo")
            .extra("test=echo")
            .dom0_script(ECHO_SCRIPT)
            .marker("echo: ready")
            .marker("echo: \"ping from dom0\"")
            .marker("Test result: SUCCESS")
            .script_status(0)
            .shutdown(Some(Shutdown::Poweroff)),
    ]
}

pub fn scenarios() -> Vec<Scenario> {
    let mut v = for_each_mode_many(boot);
    // Linux baselines for the boot-figures table (same lab boot).
    let mut lpv = baseline::linux_pv();
    lpv.name = "linux-pv-boot-baseline".into();
    let mut lpvh = baseline::linux_pvh();
    lpvh.name = "linux-pvh-boot-baseline".into();
    v.push(lpv);
    v.push(lpvh);
    v
}
