#!/bin/sh
# Runs a command with a private /dev whose /dev/log is a socket of the test's own, for peers that log only
# through syslog(3) (Cyrus). Run it inside a private mount namespace: `unshare -m sh private-dev.sh DIR LOGSOCK
# -- COMMAND...` (util-linux's unshare makes the mounts private): nothing done here is visible on the host,
# and it all disappears with the last process of the namespace. DIR is a scratch directory of the test.
set -eu
dir=$1
logsock=$2
shift 3 # DIR LOGSOCK --

host=$dir/host-dev
mkdir -p "$host"
mount --rbind /dev "$host"
mount -t tmpfs -o mode=755,size=64k lmtp-test-dev /dev
for node in null zero full random urandom tty; do
  [ -e "$host/$node" ] || continue
  : >"/dev/$node"
  mount --bind "$host/$node" "/dev/$node"
done
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mkdir /dev/shm
mount -t tmpfs -o mode=1777,size=16m lmtp-test-shm /dev/shm
ln -s "$logsock" /dev/log
umount -l "$host"
exec "$@"
