#!/usr/bin/env bash
# The emulator matrix of docs/lab.md: PVH soaks under each QEMU build and TCG
# threading mode, unpinned and pinned to pCPU 1, one lab boot per setting.
#
#   lab/scripts/emulator-matrix.sh OUTDIR QEMU_A:DATA_A[,QEMU_B:DATA_B] [SOAKS]
#
# QEMU_x is a qemu-system-x86_64 binary, DATA_x its firmware directory (empty for
# the binary's own). Each boot runs SOAKS (default 2) unpinned (cpus="all") and
# SOAKS pinned (cpus="1") PVH soaks of XF_SOAK_SECS seconds (default 120), plus
# the PVH hello boot. Each setting's log is OUTDIR/<label>.log; the lines that
# matter are echoed.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:?OUTDIR}; builds=${2:?QEMU:DATA list}; n=${3:-2}
mkdir -p "$out"
export XF_SOAK_SECS=${XF_SOAK_SECS:-120}
pins=""
for _ in $(seq 1 "$n"); do pins+="all,1,"; done
for b in ${builds//,/ }; do
    qemu=${b%%:*}; data=${b#*:}
    # A build unpacked beside the system's one loads its own modules.
    mods=$(dirname "$qemu")/../lib/x86_64-linux-gnu/qemu
    if [ -d "$mods" ]; then export QEMU_MODULE_DIR=$mods; else unset QEMU_MODULE_DIR; fi
    ver=$("$qemu" --version | head -1 | awk '{print $4}')
    for tcg in ${XF_MATRIX_TCG:-multi single}; do
        label="qemu-$ver-$tcg"
        echo "== $label"
        XF_LAB_QEMU=$qemu XF_LAB_QEMU_DATA=$data XF_LAB_TCG=$tcg \
            XF_SOAK_PIN=${pins%,} XF_LAB_VERBOSE=1 XF_ONLY=soak-pin,pvh-boot-hello \
            flock /tmp/xf-lab.lock cargo test --release -q -p xenfront --test nested \
            >"$out/$label.log" 2>&1
        grep -aE "^test |lab figures|soak: done|Triple fault|nested: " "$out/$label.log" | sed 's/^/   /'
    done
done
