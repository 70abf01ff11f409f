#!/usr/bin/env bash
# Bring up a one-host Grid Engine (Son of Grid Engine 8.1.9, Debian's
# gridengine-* packages) on localhost for the UGE scheduler tests.
#
# Idempotent: installs the packages if missing (answering debconf), starts
# sge_qmaster and sge_execd directly (no systemd), and configures what the
# profiles/uge profile relies on:
#   - parallel environment "smp" (allocation_rule $pe_slots) for threads,
#   - parallel environment "mpi" ($fill_up, control_slaves) for jobs of several processes,
#   - a consumable "gpu" complex (host has 2) for GPU requests,
#   - ABCI-style resource types rt_F / rt_G.small / rt_C.small as requestable
#     consumables, so profiles written for ABCI are accepted here too,
#   - schedule_interval 1 s, accounting flushed at once (qacct), min_uid/min_gid
#     0 so root's test jobs may run.
# Memory is requested as mem_free (built in), not h_vmem (a virtual-memory cap).
# Run as root.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
    echo "gridengine_up.sh: must run as root (installs packages, starts daemons)" >&2
    exit 1
fi

export SGE_ROOT=/var/lib/gridengine
export SGE_CELL=default
HOST=$(hostname)
SLOTS=$(nproc)

log() { echo "gridengine_up: $*"; }

pkgs=(gridengine-master gridengine-exec gridengine-client)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    log "installing ${missing[*]}"
    debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string $HOST
gridengine-master shared/gridengineconfig boolean true
gridengine-master shared/gridenginecell string default
gridengine-master shared/gridenginemaster string $HOST
gridengine-exec shared/gridenginemaster string $HOST
gridengine-client shared/gridenginemaster string $HOST
EOF
    # No systemd/init here: keep the package scripts from starting services.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/gridengine_up.apt.log 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
    rm -f /usr/sbin/policy-rc.d
fi

COMMON=$SGE_ROOT/$SGE_CELL/common
if [[ ! -f $COMMON/act_qmaster ]]; then
    echo "gridengine_up: $COMMON/act_qmaster missing: the cluster was not initialised" \
         "(see /tmp/gridengine_up.apt.log)" >&2
    exit 1
fi
echo "$HOST" > "$COMMON/act_qmaster"
# When the host name reverse-resolves to "localhost", qmaster sees the exec host
# as "localhost"; tell Grid Engine both names are the same host.
if [[ $(getent hosts "$HOST" | awk '{print $1}') == 127.* ]]; then
    grep -qx "$HOST localhost" "$COMMON/host_aliases" 2>/dev/null \
        || echo "$HOST localhost" >> "$COMMON/host_aliases"
fi

running() { pgrep -x "$1" >/dev/null; }

if ! running sge_qmaster; then
    log "starting sge_qmaster"
    /usr/lib/gridengine/sge_qmaster
fi
for _ in $(seq 100); do qconf -sh >/dev/null 2>&1 && break; sleep 0.2; done
qconf -sh >/dev/null || { echo "gridengine_up: qmaster not answering" >&2; exit 1; }

qconf -sh | grep -qx "$HOST" || qconf -ah "$HOST" >/dev/null 2>&1
qconf -ss 2>/dev/null | grep -qx "$HOST" || qconf -as "$HOST" >/dev/null 2>&1

# Edit a configuration object non-interactively: dump, sed, load.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Global config: let root run jobs; fast turnaround.
qconf -sconf global > "$tmp/global"
sed -i -e 's/^min_uid .*/min_uid                      0/' \
       -e 's/^min_gid .*/min_gid                      0/' "$tmp/global"
# Write accounting records (qacct) within a second of a job's end, not 15 s.
sed -i -e 's/flush_time=[0-9:]*/flush_time=00:00:01/' "$tmp/global"
grep -q accounting_flush_time "$tmp/global" \
    || sed -i -e 's/flush_time=00:00:01/flush_time=00:00:01 accounting_flush_time=00:00:00/' "$tmp/global"
qconf -Mconf "$tmp/global" >/dev/null 2>&1 || true

qconf -ssconf > "$tmp/sched"
sed -i -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
       -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
       -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' "$tmp/sched"
qconf -Msconf "$tmp/sched" >/dev/null 2>&1 || true

# Complexes: keep the defaults, add ours once.
qconf -sc > "$tmp/complex"
add_complex() {  # name shortcut type relop requestable consumable default urgency
    grep -q "^$1 " "$tmp/complex" || echo "$*" >> "$tmp/complex"
}
add_complex gpu        gpu        INT    '<=' YES YES 0     0
add_complex rt_F       rt_F       INT    '<=' YES YES 0     0
add_complex rt_G.small rt_G.small INT    '<=' YES YES 0     0
add_complex rt_C.small rt_C.small INT    '<=' YES YES 0     0
qconf -Mc "$tmp/complex" >/dev/null 2>&1 || true

# Parallel environment for multi-threaded jobs: all slots on one host.
if ! qconf -spl 2>/dev/null | grep -qx smp; then
    cat > "$tmp/pe" <<EOF
pe_name            smp
slots              999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
    qconf -Ap "$tmp/pe" >/dev/null 2>&1
fi

# Parallel environment for jobs of several processes (a distributed training that Open MPI
# starts: mpirun reads $PE_HOSTFILE and starts processes on other hosts with
# `qrsh -inherit`, which control_slaves allows). $fill_up: slots from as few hosts as possible.
if ! qconf -spl 2>/dev/null | grep -qx mpi; then
    cat > "$tmp/pe" <<EOF
pe_name            mpi
slots              999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$fill_up
control_slaves     TRUE
job_is_first_task  FALSE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
    qconf -Ap "$tmp/pe" >/dev/null 2>&1
fi

# Execution host with its consumables (2 fake GPUs, ABCI resource types).
cat > "$tmp/exechost" <<EOF
hostname              $HOST
load_scaling          NONE
complex_values        gpu=2,rt_F=1,rt_G.small=2,rt_C.small=$SLOTS
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
if qconf -sel 2>/dev/null | grep -qx "$HOST"; then
    qconf -Me "$tmp/exechost" >/dev/null 2>&1
else
    qconf -Ae "$tmp/exechost" >/dev/null 2>&1
fi

# Queue all.q on this host with the smp and mpi PEs.
if ! qconf -sql 2>/dev/null | grep -qx all.q; then
    cat > "$tmp/q" <<EOF
qname                 all.q
hostlist              $HOST
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               make smp mpi
rerun                 FALSE
slots                 $SLOTS
tmpdir                /tmp
shell                 /bin/sh
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
    qconf -Aq "$tmp/q" >/dev/null 2>&1
else
    qconf -mattr queue hostlist "$HOST" all.q >/dev/null 2>&1 || true
    qconf -mattr queue slots "$SLOTS" all.q >/dev/null 2>&1 || true
    qconf -mattr queue pe_list "make smp mpi" all.q >/dev/null 2>&1 || true
fi

if ! running sge_execd; then
    log "starting sge_execd"
    mkdir -p /var/spool/gridengine/execd
    chown sgeadmin:sgeadmin /var/spool/gridengine/execd
    /usr/lib/gridengine/sge_execd
fi

# Wait until the queue instance is up (state column empty, load reported).
for _ in $(seq 150); do
    line=$(qstat -f -q "all.q@$HOST" 2>/dev/null | grep "^all.q@" || true)
    # columns: queuename qtype resv/used/tot. load_avg arch [states]
    if [[ -n $line ]] && [[ $(awk '{print $4}' <<<"$line") != "-NA-" ]] \
        && [[ -z $(awk '{print $6}' <<<"$line") ]]; then
        log "ready ($line)"
        exit 0
    fi
    # A queue left in error/alarm state by an earlier failed job: clear it.
    qmod -c "all.q@$HOST" >/dev/null 2>&1 || true
    sleep 0.2
done
echo "gridengine_up: queue all.q@$HOST not ready:" >&2
qstat -f >&2 || true
echo "see /var/spool/gridengine/qmaster/messages and /var/spool/gridengine/execd/$HOST/messages" >&2
exit 1
