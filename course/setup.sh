#!/usr/bin/env bash
# Gradescope's setup.sh: run once, as root, when Gradescope builds the autograder's image
# (gradescope-autograders.readthedocs.io/en/latest/specs/). The autograder zip is the teacher's
# repository with this file, run_autograder and assignment.json (the record make_assignment wrote in the
# student copy) at the zip's root; Gradescope unpacks it into /autograder/source.
# Choose the Ubuntu 24.04 base image: its Python 3.12 is new enough for numpy 2.4.
set -euo pipefail
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
# torch first, pinned and CPU-only: an unpinned one pulls a CUDA build of several GB
/autograder/venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install --no-cache-dir -r /autograder/source/requirements.txt
