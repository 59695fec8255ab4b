//! xl config validation and rewriting (host side).

use std::path::{Path, PathBuf};

/// Keys accepted by xl in Xen 4.17 (xl.cfg(5)); anything else is rejected before boot.
pub const KNOWN_KEYS: &[&str] = &[
    "name",
    "uuid",
    "type",
    "builder",
    "pvh",
    "pool",
    "vcpus",
    "maxvcpus",
    "cpus",
    "cpus_soft",
    "cpu_weight",
    "cap",
    "memory",
    "maxmem",
    "vnuma",
    "on_poweroff",
    "on_reboot",
    "on_watchdog",
    "on_crash",
    "on_soft_reset",
    "direct_io_safe",
    "e820_host",
    "driver_domain",
    "device_tree",
    "passthrough",
    "xend_suspend_evtchn_compat",
    "vmtrace_buf_kb",
    "vpmu",
    "kernel",
    "ramdisk",
    "cmdline",
    "root",
    "extra",
    "bootloader",
    "bootloader_args",
    "firmware",
    "pvshim",
    "pvshim_path",
    "pvshim_cmdline",
    "pvshim_extra",
    "disk",
    "vif",
    "vtpm",
    "vfb",
    "channel",
    "rdm",
    "usbctrl",
    "usbdev",
    "pci",
    "pci_permissive",
    "pci_msitranslate",
    "pci_seize",
    "pci_power_mgmt",
    "gfx_passthru",
    "rdm_mem_boundary",
    "ioports",
    "iomem",
    "irqs",
    "max_grant_frames",
    "max_maptrack_frames",
    "max_grant_version",
    "max_event_channels",
    "nomigrate",
    "dtdev",
    "p9",
    "pvcalls",
    "vdispl",
    "vsnd",
    "vkb",
    "virtio",
    "tee",
    "gic_version",
    "vuart",
    "nr_spis",
    "mca_caps",
    "acpi",
    "acpi_s3",
    "acpi_s4",
    "acpi_laptop_slate",
    "apic",
    "pae",
    "hap",
    "oos",
    "shadow_memory",
    "nestedhvm",
    "altp2m",
    "altp2mhvm",
    "hpet",
    "viridian",
    "timer_mode",
    "tsc_mode",
    "localtime",
    "rtc_timeoffset",
    "vpt_align",
    "serial",
    "vga",
    "videoram",
    "stdvga",
    "vnc",
    "vnclisten",
    "vncdisplay",
    "vncunused",
    "vncpasswd",
    "keymap",
    "sdl",
    "opengl",
    "display",
    "xauthority",
    "nographic",
    "spice",
    "spicehost",
    "spiceport",
    "spicetls_port",
    "spicedisable_ticketing",
    "spicepasswd",
    "spiceagent_mouse",
    "spicevdagent",
    "spice_clipboard_sharing",
    "spiceusbredirection",
    "spice_image_compression",
    "spice_streaming_video",
    "boot",
    "soundhw",
    "usb",
    "usbdevice",
    "vkb_device",
    "xen_platform_pci",
    "device_model_version",
    "device_model_override",
    "device_model_stubdomain_override",
    "device_model_stubdomain_seclabel",
    "device_model_args",
    "device_model_args_pv",
    "device_model_args_hvm",
    "device_model_user",
    "stubdomain_kernel",
    "stubdomain_ramdisk",
    "stubdomain_memory",
    "cpuid",
    "seclabel",
    "init_seclabel",
    "bios",
    "bios_path_override",
    "smbios_firmware",
    "acpi_firmware",
    "ms_vm_genid",
    "hdtype",
    "mmio_hole",
    "dm_restrict",
    "vcpu_hard_affinity",
    "vcpu_soft_affinity",
    "sched",
    "suppress_vmdesc",
    "trap_unmapped_accesses",
    "vencrypt",
    "arm_sve_vl",
    "qxl",
];

/// One `key = value` statement of an xl config (value as written, quotes kept).
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The key.
    pub key: String,
    /// The value as written (quotes kept).
    pub value: String,
}

/// Parse an xl config into statements. Handles `#` comments, quotes, multi-line lists, `;`.
pub fn parse(text: &str) -> Result<Vec<Stmt>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut quote, mut comment) = (0i32, None::<char>, false);
    let mut line = 1;
    let mut start_line = 1;
    let flush = |cur: &mut String, start_line: usize, out: &mut Vec<Stmt>| -> Result<(), String> {
        let s = cur.trim();
        if !s.is_empty() {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| format!("line {start_line}: expected `key = value`, got `{s}`"))?;
            let key = k.trim().to_string();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("line {start_line}: bad key `{}`", k.trim()));
            }
            out.push(Stmt {
                key,
                value: v.trim().to_string(),
            });
        }
        cur.clear();
        Ok(())
    };
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            comment = false;
        }
        if comment {
            continue;
        }
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => {
                comment = true;
                continue;
            }
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            (None, '\n' | ';') if depth <= 0 => {
                flush(&mut cur, start_line, &mut out)?;
                start_line = line;
                continue;
            }
            _ => {}
        }
        if cur.trim().is_empty() {
            start_line = line;
        }
        cur.push(c);
    }
    if quote.is_some() {
        return Err("unterminated string".into());
    }
    flush(&mut cur, start_line, &mut out)?;
    Ok(out)
}

/// Keys in `stmts` that xl does not know.
pub fn unknown_keys(stmts: &[Stmt]) -> Vec<String> {
    stmts
        .iter()
        .filter(|s| !KNOWN_KEYS.contains(&s.key.as_str()))
        .map(|s| s.key.clone())
        .collect()
}

/// Strip one level of quotes from a config value.
pub fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2
        && (v.starts_with('"') && v.ends_with('"') || v.starts_with('\'') && v.ends_with('\''))
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The config as the Dom0 runner gets it.
pub struct Rewritten {
    /// The rewritten config text.
    pub text: String,
    /// `ramdisk=` of the original config, resolved against the config's directory.
    pub cfg_ramdisk: Option<PathBuf>,
}

/// Rewrite a config for the lab: kernel=/ramdisk= point at the shipped copies, name= is the
/// lab's domain name, `extra` is appended to the config's own extra=, and every on_* action
/// is "preserve" so the runner can read the shutdown reason. `@FILES@` in values becomes
/// the Dom0 path of the scenario's shipped files.
pub fn rewrite(
    stmts: &[Stmt],
    cfg_dir: &Path,
    dom_name: &str,
    kernel: &str,
    ramdisk: Option<&str>,
    extra: Option<&str>,
    files_dir: &str,
) -> Rewritten {
    let mut lines = Vec::new();
    let mut cfg_extra = None;
    let mut cfg_ramdisk = None;
    for s in stmts {
        match s.key.as_str() {
            "name" | "kernel" | "on_poweroff" | "on_reboot" | "on_crash" | "on_watchdog"
            | "on_soft_reset" => {}
            "ramdisk" => {
                let p = PathBuf::from(unquote(&s.value));
                cfg_ramdisk = Some(if p.is_absolute() { p } else { cfg_dir.join(p) });
            }
            "extra" | "cmdline" => cfg_extra = Some(unquote(&s.value)),
            _ => lines.push(format!(
                "{} = {}",
                s.key,
                s.value.replace("@FILES@", files_dir)
            )),
        }
    }
    lines.insert(0, format!("name = {}", quote(dom_name)));
    lines.insert(1, format!("kernel = {}", quote(kernel)));
    if let Some(r) = ramdisk {
        lines.push(format!("ramdisk = {}", quote(r)));
    }
    let extra = match (cfg_extra, extra) {
        (Some(a), Some(b)) => Some(format!("{a} {b}")),
        (a, b) => a.or(b.map(str::to_string)),
    };
    if let Some(e) = extra {
        lines.push(format!("extra = {}", quote(&e)));
    }
    for k in [
        "on_poweroff",
        "on_reboot",
        "on_crash",
        "on_watchdog",
        "on_soft_reset",
    ] {
        lines.push(format!("{k} = \"preserve\""));
    }
    Rewritten {
        text: lines.join("\n") + "\n",
        cfg_ramdisk,
    }
}

/// pCPU the lab pins HVM/PVH guests to (`cpus=`), unless their config pins them itself.
///
/// Why: under QEMU TCG's emulated SVM, an HVM/PVH vCPU that Xen runs on pCPU 0 is now and
/// then entered with Xen's *own* register state (RIP just past Xen's `vmrun`, Xen's CS,
/// stack, CR3, GDT and IDT — read back with `xen-hvmctx` from the dead guest), takes a
/// fault on its first instruction and dies with "Triple fault". Seen under QEMU 7.2 and
/// 10.0.2 within seconds on pCPU 0, not in soaks of 240 s (7.2) and 600 s (10.0.2) on
/// pCPU 1 (docs/lab.md, "PVH guests: the emulator's world-switch fault").
/// `XF_LAB_HVM_CPUS` overrides it; `any` turns the pin off.
pub const HVM_PCPU: &str = "1";

/// The `cpus = "..."` line to add to an HVM/PVH guest's config (`type` pvh or hvm, no
/// `cpus` of its own), or None. `pin` is the pCPU list, `any` or empty for no pin.
pub fn hvm_pin(stmts: &[Stmt], pin: &str) -> Option<String> {
    let ty = stmts
        .iter()
        .rev()
        .find(|s| s.key == "type")
        .map(|s| unquote(&s.value));
    let hvm = matches!(ty.as_deref(), Some("pvh" | "hvm"));
    let pinned = stmts.iter().any(|s| s.key == "cpus");
    let pin = pin.trim();
    (hvm && !pinned && !pin.is_empty() && pin != "any").then(|| format!("cpus = {}", quote(pin)))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_and_rewrite() {
        let t = "# c\nname = \"a\" # x\nmemory=128\ndisk = [ 'a=b,c',\n 'x' ]\nextra=\"console=hvc0\"; vcpus=1\n";
        let s = parse(t).unwrap();
        let keys: Vec<_> = s.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["name", "memory", "disk", "extra", "vcpus"]);
        assert!(unknown_keys(&s).is_empty());
        let r = rewrite(&s, Path::new("/"), "xf0-a", "/k", None, Some("foo=1"), "/f");
        assert!(r.text.contains("extra = \"console=hvc0 foo=1\""));
        assert!(r.text.contains("on_crash = \"preserve\""));
        assert!(unknown_keys(&parse("bogus_key = 1").unwrap()) == ["bogus_key"]);
    }

    #[test]
    fn hvm_guests_are_pinned() {
        let pvh = parse("type = \"pvh\"\nmemory = 32\n").unwrap();
        assert_eq!(hvm_pin(&pvh, "1").as_deref(), Some("cpus = \"1\""));
        assert_eq!(hvm_pin(&pvh, "any"), None);
        assert_eq!(hvm_pin(&pvh, ""), None);
        let own = parse("type = \"pvh\"\ncpus = \"0\"\n").unwrap();
        assert_eq!(hvm_pin(&own, "1"), None, "a config's own cpus= wins");
        let pv = parse("type = \"pv\"\n").unwrap();
        assert_eq!(hvm_pin(&pv, "1"), None);
        assert_eq!(hvm_pin(&parse("memory = 32\n").unwrap(), "1"), None);
        assert_eq!(
            hvm_pin(&parse("type = 'hvm'\n").unwrap(), "1").as_deref(),
            Some("cpus = \"1\"")
        );
    }
}
