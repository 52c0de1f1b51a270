#!/usr/bin/env bash
# Installs segview and its test tools into a Python environment, choosing the
# right torch build first so pip never swaps it:
#   - an environment that already has torch >= 2.10 (e.g. a user's CUDA build) keeps it;
#   - a machine with an NVIDIA driver gets the registry's CUDA build;
#   - any other machine gets the CPU build (torch==2.13.0).
# Target: the active virtualenv/conda env if there is one, else ./.venv.
# Idempotent: a second run with nothing changed returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

pip_install() {  # quiet, without the warnings of unused local package folders
    "$py" -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

if [[ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]]; then
    py=python
else
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    py=.venv/bin/python
fi

# Test tools from Debian, checked on every run (a few lookups, no apt when present):
# dciodvfy (dicom3tools) judges the DICOM files segview writes; Orthanc with its DICOMweb
# plugin is the PACS the tests start on loopback, stunnel4 puts it behind TLS as hospitals
# do. Without them those tests are skipped.
have_orthanc() { command -v Orthanc >/dev/null || [[ -x /usr/sbin/Orthanc ]]; }
have_dicomweb() { [[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]]; }
have_stunnel() { command -v stunnel4 >/dev/null || command -v stunnel >/dev/null; }
if [[ "$(uname)" == Linux ]] && ! { command -v dciodvfy >/dev/null && have_orthanc && have_dicomweb && have_stunnel; }; then
    tools="dicom3tools orthanc orthanc-dicomweb stunnel4"
    if command -v apt-get >/dev/null && [[ $EUID -eq 0 ]]; then
        echo "setup: installing $tools (DICOM conformance and PACS tests)"
        if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $tools >/dev/null; then
            # The tests start their own Orthanc; the system service the package enables
            # would listen on the network (DICOM port 4242) for nothing.
            if command -v systemctl >/dev/null && systemctl is-active --quiet orthanc 2>/dev/null; then
                systemctl disable --now orthanc >/dev/null 2>&1 || true
            fi
        else
            echo "setup: could not install $tools; the tests that need them are skipped" >&2
        fi
    else
        echo "setup: the DICOM conformance and PACS tests need $tools; install them with:" >&2
        echo "       sudo apt-get install $tools" >&2
    fi
fi

stamp=".setup-stamp"
want="$(sha1sum pyproject.toml | cut -c1-40) $($py -c 'import sys; print(sys.prefix)')"
if [[ -f $stamp && "$(cat $stamp)" == "$want" ]] && $py -c "import segview, torch" 2>/dev/null; then
    exit 0
fi

if $py - <<'PY' 2>/dev/null
import torch, sys
major, minor = (int(p) for p in torch.__version__.split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 10) else 1)
PY
then
    echo "setup: keeping installed torch $($py -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing the CUDA build of torch"
    pip_install "torch>=2.10"
else
    echo "setup: no GPU, installing the CPU build of torch"
    pip_install "torch==2.13.0"
fi

pip_install -e ".[test]"

# Qt's window system plugin (xcb) needs these shared libraries; a bare Debian lacks some.
qt_libs="libxcb-cursor.so.0 libxkbcommon-x11.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1 libEGL.so.1 libfontconfig.so.1"
missing=$(for lib in $qt_libs; do ldconfig -p 2>/dev/null | grep -q "$lib" || echo "$lib"; done)
if [[ -n "$missing" && "$(uname)" == Linux ]]; then
    packages="libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libegl1 libgl1 libfontconfig1 libdbus-1-3"
    if command -v apt-get >/dev/null && [[ $EUID -eq 0 ]]; then
        echo "setup: installing the system libraries Qt needs"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    else
        echo "setup: Qt needs $(echo $missing) to open a window; install them with:" >&2
        echo "       sudo apt-get install $packages" >&2
    fi
fi
echo "$want" > $stamp
