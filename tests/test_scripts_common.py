"""What every script shares: the helpers kept identical, clear errors for files that are not the
script's checkpoint or not a readable dataset, with nothing written."""

import ast
from pathlib import Path

import pytest
import torch

from testdata import ROOT, run_script

SCRIPTS = {"bc": "bc.py", "cql": "cql.py", "bcq": "bcq.py", "iql": "iql.py", "decision_transformer": "decision_transformer.py",
           "td3_bc": "td3_bc.py", "awac": "awac.py", "cal_ql": "cal_ql.py", "rlpd": "rlpd.py", "bear": "bear.py",
           "trajectory_transformer": "trajectory_transformer.py", "mopo": "mopo.py", "combo": "combo.py"}
# GUIDE: these lines stand in every file and must stay identical (DT and TT evaluate their own way)
SHARED = ("common_arg_errors", "evaluation_seeds", "evaluate", "save_checkpoint", "load_checkpoint",
          "write_summary", "exit_on_unimplemented_exercise", "keep_freed_memory", "score_text")


def _functions(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    return {node.name: ast.dump(node) for node in tree.body if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("name", SHARED)
def test_shared_helpers_are_identical_in_every_script(name):
    bodies = {stem: _functions(ROOT / file).get(name) for stem, file in SCRIPTS.items()}
    if name == "evaluate":
        bodies.pop("decision_transformer")
        bodies.pop("trajectory_transformer", None)  # TT plans by beam search: its own evaluate
    missing = [stem for stem, body in bodies.items() if body is None]
    assert not missing, f"{name} is missing from {missing}"
    reference = bodies["bc"]
    differ = [stem for stem, body in bodies.items() if body != reference]
    assert not differ, f"{name} differs from bc.py's in {differ}"


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("checkpoints")
    torch.save({"algorithm": "somebody_else", "args": {"dataset_id": "x"}}, d / "other.pt")
    # a checkpoint without the writer's name (as older versions wrote them) and without any script's networks
    torch.save({"weights": {}, "args": {"dataset_id": "x"}, "obs_mean": torch.zeros(1), "obs_std": torch.ones(1),
                "eval_seeds": [0]}, d / "keys.pt")
    (d / "notes.pt").write_text("these are not weights\n")
    torch.save(torch.zeros(3), d / "tensor.pt")
    return d


@pytest.mark.parametrize("stem", SCRIPTS)
def test_a_file_that_is_not_the_scripts_checkpoint_is_refused(stem, bad_checkpoints, run_dir):
    script = SCRIPTS[stem]
    cases = [("other.pt", f"is a checkpoint of somebody_else.py, not of {stem}.py"),
             ("notes.pt", f"is not a checkpoint of {stem}.py: torch cannot read it"),
             ("tensor.pt", f"is not a checkpoint of {stem}.py (it lacks"),
             ("keys.pt", f"is not a checkpoint of {stem}.py (it lacks")]
    for file, message in cases:
        out = run_script(script, "--eval-checkpoint", bad_checkpoints / file, "--no-cuda", cwd=run_dir)
        assert out.returncode != 0, (file, out.stdout)
        assert message in out.stderr, (file, out.stderr[-2000:])
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert not (run_dir / "runs").exists()


@pytest.fixture(scope="module")
def damaged_dataset(pendulum_expert):
    """A copy of a test dataset whose data file is cut short, as an interrupted download leaves it."""
    import shutil

    from minari.storage import get_dataset_path

    src = get_dataset_path(pendulum_expert)
    dst_id = "test/pendulum/damaged-v0"
    dst = get_dataset_path(dst_id)
    shutil.copytree(src, dst, dirs_exist_ok=True)
    data_file = dst / "data" / "main_data.hdf5"
    data_file.write_bytes(data_file.read_bytes()[:4000])
    return dst_id


@pytest.mark.parametrize("stem", SCRIPTS)
def test_a_damaged_dataset_file_is_a_clear_error(stem, damaged_dataset, run_dir):
    out = run_script(SCRIPTS[stem], "--dataset-id", damaged_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert f"Dataset '{damaged_dataset}' is damaged: cannot read" in out.stderr, out.stderr[-2000:]
    assert "main_data.hdf5" in out.stderr and "download it again" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (run_dir / "runs").exists()


def test_keep_freed_memory_sets_the_allocator_and_every_script_calls_it_first():
    import bc

    assert bc.keep_freed_memory(), "mallopt did not accept the thresholds on this glibc machine"
    for stem, file in SCRIPTS.items():
        tree = ast.parse((ROOT / file).read_text())
        main = next(node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.dump(node.test))
        calls = [ast.unparse(statement) for statement in main.body[:2]]
        assert "keep_freed_memory()" in calls, f"{file}: keep_freed_memory() is not called at the start of __main__"


@pytest.mark.parametrize("stem", SCRIPTS)
def test_bad_eval_env_kwargs_are_refused_before_training(stem, pendulum_expert, run_dir):
    out = run_script(SCRIPTS[stem], "--dataset-id", pendulum_expert, "--eval-env-kwargs", '{"mass": 2}',
                     "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "'mass' is neither an argument of PendulumEnv nor one of its attributes" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (run_dir / "runs").exists()


def test_eval_env_kwargs_must_be_a_json_object(run_dir):
    for text in ("m=2", "[1, 2]"):
        out = run_script("bc.py", "--eval-env-kwargs", text, "--no-cuda", cwd=run_dir)
        assert out.returncode != 0 and "--eval-env-kwargs must be a JSON object" in out.stderr, out.stderr[-2000:]
        assert not (run_dir / "runs").exists()
