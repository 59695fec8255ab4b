//! Size benchmark: the smallest `memory=` (MiB) with which xenfront still
//! boots to `Test result: SUCCESS`, as PV and as PVH. The scenario's own guest
//! idles (`test=idle`) while its Dom0 script creates probe domains from the
//! very same ELF with less and less memory; the first size that fails ends
//! the descent. Reported by figures.rs, never asserted beyond "the default
//! 32 MiB boots". PVH probes get `shadow_memory=2`: libxl sizes the HAP pool
//! from memory=, and below ~16 MiB that pool is smaller than Xen accepts
//! ("Failed to set paging mempool size"), which says nothing about the guest.

use lab::{Outcome, Scenario, Shutdown};

use crate::common::Mode;

const PROBE: &str = r#"
set -u
K=${PROBE_KERNEL:-$SCENARIO_DIR/kernel}
MARK=${PROBE_MARK:-Test result: SUCCESS}
probe() {
  n=xfmem-$1-$2
  cat > /tmp/$n.cfg <<EOC
name="$n"
type="$1"
kernel="$K"
memory=$2
$( [ $1 = pvh ] && echo "shadow_memory=2" )
extra="test=hello"
on_poweroff="preserve"
on_crash="preserve"
on_reboot="preserve"
EOC
  log=/var/log/xen/console/guest-$n.log
  rm -f "$log"
  if ! xl create "/tmp/$n.cfg" >"/tmp/$n.out" 2>&1; then
    echo "$1 memory=$2: create refused: $(grep -v destroy /tmp/$n.out | grep -m 2 -i error | tr '\n' ' ')"
    return 1
  fi
  res=fails
  i=0
  while [ $i -lt 100 ]; do
    if grep -q "$MARK" "$log" 2>/dev/null; then res=boots; break; fi
    st=$(xl list "$n" 2>/dev/null | awk 'NR==2 {print $5}')
    case "$st" in *c*|*s*) break ;; esac
    sleep 0.2
    i=$((i+1))
  done
  xl destroy "$n" 2>/dev/null
  echo "$1 memory=$2: $res"
  [ $res = boots ]
}
for mode in pv pvh; do
  min=-
  for m in 32 8 6 4 3 2; do
    if probe $mode $m; then min=$m; else break; fi
  done
  echo "$min" > "$OUT/min-memory-$mode"
done
xl shutdown "$DOMID"
"#;

fn check(o: &Outcome) -> Result<(), String> {
    for l in o.script_output.lines().filter(|l| l.contains(" memory=")) {
        println!("    probe: {l}");
    }
    for mode in ["pv", "pvh"] {
        let min = o
            .out_files
            .get(&format!("min-memory-{mode}"))
            .map(|s| s.trim())
            .ok_or_else(|| format!("no min-memory-{mode} from the probe"))?;
        let mib: u32 = min
            .parse()
            .map_err(|_| format!("{mode}: even memory=32 did not boot ({min:?})"))?;
        println!("    figure: smallest memory= that boots as {mode}: {mib} MiB");
    }
    Ok(())
}

pub fn scenarios() -> Vec<Scenario> {
    // Declared with the PVH config so that they are not twinned: the
    // script probes both modes itself while the scenario's guest idles.
    let idle = |name: &str| {
        Mode::Pvh
            .scenario(name)
            .extra("test=idle")
            .timeout_secs(300)
            .marker("ready")
            .shutdown(Some(Shutdown::Poweroff))
            .script_status(0)
            .check(check)
    };
    vec![
        idle("bench-memory").dom0_script(PROBE),
        // The smallest appliance: the hello example, shipped as a file.
        idle("bench-memory-hello")
            .file(crate::apps::image("hello"), "hello")
            .dom0_script(format!(
                "PROBE_KERNEL=$FILES/hello\nPROBE_MARK='hello: done'\n{PROBE}"
            )),
    ]
}
