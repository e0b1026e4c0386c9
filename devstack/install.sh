#!/usr/bin/env bash
# Installs what the local stack needs (idempotent; run as root):
#   - Dovecot (IMAP, POP3, Lua auth) from the distribution, only when missing;
#   - Azurite, pinned in package.json / package-lock.json, into devstack/node_modules.
# The stack runs its own Dovecot instances from generated configs, so any system
# dovecot service started by the package install is stopped and disabled.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
packages=(dovecot-imapd dovecot-pop3d dovecot-auth-lua)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "install.sh: run as root to install ${missing[*]}" >&2
    exit 1
  fi
  # Keep the package scripts from starting the system service where that is possible.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  if ((created_policy)); then
    rm -f "$policy"
  fi
fi

# Stop and disable a system dovecot service if one runs (ours use their own configs).
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
else
  if command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d dovecot disable >/dev/null 2>&1 || true
  fi
  pidfile=/run/dovecot/master.pid
  if [[ -s $pidfile ]]; then
    pid="$(cat "$pidfile")"
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == dovecot ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
fi

# Azurite, exactly the locked version.
cd "$here"
want="$(node -p "require('./package-lock.json').packages['node_modules/azurite'].version")"
have="$(node -p "try { require('./node_modules/azurite/package.json').version } catch (e) { '' }")"
if [[ "$have" != "$want" ]]; then
  npm ci --no-audit --no-fund
fi
echo "devstack: dovecot $(dovecot --version | cut -d' ' -f1), azurite $(node -p "require('./node_modules/azurite/package.json').version")"
