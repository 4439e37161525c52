#!/usr/bin/env bash
# Make sure a single-node Slurm cluster answers on this host (slurmctld + slurmd, munge auth).
#
# Used by .ci/run after the Docker engine, and by hand on a development machine (as root):
#   - If `sinfo` shows this host's node idle/mixed/allocated: nothing to do.
#   - Otherwise: apt-get install slurm-wlm and munge where missing, write a munge key and
#     /etc/slurm/slurm.conf (this host, CPUs from nproc, RealMemory from /proc/meminfo minus a
#     margin, one default partition "debug", MinJobAge=3600 so finished jobs stay visible to
#     `scontrol show job`, jobcomp/filetxt for `sacct -c`), start munged, slurmctld and slurmd,
#     and wait until the node is idle, failing loudly after SLURM_WAIT_S seconds (default 60).
# An existing slurm.conf that was not written by this script is never overwritten.
# Environment: SLURM_WAIT_S, SLURM_MEM_MARGIN_MB (memory kept from Slurm, default 2048).
set -euo pipefail

wait_s="${SLURM_WAIT_S:-60}"
margin_mb="${SLURM_MEM_MARGIN_MB:-2048}"
conf=/etc/slurm/slurm.conf
marker="# written by harness scripts/ensure-slurm.sh"
node="$(hostname -s)"
logdir=/var/log/slurm

say() { echo "ensure-slurm: $*"; }
die() { echo "ensure-slurm: error: $*" >&2; exit 1; }

node_ready() {
    local state
    state="$(sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -n 1)" || return 1
    case "$state" in idle*|mixed*|allocated*|completing*) return 0 ;; *) return 1 ;; esac
}

install_missing() {
    local missing=()
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm)
    command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_munge_key() {
    local key=/etc/munge/munge.key
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s "$key" ]; then
        say "writing a munge key"
        dd if=/dev/urandom bs=1 count=1024 of="$key" status=none
    fi
    chown munge:munge "$key" /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 400 "$key"
    chmod 755 /run/munge
}

write_conf() {
    if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
        say "$conf exists and was not written here; using it as it is"
        return 0
    fi
    local cpus mem_kb mem_mb
    cpus="$(nproc)"
    mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    mem_mb=$(( mem_kb / 1024 - margin_mb ))
    [ "$mem_mb" -gt 256 ] || die "only $((mem_kb / 1024)) MB of memory; Slurm needs more than the ${margin_mb} MB margin"
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$logdir"
    cat >"$conf.tmp" <<CONF
$marker
ClusterName=harness
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$logdir/jobcomp.log
ReturnToService=2
MinJobAge=3600
KillWait=30
OverTimeLimit=0
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logdir/slurmctld.log
SlurmdLogFile=$logdir/slurmd.log
NodeName=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
    if [ -f "$conf" ] && cmp -s "$conf" "$conf.tmp"; then
        rm -f "$conf.tmp"
    else
        mv "$conf.tmp" "$conf"
        say "wrote $conf ($cpus CPUs, RealMemory=$mem_mb MB)"
    fi
}

running() { pgrep -x "$1" >/dev/null 2>&1; }

start_daemons() {
    if ! running munged; then
        say "starting munged"
        runuser -u munge -- munged
    fi
    if ! running slurmctld; then
        say "starting slurmctld (log: $logdir/slurmctld.log)"
        setsid slurmctld </dev/null >>"$logdir/slurmctld.out" 2>&1
    fi
    if ! running slurmd; then
        say "starting slurmd (log: $logdir/slurmd.log)"
        setsid slurmd </dev/null >>"$logdir/slurmd.out" 2>&1
    fi
}

wait_ready() {
    local waited=0
    until node_ready; do
        # a node left down or drained by an earlier run is returned to service
        case "$(sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -n 1)" in
            down*|drain*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        if [ "$waited" -ge "$wait_s" ]; then
            sinfo -N -l >&2 || true
            tail -n 20 "$logdir/slurmctld.log" "$logdir/slurmd.log" >&2 || true
            die "node $node is not idle after ${wait_s} s; see $logdir"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "node $node is $(sinfo -h -N -n "$node" -o '%T' | head -n 1) after ${waited} s"
}

if command -v sinfo >/dev/null 2>&1 && node_ready; then
    say "cluster answers: $(sinfo -h -N -n "$node" -o '%N %T %c CPUs %m MB' | head -n 1)"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "no Slurm cluster answers and starting one needs root"
install_missing
write_munge_key
write_conf
start_daemons
wait_ready
