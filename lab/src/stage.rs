//! Staging: the host-side checks of each scenario, its directory in the scenario
//! archive (`/scenarios/<n>` in Dom0: rewritten xl config, kernel, ramdisk, files,
//! script, meta), and the combined initrd (Dom0 image + that archive + the runner).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::run::FILE_CAP;
use crate::util::{self, qp, sh};
use crate::verdict::evaluate;
use crate::{cfg, image, LabError, Outcome, Scenario};

/// A scenario that passed the host checks and was staged.
pub struct Prepared {
    /// Its position in the suite (Dom0's `<n>`).
    pub idx: usize,
    /// The scenario.
    pub sc: Scenario,
    /// Its xl domain name, `xf<n>-<sanitized name>`.
    pub domain: String,
}

/// The staged suite.
pub struct Staged {
    /// One slot per scenario, in order: `Some` for those that failed the host checks
    /// (already evaluated), `None` for those to be run.
    pub outcomes: Vec<Option<Outcome>>,
    /// The scenarios to run, in order.
    pub prepared: Vec<Prepared>,
    /// The tree that becomes the overlay initrd (`scenarios/<n>/`, `lab/`).
    pub overlay: PathBuf,
}

/// Check and stage every scenario under `run_dir/overlay`. A scenario failing the checks
/// (or with a duplicate name) gets a `host check: ...` failure and is not shipped.
pub fn stage_all(scenarios: Vec<Scenario>, run_dir: &Path) -> Result<Staged, LabError> {
    let overlay = run_dir.join("overlay");
    util::io(
        std::fs::create_dir_all(overlay.join("scenarios")),
        run_dir.display(),
    )?;
    util::io(
        std::fs::create_dir_all(overlay.join("lab")),
        run_dir.display(),
    )?;
    let mut outcomes = Vec::new();
    let mut prepared = Vec::new();
    let mut seen = HashSet::new();
    for (n, sc) in scenarios.into_iter().enumerate() {
        let domain = format!("xf{n}-{}", sanitize(&sc.name));
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
                let mut o = Outcome {
                    name: sc.name.clone(),
                    domain,
                    ..Outcome::default()
                };
                o.failures.push(format!("host check: {e}"));
                evaluate(&sc, &mut o);
                outcomes.push(Some(o));
            }
        }
    }
    Ok(Staged {
        outcomes,
        prepared,
        overlay,
    })
}

/// The files of lab/dom0/ shipped with every suite, as `/lab/<name>` in Dom0.
pub const DOM0_FILES: &[&str] = &["runner.sh", "lib.sh"];

/// Write the manifest and the runner into the overlay, pack it and append it to the Dom0
/// image: `run_dir/initrd.cpio.gz`. The overlay tree is removed.
pub fn pack_initrd(s: &Staged, run_dir: &Path, dom0_initrd: &Path) -> Result<PathBuf, LabError> {
    let overlay = &s.overlay;
    let manifest: String = s.prepared.iter().map(|p| format!("{}\n", p.idx)).collect();
    util::io(
        std::fs::write(overlay.join("scenarios/manifest"), manifest),
        "manifest",
    )?;
    for f in DOM0_FILES {
        let src = util::lab_dir().join("dom0").join(f);
        util::io(
            std::fs::copy(&src, overlay.join("lab").join(f)),
            src.display(),
        )?;
    }
    let initrd = run_dir.join("initrd.cpio.gz");
    sh(&format!(
        "set -e; cd {ov}; chmod 755 lab/*; find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1 > ../overlay.cpio.gz; \
         cat {base} ../overlay.cpio.gz > {out}",
        ov = qp(overlay),
        base = qp(dom0_initrd),
        out = qp(&initrd)
    ))?;
    let _ = std::fs::remove_dir_all(overlay);
    Ok(initrd)
}

/// The scenario name as part of an xl domain name: `[A-Za-z0-9_-]`, at most 40 chars.
pub fn sanitize(s: &str) -> String {
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

/// Host-side checks and staging of one scenario into `dir` (= `/scenarios/<n>` in Dom0).
pub fn stage(sc: &Scenario, n: usize, domain: &str, dir: &Path) -> Result<(), String> {
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
    if let Some(s) = &sc.dom0_precreate {
        std::fs::write(dir.join("precreate"), s).map_err(err)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_names() {
        assert_eq!(sanitize("pv-boot hello/1"), "pv-boot-hello-1");
        assert_eq!(sanitize(&"x".repeat(50)).len(), 40);
    }

    #[test]
    fn host_checks_and_staging() {
        let t = std::env::temp_dir().join(format!("lab-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(&t).unwrap();
        let (kernel, cfg, file) = (t.join("kernel"), t.join("g.cfg"), t.join("helper"));
        std::fs::write(&kernel, b"\x7fELF\x02\x01\x01").unwrap();
        std::fs::write(
            &cfg,
            "name = \"g\"\ntype = \"pv\"\nkernel = \"k\"\nmemory = 32\n",
        )
        .unwrap();
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        let sc = |name: &str| Scenario::new(name, &kernel, &cfg);
        let run_dir = t.join("run");
        let s = stage_all(
            vec![
                sc("ok one")
                    .extra("test=hello")
                    .file(&file, "bin/helper")
                    .dom0_script("true")
                    .timeout_secs(7),
                sc("ok one"),
                Scenario::new("no kernel", t.join("nope"), &cfg),
                sc("bad key").config_line("no_such_key = 1"),
                sc("bad file").file(&file, "../x"),
                sc("no file").file(t.join("nope"), "x"),
                sc(" "),
            ],
            &run_dir,
        )
        .unwrap();
        assert_eq!(s.prepared.len(), 1);
        assert_eq!(s.prepared[0].domain, "xf0-ok-one");
        let fail = |i: usize| s.outcomes[i].as_ref().unwrap().failures[0].clone();
        assert!(s.outcomes[0].is_none());
        assert_eq!(fail(1), "host check: duplicate scenario name \"ok one\"");
        assert!(fail(2).starts_with("host check: kernel ") && fail(2).ends_with("does not exist"));
        assert!(
            fail(3).contains("unknown xl config key(s): no_such_key"),
            "{}",
            fail(3)
        );
        assert!(fail(4).starts_with("host check: bad file name \"../x\""));
        assert!(fail(5).contains("(for $FILES/x) does not exist"));
        assert_eq!(fail(6), "host check: scenario has an empty name");
        assert_eq!(s.outcomes[2].as_ref().unwrap().domain, "xf2-no-kernel");

        let d = s.overlay.join("scenarios/0");
        let cfg_text = std::fs::read_to_string(d.join("cfg")).unwrap();
        assert!(cfg_text.contains("name = \"xf0-ok-one\""), "{cfg_text}");
        assert!(
            cfg_text.contains("kernel = \"/scenarios/0/kernel\""),
            "{cfg_text}"
        );
        assert!(cfg_text.contains("on_crash = \"preserve\""), "{cfg_text}");
        assert!(cfg_text.contains("test=hello"), "{cfg_text}");
        assert_eq!(
            std::fs::read_to_string(d.join("meta")).unwrap(),
            format!("NAME='xf0-ok-one'\nTIMEOUT=7\nSCRIPT_WAIT=30\nCAP={FILE_CAP}\n")
        );
        assert_eq!(std::fs::read_to_string(d.join("script")).unwrap(), "true");
        assert!(d.join("files/bin/helper").exists() && d.join("kernel").exists());
        assert!(!s.overlay.join("scenarios/1").exists());
        let _ = std::fs::remove_dir_all(&t);
    }
}
