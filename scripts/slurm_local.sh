#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, from Debian's packages (munge, slurmctld, slurmd,
# slurm-client), for the sweep tests and for trying `dlt sweep submit --slurm` locally.
#   scripts/slurm_local.sh start    install if needed (root), configure, start, wait until idle
#   scripts/slurm_local.sh stop     stop the daemons this script started
#   scripts/slurm_local.sh status   sinfo of the local cluster
# Localhost only; no systemd (the daemons are started directly, so it works in containers);
# no cgroups (proctrack/linuxproc); state, logs and pid files under $DLT_SLURM_DIR
# (default /tmp/dlt-slurm). Idempotent: `start` on a running cluster only checks it.
set -euo pipefail
dir=${DLT_SLURM_DIR:-/tmp/dlt-slurm}
conf=/etc/slurm/slurm.conf
say() { echo "slurm_local: $*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || { say "Slurm is not installed and installing needs root (apt-get install munge slurmctld slurmd slurm-client)"; exit 1; }
  say "installing munge, slurmctld, slurmd, slurm-client"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends munge slurmctld slurmd slurm-client >"$dir/apt.log" 2>&1 || {
    apt-get update >>"$dir/apt.log" 2>&1
    apt-get install -y --no-install-recommends munge slurmctld slurmd slurm-client >>"$dir/apt.log" 2>&1
  } || { say "apt-get failed; see $dir/apt.log"; exit 1; }
}

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc --all)
  # RealMemory in MiB, a little under the total so slurmd's own check passes.
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)
  mkdir -p /etc/slurm "$dir/ctld" "$dir/d" "$dir/log"
  if [ -f "$conf" ] && ! grep -q '^# Written by scripts/slurm_local.sh' "$conf"; then
    say "$conf exists and was not written by this script (a real cluster's?); leaving it alone"
    exit 1
  fi
  cat >"$conf.new" <<EOF
# Written by scripts/slurm_local.sh: a one-node localhost cluster.
ClusterName=dlt-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
MaxArraySize=100001
MaxJobCount=100000
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$conf.new" "$conf"
}

running() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if munge_ok; then return; fi
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
  touch "$dir/munge_started"
  if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c munged 2>/dev/null || munged --force
  else
    munged --force
  fi
  for _ in $(seq 1 20); do munge_ok && return; sleep 0.5; done
  say "munged did not start; see /var/log/munge/munged.log"
  exit 1
}

idle() { timeout 5 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

start() {
  mkdir -p "$dir"
  local t0=$SECONDS
  install
  if running slurmctld && running slurmd && idle; then say "already running"; return; fi
  write_conf
  start_munge
  running slurmctld || slurmctld -i
  running slurmd || slurmd
  while [ $((SECONDS - t0)) -lt 90 ]; do
    if idle; then
      scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
      say "up in $((SECONDS - t0)) s: $(sinfo -h -N -o '%N %T %c CPUs %m MiB')"
      return
    fi
    # a node left DOWN by an earlier run of this script comes back
    scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
    sleep 1
  done
  say "the node did not become idle within 90 s; logs: $dir/log/"
  tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  exit 1
}

stop() {
  for d in slurmd slurmctld; do
    if running "$d"; then
      kill "$(cat "$dir/$d.pid" 2>/dev/null)" 2>/dev/null || true
    fi
  done
  for _ in $(seq 1 20); do
    running slurmd || running slurmctld || break
    sleep 0.5
  done
  if [ -f "$dir/munge_started" ] && [ -f /run/munge/munged.pid ]; then
    local pid
    pid=$(cat /run/munge/munged.pid)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    rm -f "$dir/munge_started"
  fi
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
