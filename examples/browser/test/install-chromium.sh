#!/usr/bin/env bash
# Installs Debian's chromium when /usr/bin/chromium is missing (the browser
# test drives it with playwright-core; Playwright's own browser downloads are
# not used). Root runs apt-get directly, anyone else through sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing Debian's chromium (apt-get)"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
