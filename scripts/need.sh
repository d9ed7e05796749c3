#!/bin/sh
# scripts/need.sh WHAT=PACKAGE ...: each WHAT (a command on the PATH, or an absolute path) that
# is missing is installed from Debian's PACKAGE with apt-get when we are root; otherwise this
# stops at once with the one command that installs them all.
set -eu
missing=""
for pair in "$@"; do
  what=${pair%%=*}
  package=${pair#*=}
  case $what in
    /*) [ -x "$what" ] && continue ;;
    *) command -v "$what" >/dev/null 2>&1 && continue ;;
  esac
  missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing$missing (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  apt-get install -y -qq $missing >/dev/null
  exit 0
fi
echo "Missing$missing; install with: sudo apt-get install -y$missing" >&2
exit 1
