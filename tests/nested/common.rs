//! Shared helpers for xenfront scenarios: one declaration, run as PV and as
//! PVH from the same ELF.
//!
//! ```ignore
//! use crate::common::{for_each_mode, Mode};
//! pub fn scenarios() -> Vec<Scenario> {
//!     for_each_mode(|m| m.scenario("boot-hello").extra("test=hello").marker("Test result: SUCCESS"))
//! }
//! ```
//! gives `pv-boot-hello` (xl-config/pv.cfg) and `pvh-boot-hello`
//! (xl-config/pvh.cfg), both expecting the banner `booting (pv|pvh)`.
//! `XF_ONLY=pvh-` runs only the PVH variants.
//!
//! Modules that only declare PV scenarios still get PVH runs: main.rs passes
//! every module through [`with_pvh_twins`], which adds the PVH twin of each
//! xenfront PV scenario (same markers, script and checks).

use std::path::PathBuf;

use lab::{Outcome, Scenario};

/// How the guest is started (`type=` in the xl config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pv,
    Pvh,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Pv, Mode::Pvh];

    /// `pv` / `pvh`: scenario name prefix and the word in the banner.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pv => "pv",
            Mode::Pvh => "pvh",
        }
    }

    /// The repo's xl config for this mode.
    pub fn config(self) -> PathBuf {
        root().join(format!("xl-config/{}.cfg", self.name()))
    }

    /// The kernel's first console line in this mode.
    pub fn banner(self) -> String {
        format!(
            "xenfront {}: booting ({})",
            env!("CARGO_PKG_VERSION"),
            self.name()
        )
    }

    /// Scenario `<mode>-<name>`: the xenfront ELF with this mode's config,
    /// 60 s timeout, banner marker.
    pub fn scenario(self, name: &str) -> Scenario {
        Scenario::new(format!("{}-{name}", self.name()), kernel(), self.config())
            .timeout_secs(60)
            .marker(self.banner())
    }
}

/// The same scenario for every mode, PV first.
#[allow(dead_code)] // offered to the other scenario modules
pub fn for_each_mode(f: impl Fn(Mode) -> Scenario) -> Vec<Scenario> {
    Mode::ALL.into_iter().map(f).collect()
}

/// The same list of scenarios for every mode: all PV ones, then all PVH.
pub fn for_each_mode_many(f: impl Fn(Mode) -> Vec<Scenario>) -> Vec<Scenario> {
    Mode::ALL.into_iter().flat_map(f).collect()
}

/// The PVH variant of a xenfront PV scenario (config xl-config/pv.cfg):
/// `pv-x` becomes `pvh-x` (any other name gets a `pvh-` prefix), the config
/// xl-config/pvh.cfg, the banner marker `booting (pvh)`; every other marker,
/// the script and the checks stay the same. None for anything else.
pub fn pvh_twin(mut s: Scenario) -> Option<Scenario> {
    if s.config != Mode::Pv.config() || s.kernel != kernel() {
        return None;
    }
    let rest = s.name.strip_prefix("pv-").unwrap_or(&s.name);
    s.name = format!("pvh-{rest}");
    s.config = Mode::Pvh.config();
    for m in &mut s.expect.markers {
        if *m == Mode::Pv.banner() {
            *m = Mode::Pvh.banner();
        }
    }
    Some(s)
}

/// A module's scenarios, each xenfront PV one followed by its PVH twin
/// ([`pvh_twin`]) unless the module already has a scenario of that name.
pub fn with_pvh_twins(f: fn() -> Vec<Scenario>) -> Vec<Scenario> {
    let first = f();
    let names: Vec<String> = first.iter().map(|s| s.name.clone()).collect();
    let mut out = Vec::new();
    for (s, again) in first.into_iter().zip(f()) {
        out.push(s);
        if let Some(t) = pvh_twin(again).filter(|t| !names.contains(&t.name)) {
            out.push(t);
        }
    }
    out
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The one kernel image both modes boot.
pub fn kernel() -> PathBuf {
    root().join("target/x86_64-unknown-none/release/xenfront-test")
}

/// A Dom0 peer binary (peers/, `cargo build --release -p xen-peers`).
pub fn peer(name: &str) -> PathBuf {
    root().join("target/release").join(name)
}

/// Console lines, without `\r`.
pub fn lines(o: &Outcome) -> impl Iterator<Item = &str> {
    o.console.lines().map(|l| l.trim_end_matches('\r'))
}

/// The console line starting with `prefix`, without it.
pub fn line<'a>(o: &'a Outcome, prefix: &str) -> Result<&'a str, String> {
    lines(o)
        .find_map(|l| l.strip_prefix(prefix))
        .ok_or_else(|| format!("no console line starting with {prefix:?}"))
}

/// An `$OUT` file the Dom0 script left, without trailing whitespace.
pub fn out<'a>(o: &'a Outcome, name: &str) -> Result<&'a str, String> {
    o.out_files
        .get(name)
        .map(|s| s.trim_end())
        .ok_or_else(|| format!("Dom0 script left no {name}"))
}

/// Boot figures side by side: xenfront PV vs PVH vs the Linux baseline,
/// from whichever of these scenarios ran in this lab boot. Empty if none.
pub fn boot_figures(outcomes: &[Outcome]) -> String {
    const ROWS: &[(&str, &[&str])] = &[
        ("xenfront pv", &["pv-boot-hello"]),
        ("xenfront pvh", &["pvh-boot-hello"]),
        ("hello pv", &["pv-app-hello"]),
        ("hello pvh", &["pvh-app-hello"]),
        ("linux pv", &["linux-pv-boot-baseline", "linux-pv"]),
        ("linux pvh", &["linux-pvh-boot-baseline", "linux-pvh"]),
    ];
    let ms = |d: Option<std::time::Duration>| {
        d.map(|d| format!("{:.2}s", d.as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    };
    let mut s = String::new();
    for (label, names) in ROWS {
        let Some(o) = names
            .iter()
            .find_map(|n| outcomes.iter().find(|o| o.name == *n))
        else {
            continue;
        };
        s += &format!(
            "{label:14}  {:>12}  {:>13}  {:>9}  {}\n",
            ms(o.t_create_first_line),
            ms(o.t_unpause_first_line),
            ms(o.t_gone),
            o.name
        );
    }
    if s.is_empty() {
        return s;
    }
    format!(
        "boot figures (same lab boot):\n{:14}  {:>12}  {:>13}  {:>9}  scenario\n{s}",
        "guest", "create→1st", "unpause→1st", "→gone"
    )
}

/// Connect/disconnect cycles of the cycle scenarios: `XF_CYCLES`, else the
/// scenario's CI `default` (`./xf bench` runs 1,000).
pub fn cycles(default: u32) -> u32 {
    std::env::var("XF_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// `<who>: resources after <n> connections: <r>; after the first: <r0>`
/// (tests/kernel/src/channels.rs `Resources`): grants, deferred grants,
/// free pages and open event channels equal after the first connection
/// and after the last. Returns the line.
pub fn check_resources<'a>(o: &'a Outcome, who: &str) -> Result<&'a str, String> {
    let l = line(o, &format!("{who}: resources after "))?;
    let (last, first) = l
        .split_once(": ")
        .and_then(|(_, r)| r.split_once("; after the first: "))
        .ok_or_else(|| format!("resources line {l:?}"))?;
    if last != first {
        return Err(format!("{who}: resources not back to baseline: {l:?}"));
    }
    Ok(l)
}
