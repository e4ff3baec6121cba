#!/bin/sh
# Installs WordNet 3.0 for `hrqtok fit --wordnet`, offline-friendly: the Debian packages
# wordnet-base and wordnet-sense-index. As root they are installed with apt-get; otherwise
# they are downloaded with `apt-get download` and unpacked with `dpkg-deb -x` into hrqtok's
# cache. Then hrqtok builds its nltk data folder. Does nothing when WordNet is already found.
# Usage: sh scripts/install-wordnet.sh [PYTHON]
set -eu
PY=${1:-python3}
PACKAGES="wordnet-base wordnet-sense-index"

if "$PY" -m hrqtok.sources.wordnet --check >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null; }
else
    dest=$("$PY" -c 'from hrqtok.sources.wordnet import debian_dir; print(debian_dir())')
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download $PACKAGES)
    mkdir -p "$dest"
    for deb in "$work"/*.deb; do
        dpkg-deb -x "$deb" "$dest"
    done
fi
"$PY" -m hrqtok.sources.wordnet --check
