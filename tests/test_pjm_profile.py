"""Unit tests of the PJM and UGE profile scripts (profiles/pjm, profiles/uge).

The pure logic (pjm_lib, uge_lib) is tested directly; the executables are run
as the cluster-generic plugin runs them, against the PJM simulator or against
stand-in commands that fail, to check what Snakemake would be told.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PJM_PROFILE = REPO / "profiles" / "pjm"
UGE_PROFILE = REPO / "profiles" / "uge"
PJM_SIM = REPO / "tests" / "schedulers" / "pjm_sim"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pjm_lib = load(PJM_PROFILE / "pjm_lib.py")
uge_lib = load(UGE_PROFILE / "uge_lib.py")

EVIL = ["a; touch /tmp/pwned_unit", "$(id)", "`id`", "x' y \"z", "-L rscgrp=other"]


def props(**resources) -> dict:
    return {
        "rule": "train",
        "wildcards": {"dataset": "mnist", "family": "cnn", "run": "lr=0.01"},
        "threads": 2,
        "resources": {"mem_mb": 4000, "runtime": 90, **resources},
        "jobid": 7,
    }


def jobscript(tmp_path: Path, properties: dict, body: str = "echo hi") -> Path:
    script = tmp_path / "snakejob.train.7.sh"
    script.write_text(f"#!/bin/sh\n# properties = {json.dumps(properties)}\n{body}\n")
    return script


# --- pjm_lib -----------------------------------------------------------------------


def test_pjsub_args_carry_every_directive():
    args = pjm_lib.build_pjsub_args(
        props(gpu=2, pjm_rscgrp="small", pjm_group="hp000000", pjm_gfscache="/vol0004"),
        apptainer=True,
    )
    assert args == [
        "-N",
        "train.mnist.cnn.lr_0.01",
        "-L",
        "node=1",
        "-L",
        "rscgrp=small",
        "-L",
        "elapse=01:30:00",
        "-L",
        "gpu=2",
        "-L",
        "jobenv=singularity",
        "-g",
        "hp000000",
        "-x",
        "PJM_LLIO_GFSCACHE=/vol0004",
        "-j",
        "-S",
        "-X",
    ]


def test_pjsub_args_leave_out_unset_site_settings():
    args = pjm_lib.build_pjsub_args(props(gpu=0))
    assert "-g" not in args and "-x" not in args
    assert not any(a.startswith(("rscgrp=", "gpu=", "jobenv=")) for a in args)


@pytest.mark.parametrize("evil", EVIL)
def test_pjsub_args_keep_hostile_values_as_single_arguments(evil):
    p = props(pjm_group=evil, pjm_rscgrp=evil)
    p["wildcards"] = {"run": evil}
    args = pjm_lib.build_pjsub_args(p)
    assert args[args.index("-g") + 1] == evil
    assert f"rscgrp={evil}" in args
    name = args[args.index("-N") + 1]
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def test_pjm_extra_is_split_without_a_shell():
    args = pjm_lib.build_pjsub_args(props(pjm_extra="-L 'node-mem=28Gi' --comment '$(id)'"))
    assert args[-4:] == ["-L", "node-mem=28Gi", "--comment", "$(id)"]


@pytest.mark.parametrize(
    "runtime, elapse",
    [(90, "01:30:00"), (1, "00:01:00"), (0.5, "00:01:00"), (1440, "24:00:00"), (61.5, "01:01:30")],
)
def test_elapse_from_runtime_minutes(runtime, elapse):
    assert pjm_lib.format_elapse(runtime) == elapse


def test_apptainer_is_detected_from_the_job_command():
    assert pjm_lib.uses_apptainer("python -m snakemake --software-deployment-method apptainer x")
    assert pjm_lib.uses_apptainer("python -m snakemake --sdm conda apptainer --cores 1")
    # What Snakemake 9 writes into the jobscript for --sdm apptainer:
    assert pjm_lib.uses_apptainer("-m snakemake --deployment-method apptainer --conda-frontend")
    assert not pjm_lib.uses_apptainer("python -m snakemake --sdm conda --cores 1")
    assert not pjm_lib.uses_apptainer("python -m snakemake --apptainer-args '--nv'")


def test_job_id_parsed_from_pjsub_output():
    assert pjm_lib.parse_submit_output("[INFO] PJM 0000 pjsub Job 9714 submitted.\n") == "9714"
    with pytest.raises(ValueError, match="PJM 0057"):
        pjm_lib.parse_submit_output("[ERR.] PJM 0057 pjsub node=32 is greater than the limit")


# pjstat -v output as printed by a real PJM (column layout of Fujitsu TCS).
PJSTAT_V = """\
JOB_ID     JOB_NAME   MD ST  USER     GROUP    START_DATE      ELAPSE_TIM ELAPSE_LIM            NODE_REQUIRE    VNODE  CORE V_MEM        V_POL E_POL RANK      LST EC  PC  SN PRI ACCEPT         RSC_GRP  REASON
167687     test       NM ACC bsc32070 bsc32    03/08 11:41:07  0000:00:01 0000:01:00            1               -      -    -            -     -     bychip    ACC 0   0   0  127 03/08 11:41:04 small    -
"""  # noqa: E501


@pytest.mark.parametrize(
    "st, ec, pc, expected",
    [
        ("EXT", "0", "0", "success"),
        ("EXT", "1", "0", "failed"),
        ("EXT", "0", "11", "failed"),  # elapse limit
        ("EXT", "137", "11", "failed"),
        ("ERR", "0", "0", "failed"),
        ("CCL", "127", "1", "failed"),
        ("RJT", "0", "2", "failed"),
        *[(s, "0", "0", "running") for s in ("ACC", "QUE", "RNA", "RNP", "HLD", "RUN", "RNO")],
        ("RNE", "0", "0", "running"),
        ("NEW", "0", "0", "running"),  # unknown: let the next poll decide
    ],
)
def test_state_mapping(st, ec, pc, expected):
    rows = pjm_lib.parse_pjstat(f"JOB_ID  ST  EC  PC\n42  {st}  {ec}  {pc}\n")
    assert pjm_lib.snakemake_status(rows["42"]) == expected


def test_pjstat_parsing_skips_rows_it_cannot_split_safely():
    # Full -v rows have spaces inside START_DATE/ACCEPT; only --choose output is trusted.
    assert pjm_lib.parse_pjstat(PJSTAT_V) == {}
    assert pjm_lib.parse_pjstat("[INFO] no jobs\n") == {}


def test_missing_job_gets_a_grace_period(tmp_path):
    assert not pjm_lib.missing_for_too_long(tmp_path, "5", 600, now=1000.0)
    assert not pjm_lib.missing_for_too_long(tmp_path, "5", 600, now=1500.0)
    assert pjm_lib.missing_for_too_long(tmp_path, "5", 600, now=1601.0)
    pjm_lib.clear_missing(tmp_path, "5")
    assert not pjm_lib.missing_for_too_long(tmp_path, "5", 600, now=1700.0)


# --- the executables, against the simulator -------------------------------------------


@pytest.fixture
def sim_env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{PJM_SIM}{os.pathsep}{os.environ['PATH']}",
        "PJM_SIM_DIR": str(tmp_path / "state"),
        "PJM_SIM_KILL_GRACE": "1",
    }


def run(cmd, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def wait_status(jobid, cwd, env, timeout=20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = run([PJM_PROFILE / "pjm_status.py", jobid], cwd, env).stdout.strip()
        if status != "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_submit_status_cancel_round_trip(tmp_path, sim_env):
    ok = jobscript(tmp_path, props(gpu=1), 'echo "gpus=$CUDA_VISIBLE_DEVICES"')
    r = run([PJM_PROFILE / "pjm_submit.py", ok], tmp_path, sim_env)
    assert r.returncode == 0, r.stderr
    jobid = r.stdout.strip()
    assert jobid.isdigit()
    assert wait_status(jobid, tmp_path, sim_env) == "success"
    out = tmp_path / "logs" / "pjm" / f"train.mnist.cnn.lr_0.01.{jobid}.out"
    assert out.read_text().strip() == "gpus=0"

    bad = jobscript(tmp_path, props(), "exit 3")
    jobid = run([PJM_PROFILE / "pjm_submit.py", bad], tmp_path, sim_env).stdout.strip()
    assert wait_status(jobid, tmp_path, sim_env) == "failed"

    slow = jobscript(tmp_path, props(), "sleep 60")
    jobid = run([PJM_PROFILE / "pjm_submit.py", slow], tmp_path, sim_env).stdout.strip()
    status = run([PJM_PROFILE / "pjm_status.py", jobid], tmp_path, sim_env).stdout.strip()
    assert status == "running"
    assert run([PJM_PROFILE / "pjm_cancel.py", jobid], tmp_path, sim_env).returncode == 0
    assert wait_status(jobid, tmp_path, sim_env) == "failed"


def test_simulator_enforces_elapse(tmp_path, sim_env):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#PJM -L elapse=0:00:01\nsleep 30\n")
    r = run(["pjsub", "-N", "long", script], tmp_path, sim_env)
    assert r.stdout.startswith("[INFO] PJM 0000 pjsub Job ")
    jobid = pjm_lib.parse_submit_output(r.stdout)
    assert wait_status(jobid, tmp_path, sim_env) == "failed"
    row = run(["pjstat", "-H", "-v", "--choose", "jid,st,ec,pc", jobid], tmp_path, sim_env).stdout
    assert pjm_lib.parse_pjstat(row)[jobid]["PC"] == "11"


def test_submit_reports_pjsub_errors(tmp_path, sim_env):
    script = jobscript(tmp_path, props(pjm_rscgrp="nosuchgroup"))
    env = {**sim_env, "PJM_SIM_RSCGRPS": "small,large"}
    r = run([PJM_PROFILE / "pjm_submit.py", script], tmp_path, env)
    assert r.returncode == 1
    assert "resource group does not exist" in r.stderr
    assert r.stdout == ""


def test_hostile_values_reach_pjsub_verbatim_and_run_nothing(tmp_path, sim_env):
    evil = "a; touch pwned_a $(touch pwned_b) `touch pwned_c`"
    p = props(pjm_group=evil, pjm_gfscache=evil)
    p["wildcards"] = {"run": evil}
    r = run([PJM_PROFILE / "pjm_submit.py", jobscript(tmp_path, p)], tmp_path, sim_env)
    assert r.returncode == 0, r.stderr
    jobid = r.stdout.strip()
    wait_status(jobid, tmp_path, sim_env)
    record = json.loads((tmp_path / "state" / "jobs" / f"{jobid}.json").read_text())
    assert record["group"] == evil
    assert record["x"] == {"PJM_LLIO_GFSCACHE": evil}
    assert not list(tmp_path.rglob("pwned*"))


def fake_command(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_status_survives_a_failing_pjstat(tmp_path):
    """pjstat down or timing out: report running (exit 0) and let the next poll decide."""
    fake_command(tmp_path, "pjstat", 'echo "[ERR.] PJM 0020 pjstat cannot connect" >&2; exit 1')
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    r = run([PJM_PROFILE / "pjm_status.py", "123"], tmp_path, env)
    assert (r.returncode, r.stdout.strip()) == (0, "running")
    assert "cannot connect" in r.stderr

    r = run(
        [PJM_PROFILE / "pjm_status.py", "123"],
        tmp_path,
        {**env, "PJM_PJSTAT": str(tmp_path / "no-such-pjstat")},
    )
    assert (r.returncode, r.stdout.strip()) == (0, "running")


def test_status_looks_in_the_history_when_the_job_left_the_live_list(tmp_path):
    fake_command(
        tmp_path,
        "pjstat",
        'case "$1" in -H) printf "JOB_ID ST EC PC\\n77 EXT 0 0\\n";; '
        '*) printf "JOB_ID ST EC PC\\n";; esac',
    )
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    assert run([PJM_PROFILE / "pjm_status.py", "77"], tmp_path, env).stdout.strip() == "success"


def test_status_gives_up_on_a_job_missing_too_long(tmp_path):
    fake_command(tmp_path, "pjstat", 'printf "JOB_ID ST EC PC\\n"')
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "MNIST_PJM_MISSING_GRACE": "0.5",
    }
    assert run([PJM_PROFILE / "pjm_status.py", "9"], tmp_path, env).stdout.strip() == "running"
    time.sleep(0.7)
    assert run([PJM_PROFILE / "pjm_status.py", "9"], tmp_path, env).stdout.strip() == "failed"


# --- uge_lib (same design, qsub instead of pjsub) --------------------------------------


def test_qsub_args_generic_site():
    args = uge_lib.build_qsub_args(props(gpu=1), "/work/logs/uge/")
    assert args == [
        "-N",
        "train.mnist.cnn.lr_0.01",
        "-cwd",
        "-j",
        "y",
        "-S",
        "/bin/bash",
        "-V",
        "-o",
        "/work/logs/uge/",
        "-l",
        "h_rt=01:30:00",
        "-pe",
        "smp",
        "2",
        "-l",
        "mem_free=2000M",  # 4000 MB over 2 slots
        "-l",
        "gpu=1",
    ]


@pytest.mark.parametrize("gpus, rtype", [(0, "rt_C.small"), (1, "rt_G.small"), (4, "rt_F")])
def test_qsub_args_abci_resource_types(gpus, rtype):
    args = uge_lib.build_qsub_args(props(gpu=gpus, uge_mode="abci", uge_group="gaa50000"), "l/")
    assert args[args.index("-l", 11) + 1] == f"{rtype}=1"
    assert "-pe" not in args and not any("mem" in a for a in args)
    assert args[-2:] == ["-g", "gaa50000"]


def test_qsub_args_explicit_resource_type_and_no_memory():
    args = uge_lib.build_qsub_args(props(uge_mode="abci", uge_rt="rt_G.large"), "l/")
    assert "rt_G.large=1" in args
    args = uge_lib.build_qsub_args(props(uge_mem_resource=""), "l/")
    assert not any(a.startswith("mem_free") for a in args)
    with pytest.raises(ValueError, match="uge_mode"):
        uge_lib.build_qsub_args(props(uge_mode="lsf"), "l/")


@pytest.mark.parametrize("evil", EVIL)
def test_qsub_args_keep_hostile_values_as_single_arguments(evil):
    p = props(uge_queue=evil, uge_project=evil)
    p["wildcards"] = {"run": evil}
    args = uge_lib.build_qsub_args(p, "l/")
    assert args[args.index("-q") + 1] == evil
    assert args[args.index("-P") + 1] == evil
    assert set(args[1]) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def test_qsub_output_and_qacct_parsing():
    assert uge_lib.parse_submit_output('Your job 812 ("train") has been submitted\n') == "812"
    assert uge_lib.parse_submit_output("813\n") == "813"
    with pytest.raises(ValueError):
        uge_lib.parse_submit_output('Unable to run job: unknown resource "gpu"')
    qstat = (
        "job-ID  prior   name  user  state submit/start at     queue  slots ja-task-ID\n"
        "-" * 60 + "\n"
        "     12 0.55500 train root  r     11/22/2026 19:14:14 all.q@vm  2\n"
        "     13 0.00000 eval  root  Eqw   11/22/2026 19:14:15           1\n"
    )
    states = uge_lib.parse_qstat(qstat)
    assert states == {"12": "r", "13": "Eqw"}
    assert uge_lib.qstat_status("r") == "running"
    assert uge_lib.qstat_status("Eqw") == "failed"
    sep = "=" * 62
    qacct = (
        f"{sep}\njobnumber    12\nfailed       0    \nexit_status  1\n"
        f"{sep}\njobnumber    12\nfailed       0    \nexit_status  0\n"
    )
    assert uge_lib.qacct_status(uge_lib.parse_qacct(qacct)) == "success"  # the last record
    killed = f"{sep}\nfailed       100 : assumedly after job\nexit_status  137\n"
    assert uge_lib.qacct_status(uge_lib.parse_qacct(killed)) == "failed"
    assert uge_lib.parse_qacct("error: job id 99 not found\n") is None


def test_uge_status_survives_failing_commands(tmp_path):
    fake_command(tmp_path, "qstat", 'echo "error: commlib error" >&2; exit 1')
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    r = run([UGE_PROFILE / "uge_status.py", "5"], tmp_path, env)
    assert (r.returncode, r.stdout.strip()) == (0, "running")


def test_scripts_import_nothing_but_the_standard_library():
    """They run on login nodes with whatever python3 is there."""
    allowed = set(sys.stdlib_module_names) | {"pjm_lib", "uge_lib", "__future__"}
    for path in [*PJM_PROFILE.glob("*.py"), *UGE_PROFILE.glob("*.py")]:
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                assert words[1].split(".")[0] in allowed, f"{path.name}: {line}"
