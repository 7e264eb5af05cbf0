#!/bin/sh
# take-ids USER UID GROUP GID: give USER and GROUP the ids the official image gives them, moving
# whichever Debian account holds those ids now out of the way (to 1000 above).
set -eu
user=$1 uid=$2 group=$3 gid=$4
holder=$(getent group "$gid" | cut -d: -f1 || true)
if [ -n "$holder" ] && [ "$holder" != "$group" ]; then groupmod --gid $((gid + 1000)) "$holder"; fi
holder=$(getent passwd "$uid" | cut -d: -f1 || true)
if [ -n "$holder" ] && [ "$holder" != "$user" ]; then usermod --uid $((uid + 1000)) "$holder"; fi
if getent group "$group" >/dev/null; then groupmod --gid "$gid" "$group"; else groupadd --system --gid "$gid" "$group"; fi
if getent passwd "$user" >/dev/null; then
    usermod --uid "$uid" --gid "$gid" "$user"
else
    useradd --system --uid "$uid" --gid "$gid" --no-create-home --home-dir /nonexistent "$user"
fi
