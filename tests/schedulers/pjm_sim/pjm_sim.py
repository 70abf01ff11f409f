"""A small simulator of Fujitsu PJM's pjsub / pjstat / pjdel, for tests only.

It is NOT PJM. It runs each job as a local background process and mimics the
parts of PJM's interface that the profiles/pjm scripts use, following the
Fugaku user guide and real command output:

* pjsub [options] script: reads "#PJM" lines from the script, then the
  command-line options (which win). Supported: -N, -L k=v[,k=v...] (node,
  rscgrp, elapse, gpu, jobenv, anything else is recorded), -g, -x VAR=val,
  -j, -S/-s, -X, -o, -e. Prints "[INFO] PJM 0000 pjsub Job <id> submitted.".
  The job runs detached from pjsub, in pjsub's working directory, writing
  <name>.<id>.out (and .err unless -j; .stats with -S). With -L gpu=N it
  sets CUDA_VISIBLE_DEVICES=0..N-1, as a GPU PJM site would.
* --mpi proc=M[,max-proc-per-node=P,...]: the job's MPI processes (default: one per
  node); the job gets PJM_MPI_PROC=M and PJM_NODE=<node>, and the simulator's own
  `mpiexec` (beside this file; Fujitsu MPI derives from Open MPI) starts up to M
  processes with Open MPI's mpirun. Outside a job, or asked for more than M, it fails.
* elapse: a job past its limit gets SIGXCPU, then SIGKILL after
  PJM_SIM_KILL_GRACE seconds (default 10, like PJM); it ends as EXT with
  PJM code (PC) 11. PJM_SIM_ELAPSE_SCALE (default 1) multiplies the limits
  actually enforced, so tests need not wait a whole minute.
* pjstat [-H] [-v] [--choose cols] [jobid...]: live list or history (-H) in
  PJM's column layout; states ACC/QUE/RUN/EXT/CCL/ERR/RJT.
* pjdel jobid...: cancels; the job ends as CCL with PC 1.

State lives in $PJM_SIM_DIR (default /tmp/pjm_sim): one JSON file per job.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LIVE_STATES = {"ACC", "QUE", "RNA", "RNP", "HLD", "RUN", "RNO", "RNE"}
ENDED_STATES = {"EXT", "CCL", "ERR", "RJT"}


def state_dir() -> Path:
    d = Path(os.environ.get("PJM_SIM_DIR", "/tmp/pjm_sim"))
    (d / "jobs").mkdir(parents=True, exist_ok=True)
    return d


@contextmanager
def locked():
    """Serialise all state changes (pjsub, pjdel and job runners race)."""
    with open(state_dir() / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def job_path(jobid: str) -> Path:
    return state_dir() / "jobs" / f"{jobid}.json"


def load(jobid: str) -> dict | None:
    try:
        return json.loads(job_path(jobid).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def save(job: dict) -> None:
    tmp = job_path(job["id"]).with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    tmp.replace(job_path(job["id"]))


def all_jobs() -> list[dict]:
    jobs = []
    for p in sorted((state_dir() / "jobs").glob("*.json"), key=lambda p: int(p.stem)):
        job = load(p.stem)
        if job:
            jobs.append(job)
    return jobs


def err(code: str, cmd: str, msg: str) -> None:
    print(f"[ERR.] PJM {code} {cmd} {msg}", file=sys.stderr)


# --- pjsub ----------------------------------------------------------------------

_ELAPSE_RE = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+)$")


def parse_elapse(text: str) -> int:
    """PJM elapse: [[H:]M:]S, as seconds."""
    m = _ELAPSE_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid elapse: {text!r}")
    parts = [int(x) for x in text.strip().split(":")]
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


def parse_options(argv: list[str], opts: dict) -> list[str]:
    """Apply pjsub options in argv to opts; return the remaining operands."""
    i = 0
    while i < len(argv):
        a = argv[i]

        def value(option=a):
            nonlocal i
            if i + 1 >= len(argv):
                raise ValueError(f"option {option} needs a value")
            i += 1
            return argv[i]

        if a in ("-N", "--name"):
            opts["name"] = value()
        elif a in ("-L", "--rsc-list"):
            for item in value().split(","):
                k, sep, v = item.partition("=")
                if not sep:
                    raise ValueError(f"invalid -L item: {item!r}")
                opts["L"][k.strip().strip('"')] = v.strip().strip('"')
        elif a == "--mpi":
            for item in value().split(","):
                k, sep, v = item.partition("=")
                if not sep:
                    raise ValueError(f"invalid --mpi item: {item!r}")
                opts.setdefault("mpi", {})[k.strip()] = v.strip()
        elif a == "-g":
            opts["group"] = value()
        elif a == "-x":
            for item in value().split(","):
                k, sep, v = item.partition("=")
                if not sep:
                    raise ValueError(f"invalid -x item: {item!r}")
                opts["x"][k] = v
        elif a == "-j":
            opts["join"] = True
        elif a in ("-S", "-s"):
            opts["stats"] = True
        elif a == "-X":
            opts["export_env"] = True
        elif a == "-o":
            opts["out"] = value()
        elif a == "-e":
            opts["err"] = value()
        elif a.startswith("-") and a != "-":
            raise ValueError(f"unknown option {a}")
        else:
            return argv[i:]
        i += 1
    return []


def pjsub(argv: list[str]) -> int:
    opts = {"L": {}, "x": {}, "mpi": {}, "join": False, "stats": False, "export_env": False}
    try:
        operands = parse_options(argv, {"L": {}, "x": {}})  # find the script first
        if len(operands) != 1:
            raise ValueError("exactly one job script expected")
        script = Path(operands[0])
        text = script.read_text()
        # #PJM directives first, command line wins.
        for line in text.splitlines():
            if line.startswith("#PJM"):
                parse_options(shlex.split(line[4:]), opts)
        parse_options(argv, opts)
        node = int(opts["L"].get("node", "1"))
        elapse = parse_elapse(opts["L"]["elapse"]) if "elapse" in opts["L"] else 3600
        gpu = int(opts["L"].get("gpu", "0"))
        mpi = opts.get("mpi", {})
        proc = int(mpi.get("proc", node))
        if proc < 1:
            raise ValueError(f"invalid --mpi proc={proc}")
    except (ValueError, OSError) as e:
        err("0004", "pjsub", str(e))
        return 1
    allowed = os.environ.get("PJM_SIM_RSCGRPS")
    rscgrp = opts["L"].get("rscgrp", "small")
    if allowed and rscgrp not in allowed.split(","):
        err("0009", "pjsub", f"Specified resource group does not exist. rscgrp={rscgrp}")
        return 1
    with locked():
        counter = state_dir() / "counter"
        jobid = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(jobid))
        job = {
            "id": str(jobid),
            "name": opts.get("name") or script.name,
            "script": str(script.resolve()),
            "cwd": os.getcwd(),
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "group": opts.get("group", "-"),
            "rscgrp": rscgrp,
            "node": node,
            "gpu": gpu,
            "mpi": mpi,
            "proc": proc,
            "elapse_lim": elapse,
            "L": opts["L"],
            "x": opts["x"],
            "join": opts["join"],
            "stats": opts["stats"],
            "out": opts.get("out"),
            "err": opts.get("err"),
            "env": dict(os.environ) if opts["export_env"] else None,
            "argv": argv,
            "state": "QUE",
            "ec": "-",
            "pc": "-",
            "accept": time.time(),
            "start": None,
            "end": None,
            "pgid": None,
            "cancel": False,
        }
        save(job)
    # Run the job detached from pjsub (own session, no inherited pipes), so
    # pjsub returns at once, as the real one does.
    subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "run", str(jobid)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        env={**os.environ, "PJM_SIM_DIR": str(state_dir())},
    )
    print(f"[INFO] PJM 0000 pjsub Job {jobid} submitted.")
    return 0


# --- job runner (detached) --------------------------------------------------------


def _out_path(job: dict, kind: str) -> Path:
    given = job["out"] if kind == "out" else job["err"]
    name = given or f"{job['name']}.{job['id']}.{kind}"
    name = name.replace("%j", job["id"])
    return Path(job["cwd"]) / name


def run_job(jobid: str) -> None:
    with locked():
        job = load(jobid)
        if job is None or job["state"] != "QUE":
            return
        job["state"] = "RUN"
        job["start"] = time.time()
        save(job)
    env = (
        dict(job["env"])
        if job["env"] is not None
        else {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/"),
            "LANG": "C.UTF-8",
        }
    )
    env.update(job["x"])
    env.update(
        PJM_JOBID=job["id"],
        PJM_JOBNAME=job["name"],
        PJM_O_WORKDIR=job["cwd"],
        PJM_RSCGRP=job["rscgrp"],
        PJM_NODE=str(job["node"]),
        PJM_MPI_PROC=str(job.get("proc", job["node"])),
    )
    if job["gpu"] > 0:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(job["gpu"]))
    else:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    out = open(_out_path(job, "out"), "ab")
    errf = out if job["join"] else open(_out_path(job, "err"), "ab")
    proc = subprocess.Popen(
        ["/bin/bash", job["script"]],
        cwd=job["cwd"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=errf,
        start_new_session=True,  # own process group, so pjdel/elapse kill it all
    )
    with locked():
        job = load(jobid)
        job["pgid"] = proc.pid
        save(job)
        cancelled = job["cancel"]
    if cancelled:  # pjdel came between our start and recording the pgid
        _killpg(proc.pid, signal.SIGKILL)
    grace = float(os.environ.get("PJM_SIM_KILL_GRACE", "10"))
    # Tests shrink time: the smallest elapse Snakemake can ask for is a minute.
    limit = job["elapse_lim"] * float(os.environ.get("PJM_SIM_ELAPSE_SCALE", "1"))
    pc = 0
    try:
        ec = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        pc = 11  # PJM code 11: elapse limit exceeded
        _killpg(proc.pid, signal.SIGXCPU)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        _killpg(proc.pid, signal.SIGKILL)
        ec = proc.wait()
    if ec < 0:  # killed by a signal: report it like a shell does
        ec = 128 - ec
    with locked():
        job = load(jobid)
        if job["cancel"]:
            job["state"], job["pc"] = "CCL", 1
        else:
            job["state"], job["pc"] = "EXT", pc
        job["ec"] = ec
        job["end"] = time.time()
        save(job)
    if job["stats"]:
        _write_stats(job)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _write_stats(job: dict) -> None:
    lines = [
        "Job Statistical Information (written by the PJM simulator)",
        f" JOB ID                         : {job['id']}",
        f" JOB NAME                       : {job['name']}",
        f" RESOURCE GROUP                 : {job['rscgrp']}",
        f" STATE                          : {job['state']}",
        f" EXIT CODE                      : {job['ec']}",
        f" PJM CODE                       : {job['pc']}",
        f" ELAPSE TIME (LIMIT)            : {_hms(job['elapse_lim'])}",
        f" ELAPSE TIME (USE)              : {_hms(_elapsed(job))}",
    ]
    stats = Path(job["cwd"]) / f"{job['name']}.{job['id']}.stats"
    stats.write_text("\n".join(lines) + "\n")


# --- pjstat ------------------------------------------------------------------------


def _hms(seconds) -> str:
    seconds = int(seconds or 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:04d}:{m:02d}:{s:02d}"


def _elapsed(job: dict) -> float:
    if not job["start"]:
        return 0
    return (job["end"] or time.time()) - job["start"]


def _date(t) -> str:
    return time.strftime("%m/%d %H:%M:%S", time.localtime(t)) if t else "-"


# Column key (for --choose), header, value.
COLUMNS = [
    ("jid", "JOB_ID", lambda j: j["id"]),
    ("jnam", "JOB_NAME", lambda j: j["name"]),
    ("md", "MD", lambda j: "NM"),
    ("st", "ST", lambda j: j["state"]),
    ("usr", "USER", lambda j: j["user"]),
    ("grp", "GROUP", lambda j: j["group"] or "-"),
    ("sdt", "START_DATE", lambda j: _date(j["start"])),
    ("elp", "ELAPSE_TIM", lambda j: _hms(_elapsed(j))),
    ("elpl", "ELAPSE_LIM", lambda j: _hms(j["elapse_lim"])),
    ("nnumr", "NODE_REQUIRE", lambda j: str(j["node"])),
    ("vnd", "VNODE", lambda j: "-"),
    ("cnumr", "CORE", lambda j: "-"),
    ("vmem", "V_MEM", lambda j: "-"),
    ("ec", "EC", lambda j: str(j["ec"])),
    ("pc", "PC", lambda j: str(j["pc"])),
    ("sn", "SN", lambda j: "0"),
    ("adt", "ACCEPT", lambda j: _date(j["accept"])),
    ("rscg", "RSC_GRP", lambda j: j["rscgrp"]),
]
DEFAULT = ["jid", "jnam", "md", "st", "usr", "sdt", "elpl", "nnumr", "vnd", "cnumr", "vmem"]
VERBOSE = [
    "jid",
    "jnam",
    "md",
    "st",
    "usr",
    "grp",
    "sdt",
    "elp",
    "elpl",
    "nnumr",
    "vnd",
    "cnumr",
    "vmem",
    "ec",
    "pc",
    "sn",
    "adt",
    "rscg",
]


def pjstat(argv: list[str]) -> int:
    history = verbose = False
    choose = None
    ids = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-H":
            history = True
        elif a == "-v":
            verbose = True
        elif a == "--choose":
            i += 1
            if i >= len(argv):
                err("0004", "pjstat", "--choose needs a value")
                return 1
            choose = argv[i].split(",")
        elif a.startswith("day="):
            pass  # history period: the simulator keeps everything
        elif a.startswith("-"):
            err("0004", "pjstat", f"unknown option {a}")
            return 1
        else:
            ids.append(a)
        i += 1
    keys = choose or (VERBOSE if verbose else DEFAULT)
    by_key = {k: (h, f) for k, h, f in COLUMNS}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        err("0004", "pjstat", f"unknown --choose item(s): {','.join(unknown)}")
        return 1
    wanted = ENDED_STATES if history else LIVE_STATES
    jobs = [j for j in all_jobs() if j["state"] in wanted and (not ids or j["id"] in ids)]
    table = [[by_key[k][0] for k in keys]]
    table += [[by_key[k][1](j) for k in keys] for j in jobs]
    widths = [max(len(row[c]) for row in table) for c in range(len(keys))]
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


# --- pjdel ---------------------------------------------------------------------------


def pjdel(argv: list[str]) -> int:
    if not argv:
        err("0004", "pjdel", "no job id given")
        return 1
    rc = 0
    for jobid in argv:
        with locked():
            job = load(jobid)
            if job is None:
                err("0101", "pjdel", f"Job {jobid} does not exist.")
                rc = 1
                continue
            if job["state"] in ENDED_STATES:
                err("0102", "pjdel", f"Job {jobid} has already ended.")
                rc = 1
                continue
            job["cancel"] = True
            if job["state"] == "QUE":  # never started: the runner will skip it
                job.update(state="CCL", pc=1, end=time.time())
            save(job)
            pgid = job["pgid"]
        if pgid:
            _killpg(pgid, signal.SIGKILL)
        print(f"[INFO] PJM 0100 pjdel Job {jobid} canceled.")
    return rc


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "run":
    run_job(sys.argv[2])
