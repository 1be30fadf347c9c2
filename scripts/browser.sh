#!/usr/bin/env bash
# The headless browser of herald's dashboard tests (tests/browser/).
#
#   scripts/browser.sh          install Debian's chromium and chromium-driver if missing
#   scripts/browser.sh check    exit 1 (and say what to run) unless both are there
#
# Idempotent and fast when all is installed: it only looks at two commands.
# Both packages come from Debian, so the driver always matches the browser;
# nothing is downloaded from Google or from Playwright's CDN. The tests drive
# them with Selenium (PyPI `selenium`, in the dev extra) and tell Selenium
# where chromedriver is, so its own driver manager never goes online.
set -euo pipefail

PACKAGES=(chromium chromium-driver)
say() { printf 'browser: %s\n' "$*"; }
die() { printf 'browser: ERROR: %s\n' "$*" >&2; exit 1; }

browser() { command -v chromium || command -v chromium-browser || true; }
driver() { command -v chromedriver || { [[ -x /usr/bin/chromedriver ]] && echo /usr/bin/chromedriver; } || true; }

installed() { [[ -n $(browser) && -n $(driver) ]]; }

report() {
  say "$("$(browser)" --version 2>/dev/null || echo chromium) at $(browser)"
  say "$("$(driver)" --version 2>/dev/null | cut -d' ' -f1-2 || echo chromedriver) at $(driver)"
}

if [[ ${1:-} == check ]]; then
  installed || die "chromium or chromedriver missing: run bash scripts/browser.sh"
  report
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: scripts/browser.sh [check]"

if installed; then
  report
  exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found; install ${PACKAGES[*]} (Chromium and its WebDriver) by hand"
sudo=()
if (( EUID != 0 )); then
  if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
    die "need root to install: run sudo apt-get install -y ${PACKAGES[*]}"
  fi
  sudo=(sudo -n)
fi
policy=$(apt-cache policy chromium 2>/dev/null || true)   # not piped to grep -q: pipefail + SIGPIPE
if [[ $policy != *"Candidate: "[0-9]* ]]; then
  say "apt does not know chromium yet: apt-get update"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update -o Dpkg::Use-Pty=0 >/dev/null
fi
say "installing Debian packages: ${PACKAGES[*]}"
# Lock::Timeout: another apt (scripts/services.sh) may be installing at the same time.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
  -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 "${PACKAGES[@]}" >/tmp/herald-browser-apt.log 2>&1 || {
    tail -n 20 /tmp/herald-browser-apt.log >&2
    die "apt-get failed installing ${PACKAGES[*]} (full output: /tmp/herald-browser-apt.log)"
  }
installed || die "installed ${PACKAGES[*]}, yet chromium or chromedriver is not on PATH"
report
