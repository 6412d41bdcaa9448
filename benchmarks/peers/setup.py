"""Make benchmarks/peers/.venv: the torch of the project's environment (CPU build) and d3rlpy 2.8.1.

    python -m benchmarks.peers.setup [--force]

d3rlpy 2.8.1 pins gymnasium 1.0.0 and the project uses 1.4.0, so d3rlpy gets an environment of its own.
Its torch is the project's own version from PyTorch's CPU index, so that a speed comparison measures
the code and not the build. A second call checks the installed versions and returns in seconds.
"""

import argparse
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")
PYTHON = os.path.join(VENV, "bin", "python")
D3RLPY = "2.8.1"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_version() -> str:
    """The project's torch without its local tag (2.13.0+cpu -> 2.13.0), read without importing it."""
    try:
        return version("torch").split("+")[0]
    except PackageNotFoundError:
        sys.exit("error: run this with the project's Python (torch installed: pip install -r requirements.txt)")


def installed() -> dict:
    """{package: version} in the peers venv, {} where the venv or a package is missing."""
    if not os.path.exists(PYTHON):
        return {}
    code = ("from importlib.metadata import version\n"
            "for p in ('torch', 'd3rlpy'):\n"
            "    try: print(p, version(p))\n"
            "    except Exception: pass\n")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)


def ready(want_torch: str) -> bool:
    have = installed()
    return have.get("torch", "").split("+")[0] == want_torch and have.get("d3rlpy") == D3RLPY


def pip(*args: str) -> None:
    cmd = [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+ " + " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"error: the install into {VENV} failed (command above; its output is above it). The venv is "
                 f"left as it is: rerun `python -m benchmarks.peers.setup --force` to start it afresh.")


def main(force: bool = False) -> str:
    """Make (or check) the venv; returns the path of its python."""
    want = torch_version()
    if not force and ready(want):
        print(f"{VENV}: torch {want}, d3rlpy {D3RLPY} (already installed)")
        return PYTHON
    if force or not os.path.exists(PYTHON):
        print(f"creating {VENV}", flush=True)
        if subprocess.run([sys.executable, "-m", "venv", "--clear", VENV]).returncode != 0:
            sys.exit(f"error: `{sys.executable} -m venv {VENV}` failed")
    # torch first and pinned, from the CPU index: d3rlpy asks for torch>=2.5.0, which from PyPI alone
    # would pull the newest CUDA build (several GB)
    pip(f"torch=={want}", "--index-url", TORCH_INDEX)
    pip(f"d3rlpy=={D3RLPY}", f"torch=={want}")
    if not ready(want):
        sys.exit(f"error: after the install {VENV} has {installed()}, not torch {want} and d3rlpy {D3RLPY}")
    print(f"{VENV}: torch {want}, d3rlpy {D3RLPY}")
    return PYTHON


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--force", action="store_true", help="remake the venv from scratch")
    main(p.parse_args().force)
