#!/bin/bash
# The checks of scripts/package-test, run inside the fresh Debian root
# (chrooted, in a network namespace of its own): install, use, upgrade,
# remove and purge the three packages in /tmp/debs.
set -euo pipefail
pass=0
ok() { pass=$((pass + 1)); echo "  ok: $*"; }
fail() { echo "  FAIL: $*" >&2; exit 1; }
tables() { nft list tables 2>/dev/null | grep portwall || true; }
# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

echo "== install"
dpkg -i /tmp/debs/*.deb > /tmp/install.log 2>&1 || { cat /tmp/install.log; fail "dpkg -i"; }
[ -z "$(tables)" ] || fail "installing enforced something: $(tables)"
ok "installed, no table in the kernel"
grep -q "nothing enforced" /tmp/install.log || fail "no 'nothing enforced' note: $(cat /tmp/install.log)"
[ "$(systemctl is-enabled portwall.service 2>&1)" = enabled ] || fail "portwall.service is not enabled"
for u in portwall-panel portwall-edge; do
  state=$(systemctl is-enabled "$u.service" 2>&1 || true)
  [ "$state" = disabled ] || fail "$u.service: '$state', expected disabled until configured"
done
ok "portwall.service enabled (restore at boot), panel and edge units installed, not enabled"
getent passwd portwall-panel >/dev/null || fail "no system user portwall-panel"
[ "$(stat -c %U /var/lib/portwall-panel)" = portwall-panel ] || fail "/var/lib/portwall-panel not owned by portwall-panel"
ok "system user portwall-panel owns /var/lib/portwall-panel"
for pair in portwall-panel:/etc/portwall/panel.toml portwall-edge:/etc/portwall/edge.toml \
    portwall:/etc/fail2ban/action.d/portwall.conf; do
  dpkg-query -W -f='${Conffiles}\n' "${pair%%:*}" | grep -q " ${pair#*:} " \
    || fail "${pair#*:} is not a conffile of ${pair%%:*}"
done
ok "panel.toml, edge.toml and fail2ban's action.d/portwall.conf are conffiles"

echo "== binaries, man pages, completions"
v=$(portwall --version) && [[ "$v" =~ ^portwall\ [0-9] ]] || fail "portwall --version: $v"
[ "$(command -v portwall)" = /usr/bin/portwall ] || fail "portwall is not /usr/bin/portwall"
ok "$v (/usr/bin/portwall)"
for b in portwall-panel portwall-edge; do
  v=$($b --version) && [[ "$v" =~ ^$b\ [0-9] ]] || fail "$b --version: $v"
  [ "$(command -v $b)" = "/usr/sbin/$b" ] || fail "$b is not in /usr/sbin"
  ok "$v (/usr/sbin/$b)"
done
for page in portwall portwall-allow portwall-cloud portwall-panel portwall-edge portwall-edge-run; do
  path=$(man -w "$page") || fail "man -w $page"
  [[ "$path" == /usr/share/man/man8/$page.8.gz ]] || fail "man -w $page: $path"
done
ok "man -w: portwall(8), portwall-allow(8), portwall-cloud(8), portwall-panel(8), portwall-edge(8), portwall-edge-run(8)"
MANWIDTH=100 man portwall-allow 2>/dev/null | grep -q "Allow traffic" || fail "portwall-allow(8) does not render the command's help"
! man -w portwall-generate >/dev/null 2>&1 || fail "the hidden generate command has a man page"
ok "portwall-allow(8) renders; no page for the hidden generate command"
for b in portwall portwall-panel portwall-edge; do
  for f in /usr/share/bash-completion/completions/$b /usr/share/zsh/vendor-completions/_$b /usr/share/fish/vendor_completions.d/$b.fish; do
    [ -s "$f" ] || fail "missing completion file $f"
  done
  bash -c "source /usr/share/bash-completion/completions/$b && complete -p $b" >/dev/null || fail "bash does not load the completion of $b"
done
grep -q "allow" /usr/share/zsh/vendor-completions/_portwall || fail "_portwall lacks the subcommands"
ok "bash (loads), zsh and fish completions of the three binaries"

echo "== systemd-analyze verify"
for u in portwall portwall-panel portwall-edge; do
  out=$(systemd-analyze verify "/usr/lib/systemd/system/$u.service" 2>&1) || fail "systemd-analyze verify $u.service: $out"
  # Warnings about units of the base system are not ours; ours must be clean.
  if echo "$out" | grep "$u.service" | grep -v "^$"; then fail "systemd-analyze verify $u.service warns"; fi
  ok "systemd-analyze verify $u.service"
done

echo "== use"
portwall allow 22/tcp >/dev/null
portwall restore >/dev/null
[ -z "$(tables)" ] || fail "portwall restore (the boot unit) enforced rules before portwall enable"
ok "portwall restore (what portwall.service runs at boot) enforces nothing before portwall enable"
portwall enable >/dev/null
nft list table inet portwall >/dev/null || fail "portwall enable made no table"
ok "portwall allow 22/tcp && portwall enable: table inet portwall"
# The packaged panel, as its system user, and an edge agent following it.
runuser -u portwall-panel -- portwall-panel --listen 127.0.0.1:8080 --data-dir /var/lib/portwall-panel \
  > /tmp/panel.log 2>&1 &
panel=$!
wait_for 60 grep -q "admin token" /tmp/panel.log || { cat /tmp/panel.log; fail "the panel did not start"; }
admin=$(sed -n 's/.*admin token (shown once, keep it safe): //p' /tmp/panel.log)
edge_token=$(curl -fsS -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"name":"package test","kind":"edge","zone":"test"}' http://127.0.0.1:8080/v1/tokens \
  | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
[ -n "$edge_token" ] || fail "no edge token from the panel"
PORTWALL_EDGE_TOKEN=$edge_token portwall-edge run --panel-url http://127.0.0.1:8080 --zone test > /tmp/edge.log 2>&1 &
edge=$!
wait_for 60 nft list table inet portwall_edge || { cat /tmp/edge.log; fail "the edge made no table"; }
kill "$edge"; wait "$edge" || true
kill "$panel"; wait "$panel" || true
nft list table inet portwall_edge >/dev/null || fail "the edge's table went away when the agent stopped (not fail-static)"
ok "the packaged panel (as portwall-panel) and edge: table inet portwall_edge, kept after the agent stops"
# Fail-static start, as at boot: the table gone, the panel unreachable; the
# agent restores its saved policy before it contacts the panel.
nft delete table inet portwall_edge
PORTWALL_EDGE_TOKEN=$edge_token portwall-edge run --panel-url http://127.0.0.1:9 --zone test > /tmp/edge2.log 2>&1 &
edge=$!
wait_for 60 nft list table inet portwall_edge || { cat /tmp/edge2.log; fail "the edge did not restore its table with the panel down"; }
kill "$edge"; wait "$edge" || true
ok "portwall-edge run restores its saved table with the panel unreachable (fail-static)"

echo "== upgrade (reinstall)"
before=$(nft list ruleset)
echo "# a local edit" >> /etc/portwall/panel.toml
dpkg -i /tmp/debs/*.deb > /tmp/upgrade.log 2>&1 || { cat /tmp/upgrade.log; fail "dpkg -i (upgrade)"; }
[ "$(nft list ruleset)" = "$before" ] || fail "the upgrade changed the firewall"
grep -q "# a local edit" /etc/portwall/panel.toml || fail "the upgrade lost the local edit of panel.toml"
ok "the upgrade left both tables as they were and kept the edited panel.toml"

echo "== remove"
dpkg --remove portwall portwall-panel portwall-edge > /tmp/remove.log 2>&1 || { cat /tmp/remove.log; fail "dpkg --remove"; }
[ -z "$(tables)" ] || fail "tables left after removal: $(tables)"
[ -f /etc/portwall/rules.toml ] || fail "removal deleted the saved rules (only a purge should)"
ok "removed: no portwall table left, /etc/portwall/rules.toml kept"

echo "== purge"
dpkg --purge portwall portwall-panel portwall-edge > /tmp/purge.log 2>&1 || { cat /tmp/purge.log; fail "dpkg --purge"; }
[ -z "$(tables)" ] || fail "tables left after purge: $(tables)"
for p in /etc/portwall /var/lib/portwall-panel /var/lib/portwall-edge /etc/fail2ban/action.d/portwall.conf; do
  [ ! -e "$p" ] || fail "$p left after purge: $(ls -la "$p")"
done
left=$(dpkg -l 'portwall*' 2>/dev/null | grep '^[a-z][a-z] ' | grep -v '^un' || true)
[ -z "$left" ] || fail "dpkg still knows: $left"
ok "purged: no table, no /etc/portwall, /var/lib/portwall-panel, /var/lib/portwall-edge, fail2ban action"
echo "$pass passed, 0 failed"
