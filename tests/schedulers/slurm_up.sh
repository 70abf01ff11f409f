#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on localhost for the scheduler tests.
#
# Idempotent: installs the Debian packages if missing, (re)writes the config,
# starts munged, slurmctld and slurmd directly (no systemd) unless they already
# run, and waits until the node accepts jobs. Run as root.
#
#   bash tests/schedulers/slurm_up.sh            # with accounting: mariadb + slurmdbd,
#                                                # so both squeue and sacct modes work
#   SLURM_ACCOUNTING=0 bash tests/schedulers/slurm_up.sh
#                                                # no accounting: only squeue mode works
#
# Two fake GPUs are declared in gres.conf. SLURM only needs the device files to
# exist, so they are character devices made like /dev/null (c 1 3); a job that
# asks for --gpus=1 then gets CUDA_VISIBLE_DEVICES set by slurmd.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
    echo "slurm_up.sh: must run as root (installs packages, starts daemons)" >&2
    exit 1
fi

ACCOUNTING=${SLURM_ACCOUNTING:-1}
CONF_DIR=/etc/slurm          # the plugin's srun step drops SLURM_CONF, so use the default path
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
NODE=localhost               # slurmd -N localhost avoids depending on the hostname
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))

log() { echo "slurm_up: $*"; }

pkgs=(slurm-wlm munge)
[[ $ACCOUNTING == 1 ]] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    log "installing ${missing[*]}"
    # Package scripts would try to start services via systemd/invoke-rc.d; stop that.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/slurm_up.apt.log 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
    rm -f /usr/sbin/policy-rc.d
fi

mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" /run/munge /var/log/munge /var/lib/munge
chown -R slurm:slurm "$STATE_DIR" "$LOG_DIR" 2>/dev/null || true

# Fake GPUs: character devices so slurmd does not mark the node INVAL.
for i in 0 1; do
    [[ -c /dev/fakegpu$i ]] || { rm -f /dev/fakegpu$i; mknod /dev/fakegpu$i c 1 3; }
done

if [[ $ACCOUNTING == 1 ]]; then
    ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
# Keep --comment (the plugin puts the rule name there) in the accounting records.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux"
else
    ACCT_LINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

new_conf=$(cat <<EOF
# Written by tests/schedulers/slurm_up.sh -- test cluster on localhost.
ClusterName=testcluster
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default every job would be given the whole node's memory.
DefMemPerCPU=256
GresTypes=gpu
# Keep finished jobs visible to squeue long enough for the plugin's squeue mode
# (it falls back to sacct when MinJobAge < 3 x its first status delay).
MinJobAge=600
# Fast turnaround for tests.
SchedulerParameters=defer_batch
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
# Walltime is enforced; OverTimeLimit=0 kills a job right at its limit.
OverTimeLimit=0
$ACCT_LINES
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:fake:2 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
gres_conf="# Written by tests/schedulers/slurm_up.sh: two fake GPUs (character devices)
NodeName=$NODE Name=gpu Type=fake File=/dev/fakegpu[0-1]"

conf_changed=0
if [[ "$(cat $CONF_DIR/slurm.conf 2>/dev/null)" != "$new_conf" ]]; then
    printf '%s\n' "$new_conf" > "$CONF_DIR/slurm.conf"; conf_changed=1
fi
if [[ "$(cat $CONF_DIR/gres.conf 2>/dev/null)" != "$gres_conf" ]]; then
    printf '%s\n' "$gres_conf" > "$CONF_DIR/gres.conf"; conf_changed=1
fi

running() { pgrep -x "$1" >/dev/null; }

stop_daemon() {  # stop one daemon by the pid it recorded (never by name pattern)
    local pidfile=$1
    if [[ -f $pidfile ]]; then
        local pid; pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pidfile"
    fi
}

# munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
if ! running munged; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done

if [[ $ACCOUNTING == 1 ]]; then
    if ! running mariadbd && ! running mysqld; then
        log "starting mariadb"
        mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
        [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
        (cd /; nohup /usr/sbin/mariadbd --user=mysql >/var/log/mariadb.log 2>&1 &)
        for _ in $(seq 100); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
    fi
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmtest';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    cat > "$CONF_DIR/slurmdbd.conf" <<EOF
# Written by tests/schedulers/slurm_up.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmtest
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$CONF_DIR/slurmdbd.conf"; chmod 600 "$CONF_DIR/slurmdbd.conf"
    if ! running slurmdbd; then
        log "starting slurmdbd"
        /usr/sbin/slurmdbd
        for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
    fi
    sacctmgr -i -Q add cluster testcluster >/dev/null 2>&1 || true
fi

if (( conf_changed )) && running slurmctld; then
    log "config changed: restarting slurmctld/slurmd"
    stop_daemon /run/slurmd.pid
    stop_daemon /run/slurmctld.pid
fi
if ! running slurmctld; then
    log "starting slurmctld"
    /usr/sbin/slurmctld -i
fi
if ! running slurmd; then
    log "starting slurmd"
    /usr/sbin/slurmd -N "$NODE"
fi

# Wait until the node is schedulable.
state=""
for _ in $(seq 150); do
    state=$(sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null || true)
    case $state in
        idle*|mix*|alloc*) break ;;
        down*|drain*|inval*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
done
case $state in
    idle*|mix*|alloc*) log "ready (node $NODE: $state; accounting=$ACCOUNTING)" ;;
    *) echo "slurm_up: node $NODE not ready (state '$state'); see $LOG_DIR/slurmctld.log and slurmd.log" >&2
       sinfo -N -l >&2 || true
       exit 1 ;;
esac
