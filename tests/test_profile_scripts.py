"""Unit tests of the profile scripts (profiles/lib: clusterjob and pjm_lib, uge_lib, pbs_lib).

The pure logic (clusterjob, pjm_lib, uge_lib, pbs_lib) is tested directly; the
entry point (clusterjob.py submit|status <scheduler>) is run as the cluster-generic
plugin runs it, against the PJM
simulator or against stand-in commands that fail, to check what Snakemake would
be told; the profiles' site-setting checks run through the real snakemake CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("pbs", "uge", "pjm", "slurm")
LIB = REPO / "profiles" / "lib"
PJM_SIM = REPO / "tests" / "schedulers" / "pjm_sim"
CLUSTERJOB = LIB / "clusterjob.py"

sys.path.insert(0, str(LIB))
import clusterjob  # noqa: E402
import pbs_lib  # noqa: E402
import pjm_lib  # noqa: E402
import uge_lib  # noqa: E402

SiteSettingError = clusterjob.SiteSettingError
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

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
def test_pjsub_args_refuse_hostile_site_settings_and_sanitise_wildcards(evil):
    for key, variable in (("pjm_group", "MNIST_PJM_GROUP"), ("pjm_rscgrp", "MNIST_PJM_RSCGRP")):
        with pytest.raises(SiteSettingError, match=variable):
            pjm_lib.build_pjsub_args(props(**{key: evil}))
    p = props()
    p["wildcards"] = {"run": evil}
    args = pjm_lib.build_pjsub_args(p)
    assert set(args[args.index("-N") + 1]) <= NAME_CHARS


def test_pjm_site_settings_pass_good_values_through():
    env = {"MNIST_PJM_RSCGRP": "small", "MNIST_PJM_GFSCACHE": "/vol0004:/vol0005"}
    assert clusterjob.site_settings(pjm_lib, env) == {
        "pjm_rscgrp": "small",
        "pjm_gfscache": "/vol0004:/vol0005",
    }


def test_pjm_extra_is_split_without_a_shell():
    args = pjm_lib.build_pjsub_args(props(pjm_extra="-L 'node-mem=28Gi' --comment '$(id)'"))
    assert args[-4:] == ["-L", "node-mem=28Gi", "--comment", "$(id)"]


@pytest.mark.parametrize(
    "runtime, elapse",
    [(90, "01:30:00"), (1, "00:01:00"), (0.5, "00:01:00"), (1440, "24:00:00"), (61.5, "01:01:30")],
)
def test_elapse_from_runtime_minutes(runtime, elapse):
    args = pjm_lib.build_pjsub_args(props(runtime=runtime))
    assert f"elapse={elapse}" in args


def test_apptainer_is_detected_from_the_job_command():
    assert clusterjob.uses_apptainer("python -m snakemake --software-deployment-method apptainer x")
    assert clusterjob.uses_apptainer("python -m snakemake --sdm conda apptainer --cores 1")
    # What Snakemake 9 writes into the jobscript for --sdm apptainer:
    assert clusterjob.uses_apptainer("-m snakemake --deployment-method apptainer --conda-frontend")
    assert not clusterjob.uses_apptainer("python -m snakemake --sdm conda --cores 1")
    assert not clusterjob.uses_apptainer("python -m snakemake --apptainer-args '--nv'")


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
    assert not clusterjob.missing_for_too_long(tmp_path, "5", 600, now=1000.0)
    assert not clusterjob.missing_for_too_long(tmp_path, "5", 600, now=1500.0)
    assert clusterjob.missing_for_too_long(tmp_path, "5", 600, now=1601.0)
    clusterjob.clear_missing(tmp_path, "5")
    assert not clusterjob.missing_for_too_long(tmp_path, "5", 600, now=1700.0)


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


def entry(action: str, scheduler: str) -> list:
    """What the profiles' cluster-generic-submit-cmd / -status-cmd run."""
    return [CLUSTERJOB, action, scheduler]


def wait_status(jobid, cwd, env, timeout=20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = run([*entry("status", "pjm"), jobid], cwd, env).stdout.strip()
        if status != "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_submit_status_cancel_round_trip(tmp_path, sim_env):
    ok = jobscript(tmp_path, props(gpu=1), 'echo "gpus=$CUDA_VISIBLE_DEVICES"')
    r = run([*entry("submit", "pjm"), ok], tmp_path, sim_env)
    assert r.returncode == 0, r.stderr
    jobid = r.stdout.strip()
    assert jobid.isdigit()
    assert wait_status(jobid, tmp_path, sim_env) == "success"
    out = tmp_path / "logs" / "pjm" / f"train.mnist.cnn.lr_0.01.{jobid}.out"
    assert out.read_text().strip() == "gpus=0"

    bad = jobscript(tmp_path, props(), "exit 3")
    jobid = run([*entry("submit", "pjm"), bad], tmp_path, sim_env).stdout.strip()
    assert wait_status(jobid, tmp_path, sim_env) == "failed"

    slow = jobscript(tmp_path, props(), "sleep 60")
    jobid = run([*entry("submit", "pjm"), slow], tmp_path, sim_env).stdout.strip()
    status = run([*entry("status", "pjm"), jobid], tmp_path, sim_env).stdout.strip()
    assert status == "running"
    cancel = clusterjob.profile("pjm").cancel_cmd  # the plugin runs [cancel_cmd, *ids]
    assert cancel == "pjdel"
    assert run([cancel, jobid], tmp_path, sim_env).returncode == 0
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
    r = run([*entry("submit", "pjm"), script], tmp_path, env)
    assert r.returncode == 1
    assert "resource group does not exist" in r.stderr
    assert r.stdout == ""


def test_hostile_wildcards_reach_pjsub_sanitised_and_run_nothing(tmp_path, sim_env):
    evil = "a; touch pwned_a $(touch pwned_b) `touch pwned_c`"
    p = props(pjm_gfscache="/vol0004:/vol0005")
    p["wildcards"] = {"run": evil}
    r = run([*entry("submit", "pjm"), jobscript(tmp_path, p)], tmp_path, sim_env)
    assert r.returncode == 0, r.stderr
    jobid = r.stdout.strip()
    wait_status(jobid, tmp_path, sim_env)
    record = json.loads((tmp_path / "state" / "jobs" / f"{jobid}.json").read_text())
    assert record["x"] == {"PJM_LLIO_GFSCACHE": "/vol0004:/vol0005"}
    assert not list(tmp_path.rglob("pwned*"))


@pytest.mark.parametrize(
    "resources, named",
    [
        ({"pjm_gfscache": "/vol0004,LD_PRELOAD=/tmp/evil.so"}, "MNIST_PJM_GFSCACHE"),
        ({"pjm_extra": "-L 'node-mem=28Gi"}, "MNIST_PJM_EXTRA"),  # unbalanced quote
        ({"runtime": "soon"}, "runtime"),
    ],
)
def test_submit_refuses_bad_values_with_a_message_and_no_pjsub(tmp_path, sim_env, resources, named):
    r = run([*entry("submit", "pjm"), jobscript(tmp_path, props(**resources))], tmp_path, sim_env)
    assert r.returncode == 1 and r.stdout == ""
    assert "Traceback" not in r.stderr
    assert named in r.stderr and "nothing submitted" in r.stderr
    assert not (tmp_path / "state" / "jobs").exists() or not list(
        (tmp_path / "state" / "jobs").iterdir()
    )


def fake_command(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def fakes_first(tmp_path: Path, **variables: str) -> dict[str, str]:
    """This environment with the fake commands (tmp_path/bin) first on PATH, and variables."""
    return {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        **variables,
    }


@pytest.mark.parametrize(
    "scheduler, command, failure, said, jobid",
    [
        ("pjm", "pjstat", 'echo "[ERR.] PJM 0020 pjstat cannot connect" >&2; exit 1',
         "cannot connect", "123"),
        ("uge", "qstat", 'echo "error: commlib error" >&2; exit 1', "commlib error", "5"),
        ("pbs", "qstat", 'echo "Connection refused" >&2; exit 15010', "Connection refused", "5.vm"),
    ],
)  # fmt: skip
def test_status_survives_a_failing_query(tmp_path, scheduler, command, failure, said, jobid):
    """The status command down or timing out: report running (exit 0), let the next poll decide."""
    fake_command(tmp_path, command, failure)
    r = run([*entry("status", scheduler), jobid], tmp_path, fakes_first(tmp_path))
    assert (r.returncode, r.stdout.strip()) == (0, "running")
    assert said in r.stderr


@pytest.mark.parametrize(
    "scheduler, variable", [("pjm", "PJM_PJSTAT"), ("uge", "UGE_QSTAT"), ("pbs", "PBS_QSTAT")]
)
def test_status_stops_the_run_when_the_status_command_does_not_exist(tmp_path, scheduler, variable):
    """Not on PATH at all: exit non-zero (cluster-generic stops the run) and say why."""
    r = run(
        [*entry("status", scheduler), "123"], tmp_path, {**os.environ, variable: "no-such-command"}
    )
    assert r.returncode != 0 and r.stdout == ""
    assert "'no-such-command' was not found" in r.stderr
    assert "Traceback" not in r.stderr


def test_status_looks_in_the_history_when_the_job_left_the_live_list(tmp_path):
    fake_command(
        tmp_path,
        "pjstat",
        'case "$1" in -H) printf "JOB_ID ST EC PC\\n77 EXT 0 0\\n";; '
        '*) printf "JOB_ID ST EC PC\\n";; esac',
    )
    env = fakes_first(tmp_path)
    assert run([*entry("status", "pjm"), "77"], tmp_path, env).stdout.strip() == "success"


def test_status_gives_up_on_a_job_missing_too_long(tmp_path):
    fake_command(tmp_path, "pjstat", 'printf "JOB_ID ST EC PC\\n"')
    env = fakes_first(tmp_path, MNIST_PJM_MISSING_GRACE="0.5")
    assert run([*entry("status", "pjm"), "9"], tmp_path, env).stdout.strip() == "running"
    time.sleep(0.7)
    assert run([*entry("status", "pjm"), "9"], tmp_path, env).stdout.strip() == "failed"


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
        "-notify",
        "-pe",
        "smp",
        "2",
        "-l",
        "mem_free=2000M",  # 4000 MB over 2 slots
        "-l",
        "gpu=1",
    ]


def test_uge_abci_mode_is_retired_and_points_to_the_pbs_profile():
    with pytest.raises(SiteSettingError, match="MNIST_UGE_MODE.*profiles/pbs"):
        clusterjob.site_settings(uge_lib, {"MNIST_UGE_MODE": "abci"})
    with pytest.raises(SiteSettingError, match="profiles/pbs"):
        uge_lib.build_qsub_args(props(uge_mode="abci"), "l/")


def test_qsub_args_without_memory_request():
    args = uge_lib.build_qsub_args(props(uge_mem_resource="none"), "l/")
    assert not any(a.startswith("mem_free") for a in args)


@pytest.mark.parametrize("evil", EVIL)
def test_qsub_args_refuse_hostile_values_and_sanitise_wildcards(evil):
    with pytest.raises(SiteSettingError, match="uge_queue"):
        uge_lib.build_qsub_args(props(uge_queue=evil), "l/")
    p = props()
    p["wildcards"] = {"run": evil}
    assert set(uge_lib.build_qsub_args(p, "l/")[1]) <= NAME_CHARS


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


def test_scripts_import_nothing_but_the_standard_library():
    """They run on login nodes with whatever python3 is there."""
    allowed = set(sys.stdlib_module_names) | {"__future__", "clusterjob", "jobsetup"}
    allowed |= {"pjm_lib", "uge_lib", "pbs_lib", "slurm_lib"}
    paths = list(REPO.glob("profiles/*/*.py"))
    assert {p.name for p in paths} >= {"clusterjob.py", "jobsetup.py", "pbs_lib.py", "uge_lib.py"}
    for path in paths:
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                assert words[1].split(".")[0] in allowed, f"{path.name}: {line}"


# --- clusterjob: what every profile shares ------------------------------------------


@pytest.mark.parametrize(
    "runtime, seconds", [(90, 5400), (1, 60), (0.5, 60), ("61.5", 3690), (None, None)]
)
def test_runtime_in_seconds_at_least_a_minute(runtime, seconds):
    assert clusterjob.runtime_seconds({"runtime": runtime}) == seconds


@pytest.mark.parametrize("runtime", ["soon", "nan", -5, "1h"])
def test_runtime_that_is_not_minutes_is_refused_naming_the_resource(runtime):
    with pytest.raises(clusterjob.SiteSettingError, match="resource runtime must be a number"):
        clusterjob.runtime_seconds({"runtime": runtime})


def test_time_format_and_job_names():
    assert clusterjob.format_hms(90061) == "25:01:01"
    assert clusterjob.job_name({"rule": "train", "wildcards": {"r": "lr=0.1 $(x)"}}) == (
        "train.lr_0.1___x_"
    )
    assert clusterjob.job_name({"rule": "_x"}) == "j_x"  # PBS and Grid Engine want a letter first
    assert len(clusterjob.job_name({"rule": "r" * 300})) == 63


def test_extra_options_split_like_a_shell_with_clear_errors():
    assert clusterjob.check_extra("MNIST_X_EXTRA", "-l 'a=b c' -m n") == ["-l", "a=b c", "-m", "n"]
    with pytest.raises(clusterjob.SiteSettingError, match="MNIST_X_EXTRA=.*every quote closed"):
        clusterjob.check_extra("MNIST_X_EXTRA", "-l 'a=b")
    with pytest.raises(clusterjob.SiteSettingError, match="MNIST_X_EXTRA.*newline"):
        clusterjob.check_extra("MNIST_X_EXTRA", "-l 'a\nb'")


@pytest.mark.parametrize(
    "module, variable, value",
    [
        (pjm_lib, "MNIST_PJM_RSCGRP", "small,node=999"),  # would add a resource item
        (pjm_lib, "MNIST_PJM_GFSCACHE", "/vol0004,LD_PRELOAD=/tmp/evil.so"),  # an env variable
        (pjm_lib, "MNIST_PJM_GROUP", "hp0\nx"),
        (pjm_lib, "MNIST_PJM_GPU_RSCGRP", "gpu small"),
        (uge_lib, "MNIST_UGE_MEM_RESOURCE", "mem_free=1G,h_vmem"),  # a second resource
        (uge_lib, "MNIST_UGE_QUEUE", "a.q,b.q"),
        (uge_lib, "MNIST_UGE_PE", "smp\n-l h_vmem=1G"),
        (uge_lib, "MNIST_UGE_PROJECT", "p; rm -rf"),
        (pbs_lib, "MNIST_PBS_QUEUE", "workq -l select=99"),
        (pbs_lib, "MNIST_PBS_PROJECT", "p1,ngpus=8"),
        (pbs_lib, "MNIST_PBS_ACCOUNT", "a\nb"),
        (pbs_lib, "MNIST_PBS_GPU_RESOURCE", "ngpus=8:mem"),  # would add select items
        (pbs_lib, "MNIST_PBS_MODE", "abci2"),
        (pbs_lib, "MNIST_PBS_EXTRA", "-l 'walltime=1"),  # split while the profile is read
    ],
)
def test_site_settings_refused_with_the_variable_and_the_allowed_form(module, variable, value):
    with pytest.raises(SiteSettingError, match=f"{variable}=.*must be"):
        clusterjob.site_settings(module, {variable: value})


def test_setting_check_names_variable_and_form():
    s = clusterjob.Setting("MNIST_X_QUEUE", "x_queue", clusterjob.NAME, "a queue name")
    assert s.check(" gpu.q ") == "gpu.q"
    assert s.check("") == ""
    for bad in ["a,b", "a=b", "a b", "a\nb", "a\x07", "'a'", "-q"]:
        with pytest.raises(clusterjob.SiteSettingError, match="MNIST_X_QUEUE=.*a queue name"):
            s.check(bad)


# --- pbs_lib ----------------------------------------------------------------------------


def test_pbs_generic_select_walltime_queue_project_account():
    p = props(gpu=1, pbs_queue="workq", pbs_project="proj1", pbs_account="acct")
    assert pbs_lib.build_qsub_args(p, "/w/logs/pbs/") == [
        "-N",
        "train.mnist.cnn.lr_0.01",
        "-j",
        "oe",
        "-o",
        "/w/logs/pbs/",
        "-V",
        "-l",
        "select=1:ncpus=2:mem=4000mb:ngpus=1",
        "-q",
        "workq",
        "-P",
        "proj1",
        "-A",
        "acct",
        "-l",
        "walltime=01:30:00",
    ]
    args = pbs_lib.build_qsub_args(props(gpu=0, pbs_gpu_resource="gpus"), "l/")
    assert "select=1:ncpus=2:mem=4000mb" in args and "-q" not in args
    assert "gpus=2" in pbs_lib.build_qsub_args(props(gpu=2, pbs_gpu_resource="gpus"), "l/")[8]


@pytest.mark.parametrize("gpus, queue", [(0, "rt_HC"), (1, "rt_HG"), (2, "rt_HF"), (8, "rt_HF")])
def test_pbs_abci_queue_from_gpus(gpus, queue):
    args = pbs_lib.build_qsub_args(props(gpu=gpus, pbs_mode="abci", pbs_project="gaa50000"), "l/")
    assert args[7:13] == ["-q", queue, "-P", "gaa50000", "-l", "select=1"]
    assert args[-2:] == ["-l", "walltime=01:30:00"]
    assert not any("ncpus" in a or "mem=" in a for a in args)


def test_pbs_abci_queue_per_rule_and_group_required():
    p = props(gpu=1, pbs_mode="abci", pbs_project="gaa50000", pbs_rt="rt_HF")
    assert pbs_lib.build_qsub_args(p, "l/")[8] == "rt_HF"
    with pytest.raises(SiteSettingError, match="MNIST_PBS_PROJECT"):
        pbs_lib.build_qsub_args(props(pbs_mode="abci"), "l/")
    with pytest.raises(SiteSettingError, match="MNIST_PBS_PROJECT"):
        clusterjob.site_settings(pbs_lib, {"MNIST_PBS_MODE": "abci"})


@pytest.mark.parametrize("evil", EVIL)
def test_pbs_hostile_values_refused_and_wildcards_sanitised(evil):
    with pytest.raises(SiteSettingError, match="pbs_queue"):
        pbs_lib.build_qsub_args(props(pbs_queue=evil), "l/")
    p = props()
    p["wildcards"] = {"run": evil}
    assert set(pbs_lib.build_qsub_args(p, "l/")[1]) <= NAME_CHARS


def qstat_json(**job) -> str:
    """qstat -x -f -F json output, shaped as OpenPBS 23.06 prints it."""
    return json.dumps({"timestamp": 1, "pbs_version": "23.06.06", "Jobs": {"12.vm": job}})


@pytest.mark.parametrize(
    "job, expected",
    [
        ({"job_state": "Q"}, "running"),
        ({"job_state": "R", "substate": 42}, "running"),
        ({"job_state": "E", "Exit_status": 0}, "running"),  # exiting: wait for F
        ({"job_state": "F", "Exit_status": 0, "substate": 92}, "success"),
        ({"job_state": "F", "Exit_status": 1, "substate": 92}, "failed"),
        ({"job_state": "F", "Exit_status": -29, "substate": 93}, "failed"),  # walltime
        ({"job_state": "F", "Exit_status": 0, "substate": 91}, "failed"),  # qdel
        ({"job_state": "F", "Exit_status": 271, "comment": "terminated by root@vm"}, "failed"),
    ],
)
def test_pbs_status_from_qstat_json(job, expected):
    record = pbs_lib.parse_qstat_json(qstat_json(**job), "12.vm")
    assert pbs_lib.job_status(record)[0] == expected


def test_pbs_qstat_json_lookup():
    out = qstat_json(job_state="R")
    assert pbs_lib.parse_qstat_json(out, "12.vm.example.org")["job_state"] == "R"
    assert pbs_lib.parse_qstat_json(out, "13.vm") is None
    # Control characters from -V variables, as PBS prints them.
    raw = '{"Jobs": {"12.vm": {"job_state": "F", "Exit_status": 0, "V": "a\tb"}}}'
    assert pbs_lib.parse_qstat_json(raw, "12.vm")["V"] == "a\tb"
    assert pbs_lib.parse_submit_output("12.vm\n") == "12.vm"
    with pytest.raises(ValueError):
        pbs_lib.parse_submit_output("qsub: Unknown queue\n")


def test_pbs_status_knows_an_unknown_job(tmp_path):
    fake_command(tmp_path, "qstat", 'echo "qstat: Unknown Job Id $5" >&2; exit 153')
    env = fakes_first(tmp_path, MNIST_PBS_MISSING_GRACE="0.3")
    assert run([*entry("status", "pbs"), "5.vm"], tmp_path, env).stdout.strip() == "running"
    time.sleep(0.5)
    assert run([*entry("status", "pbs"), "5.vm"], tmp_path, env).stdout.strip() == "failed"


# --- the profiles as Snakemake reads them -------------------------------------------------


def bootstrap(profile: str) -> str:
    """The lines of a config.yaml that find ../lib (from the frame walk to the import)."""
    text = (REPO / "profiles" / profile / "config.yaml").read_text()
    return text[text.index("__definitions__:") : text.index("    import clusterjob\n")]


def test_every_profile_finds_lib_with_the_same_lines_and_clusterjob_does_the_rest():
    assert "profile_dir" in bootstrap("pbs")
    for profile in PROFILES:
        assert bootstrap(profile) == bootstrap("pbs"), profile
        text = (REPO / "profiles" / profile / "config.yaml").read_text()
        assert f'PROFILE = clusterjob.profile("{profile}")' in text
    assert sorted(p.name for p in (REPO / "profiles").glob("*/*.py")) == sorted(
        ["clusterjob.py", "jobsetup.py", *(f"{s}_lib.py" for s in PROFILES)]
    )


def test_the_commands_name_the_entry_point_quoted_for_the_shell(monkeypatch):
    monkeypatch.setattr(clusterjob, "HERE", Path("/site/my profiles {x}/lib"))
    p = clusterjob.profile("uge", {"MNIST_UGE_QUEUE": "gpu.q"})
    # The plugin formats the submit command with the wildcards first: braces doubled.
    assert p.submit_cmd == "'/site/my profiles {{x}}/lib/clusterjob.py' submit uge"
    assert p.status_cmd == "'/site/my profiles {x}/lib/clusterjob.py' status uge"
    assert (p.cancel_cmd, p.site["uge_queue"]) == ("qdel", "gpu.q")
    assert clusterjob.profile("slurm", {}).submit_cmd == ""  # the SLURM plugin submits itself


def test_slurm_profile_refuses_a_clean_job_environment_before_its_site_settings():
    # The SLURM plugin always exports the environment; the refusal names the fix first.
    env = {"MNIST_JOB_ENV": "clean", "MNIST_SLURM_ACCOUNT": "a,b"}
    with pytest.raises(SiteSettingError, match="MNIST_JOB_ENV=clean is not possible.*leave it"):
        clusterjob.profile("slurm", env)
    with pytest.raises(SiteSettingError, match="MNIST_SLURM_ACCOUNT="):
        clusterjob.profile("slurm", {"MNIST_SLURM_ACCOUNT": "a,b"})


@pytest.mark.parametrize("argv", [[], ["submit", "slurm", "x"], ["cancel", "pbs", "1"]])
def test_entry_point_usage(tmp_path, argv):
    r = run([CLUSTERJOB, *argv], tmp_path, os.environ)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: clusterjob.py submit|status {pbs|uge|pjm}")


def toy(tmp_path: Path) -> Path:
    work = tmp_path / "toy"
    work.mkdir()
    (work / "Snakefile").write_text((REPO / "tests/schedulers/toy/Snakefile").read_text())
    shutil.copytree(REPO / "profiles", work / "profiles")
    return work


@pytest.mark.parametrize(
    "profile, variable, value",
    [
        ("pjm", "MNIST_PJM_RSCGRP", "small,node=999"),
        ("pjm", "MNIST_PJM_GFSCACHE", "/vol0004,LD_PRELOAD=/tmp/evil.so"),
        ("pjm", "MNIST_PJM_EXTRA", "-L 'node-mem=28Gi"),
        ("uge", "MNIST_UGE_MEM_RESOURCE", "mem_free=1G,h_vmem"),
        ("uge", "MNIST_UGE_MODE", "abci"),
        ("pbs", "MNIST_PBS_QUEUE", "rt_HG\nrt_HF"),
        ("slurm", "MNIST_SLURM_ACCOUNT", "a -p other"),
    ],
)
def test_profile_refuses_a_bad_site_setting_before_any_submission(
    tmp_path, profile, variable, value
):
    """The real CLI, a real (not dry) run: it stops while reading the profile, nothing submitted."""
    work = toy(tmp_path)
    for command in ("pjsub", "qsub", "sbatch"):  # record any submission attempt
        fake_command(tmp_path, command, f"touch {tmp_path}/submitted; exit 1")
    env = fakes_first(tmp_path, **{variable: value})
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", f"profiles/{profile}"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert f"{variable}=" in last and "must be" in last, r.stderr[-2000:]
    assert not (tmp_path / "submitted").exists()
    assert not (work / "resources").exists()  # not even the local download ran


@pytest.mark.parametrize("profile", ["pjm", "uge", "pbs", "slurm"])
def test_profile_passes_good_site_settings_to_the_jobs(tmp_path, profile):
    """A dry run shows the checked values as the jobs' resources (profile_dir was found)."""
    env = {
        **os.environ,
        "MNIST_PJM_RSCGRP": "small",
        "MNIST_UGE_QUEUE": "gpu.q",
        "MNIST_PBS_QUEUE": "workq",
        "MNIST_SLURM_PARTITION": "cpu,gpu",
    }
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", f"profiles/{profile}", "-n"],
        cwd=toy(tmp_path), env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    expected = {
        "pjm": "pjm_rscgrp=small",
        "uge": "uge_queue=gpu.q",
        "pbs": "pbs_queue=workq",
        "slurm": "slurm_partition=cpu,gpu",
    }[profile]
    assert expected in r.stdout + r.stderr


def test_bad_per_rule_setting_stops_in_the_submit_script_before_pjsub(tmp_path):
    """--set-resources bypasses the profile-time check: the submit script refuses it, cleanly."""
    work = toy(tmp_path)
    state = tmp_path / "pjm-state"
    env = {**os.environ, "PATH": f"{PJM_SIM}{os.pathsep}{os.environ['PATH']}"}
    env["PJM_SIM_DIR"] = str(state)
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/pjm", "--retries", "0",
         "--latency-wait", "1", "--set-resources", "preprocess:pjm_rscgrp='small,node=999'"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "pjm submit: nothing submitted: resource pjm_rscgrp (from MNIST_PJM_RSCGRP)" in out
    assert "Traceback" not in out
    assert not (state / "jobs").exists() or not list((state / "jobs").iterdir())


# --- gpu_model (config resources.train.gpu_model) on PBS, Grid Engine, PJM ----------------


def test_gpu_model_becomes_the_sites_resource_on_pbs_and_grid_engine():
    pbs = pbs_lib.build_qsub_args(
        props(gpu=1, gpu_model="a100", pbs_gpu_model_resource="gpu_model"), "l/"
    )
    assert "select=1:ncpus=2:mem=4000mb:ngpus=1:gpu_model=a100" in pbs
    uge = uge_lib.build_qsub_args(
        props(gpu=2, gpu_model="a100", uge_gpu_model_resource="gpu_type"), "l/"
    )
    assert uge[-4:] == ["-l", "gpu=2", "-l", "gpu_type=a100"]
    # gpu_model empty (the default): nothing more, whatever the site setting.
    assert (
        pbs_lib.build_qsub_args(props(gpu=1, gpu_model="", pbs_gpu_model_resource="gm"), "l/")[8]
        == "select=1:ncpus=2:mem=4000mb:ngpus=1"
    )
    assert uge_lib.build_qsub_args(props(gpu=1, gpu_model=""), "l/")[-2:] == ["-l", "gpu=1"]


@pytest.mark.parametrize(
    "build, resources, named",
    [
        (pbs_lib.build_qsub_args, {}, "set MNIST_PBS_GPU_MODEL_RESOURCE to your site's resource"),
        (uge_lib.build_qsub_args, {}, "set MNIST_UGE_GPU_MODEL_RESOURCE to your site's resource"),
        (pbs_lib.build_qsub_args, {"pbs_mode": "abci", "pbs_project": "g1"}, "MNIST_PBS_MODE=abci"),
        (lambda p, _: pjm_lib.build_pjsub_args(p), {}, "set MNIST_PJM_GPU_RSCGRP"),
    ],
)
def test_gpu_model_without_a_way_to_ask_for_it_is_refused_naming_the_setting(
    build, resources, named
):
    with pytest.raises(SiteSettingError, match="resource gpu_model='a100'") as e:
        build(props(gpu=1, gpu_model="a100", **resources), "l/")
    assert named in str(e.value)


@pytest.mark.parametrize(
    "build, key", [(pbs_lib.build_qsub_args, "pbs"), (uge_lib.build_qsub_args, "uge")]
)
def test_gpu_model_that_would_add_requests_or_has_no_gpus_is_refused(build, key):
    site = {f"{key}_gpu_model_resource": "gm"}
    with pytest.raises(SiteSettingError, match="gpu_model='a100:ncpus=99' is not accepted"):
        build(props(gpu=1, gpu_model="a100:ncpus=99", **site), "l/")
    with pytest.raises(SiteSettingError, match="no GPUs: set resources.train.gpu"):
        build(props(gpu=0, gpu_model="a100", **site), "l/")
    variable = f"MNIST_{key.upper()}_GPU_MODEL_RESOURCE"
    module = {"pbs": pbs_lib, "uge": uge_lib}[key]
    with pytest.raises(SiteSettingError, match=f"{variable}=.*must be"):
        clusterjob.site_settings(module, {variable: "gm=a100,ngpus"})
    site = clusterjob.site_settings(module, {variable: "gpu_type"})
    assert site[f"{key}_gpu_model_resource"] == "gpu_type"


# --- Grid Engine's warning before a kill (-notify) ---------------------------------------

CHILD = """
import pathlib, signal, sys, time
folder = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGUSR2, lambda *_: (folder.joinpath("saved").write_text("ok"), sys.exit(140)))
folder.joinpath("ready").write_text("")
time.sleep(30)
"""


@pytest.mark.parametrize("with_precommand", [True, False])
def test_grid_engine_jobs_shell_outlives_the_warning_so_the_training_saves(
    tmp_path, with_precommand
):
    """Grid Engine sends SIGUSR2 to every process of the job, and kills the rest once the job
    script has exited: with the profile's precommand only the training (its own handler)
    acts on it; without it the shell dies at once (and Grid Engine then kills the training)."""
    precommand = clusterjob.profile("uge", {}).precommand
    # First the trap; then the check that the login node's Python starts (jobsetup).
    assert precommand.startswith("trap '' USR1 USR2 && ")
    assert "-notify" in uge_lib.build_qsub_args(props(), "l/")
    job = f"{sys.executable} -c '{CHILD}' {tmp_path}; echo exit=$? > {tmp_path}/shell"
    if with_precommand:
        job = f"{precommand} && {job}"
    proc = subprocess.Popen(["/bin/bash", "-c", job], start_new_session=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGUSR2)  # as Grid Engine does, to the whole job
    proc.wait(timeout=30)
    if with_precommand:
        assert (tmp_path / "shell").read_text() == "exit=140\n"  # the shell saw the training end
        assert (tmp_path / "saved").read_text() == "ok"
    else:
        assert proc.returncode == -signal.SIGUSR2 and not (tmp_path / "shell").exists()
