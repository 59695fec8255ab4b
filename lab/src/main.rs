//! `lab` CLI: fetch/build the cached lab inputs, regenerate the package lock, or boot the
//! lab with one scenario and stream the guest console.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lab::{image, pkgs, LabError, RunOptions, Scenario, Shutdown};

const USAGE: &str = "usage:
  lab run --kernel ELF --config CFG [--extra STR] [--timeout SECS] [--ramdisk FILE]
          [--precreate SH]
        (the kernel may also be given as a bare path); SH runs in Dom0 before
        xl create (e.g. to make the config's disk images)
        boot the lab with one scenario, stream the guest console to stdout;
        exit 0 iff the guest powered off (1: it did not, 2: bad input, 3: lab failure)
  lab fetch     download + verify the locked Debian packages (~/.cache/xenfront/debs)
  lab build     fetch, then build (or reuse) the cached Dom0 image and baseline initrd
  lab lock      re-resolve lab/packages.list with apt and rewrite lab/packages.lock";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let r = match cmd.as_str() {
        "run" => return run(&args[1..]),
        "fetch" => pkgs::fetch_verified().map(|l| {
            println!(
                "{} packages verified in {}",
                l.len(),
                pkgs::debs_dir().display()
            )
        }),
        "build" => image::prepare().and_then(|a| {
            let i = image::baseline_initrd(&a)?;
            println!(
                "xen:        {}\nvmlinuz:    {}\ndom0 image: {}\nguest initrd: {}",
                a.xen.display(),
                a.vmlinuz.display(),
                a.dom0_initrd.display(),
                i.display()
            );
            Ok(())
        }),
        "lock" => pkgs::regenerate_lock().map(|l| {
            println!(
                "wrote {} ({} packages)",
                pkgs::lock_path().display(),
                l.len()
            )
        }),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("unknown command {cmd:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(3)
        }
    }
}

fn run(args: &[String]) -> ExitCode {
    let (mut kernel, mut config, mut extra, mut timeout, mut ramdisk, mut precreate) =
        (None, None, None, 120u64, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        let r: Result<(), String> = (|| {
            match a.as_str() {
                "--kernel" => kernel = Some(PathBuf::from(val()?)),
                "--config" => config = Some(PathBuf::from(val()?)),
                "--extra" => extra = Some(val()?),
                "--ramdisk" => ramdisk = Some(PathBuf::from(val()?)),
                "--precreate" => precreate = Some(val()?),
                "--timeout" => {
                    timeout = val()?
                        .parse()
                        .map_err(|_| "--timeout needs whole seconds".to_string())?
                }
                // A bare path is the kernel (so `lab run` can serve as a cargo runner).
                p if !p.starts_with('-') && kernel.is_none() => kernel = Some(PathBuf::from(p)),
                _ => return Err(format!("unknown argument {a:?}")),
            }
            Ok(())
        })();
        if let Err(e) = r {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let (Some(kernel), Some(config)) = (kernel, config) else {
        eprintln!("error: --kernel and --config are required\n{USAGE}");
        return ExitCode::from(2);
    };
    let mut sc = Scenario::new("run", kernel, config)
        .timeout(Duration::from_secs(timeout))
        .shutdown(Some(Shutdown::Poweroff));
    if let Some(e) = extra {
        sc = sc.extra(e);
    }
    if let Some(r) = ramdisk {
        sc = sc.ramdisk(r);
    }
    if let Some(p) = precreate {
        sc = sc.dom0_precreate(p);
    }
    let mut opts = RunOptions::from_env();
    opts.on_console = Some(Box::new(|_, l| println!("{l}")));
    match lab::run_suite_with(vec![sc], opts) {
        Ok(report) => {
            let o = &report.outcomes[0];
            if o.failures.iter().any(|f| f.starts_with("host check:")) {
                eprintln!("error: {}", o.failures.join("; "));
                return ExitCode::from(2);
            }
            eprint!("{}", report.summary());
            if !o.lab_faults.is_empty() || !report.lab_faults.is_empty() {
                eprintln!(
                    "warning: lab faults were seen (see above); results may not be trustworthy"
                );
            }
            if o.shutdown == Some(Shutdown::Poweroff) {
                ExitCode::SUCCESS
            } else {
                eprintln!("guest did not power off: {}", o.failures.join("; "));
                ExitCode::from(1)
            }
        }
        Err(e) => {
            if let LabError::Failed { partial, .. } = &e {
                eprint!("{}", partial.summary());
            }
            eprintln!("{e}");
            ExitCode::from(3)
        }
    }
}
