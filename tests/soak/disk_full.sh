#!/bin/bash
# tests/soak/disk_full.sh - an extraction onto a full disk: a tmpfs of TMPFS_MB (default 8) in
# a mount namespace of its own (unshare -m: root, or a user namespace), all but FREE_KB
# (default 1200) of it taken by a filler file. The extraction must fail with "no space left on
# device" naming the store, the store must verify clean (nothing half-written) and hold a
# prefix of the samples, and after the filler is removed the same command must resume and
# finish bitwise equal (build/soak/storehash) to an uninterrupted run on a normal disk.
# Where no tmpfs can be mounted it says so and exits 0. Run by tests/soak/run.sh.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/soak/lib.sh
TMPFS_MB=${TMPFS_MB:-8}
FREE_KB=${FREE_KB:-1200}
W=${SOAK_DIR:-$(mktemp -d /tmp/h2t-soak-disk.XXXXXX)}
mkdir -p "$W/mnt"
if [ -z "${SOAK_IN_NS:-}" ]; then
    if ! unshare -m true 2>/dev/null; then
        say "disk-full soak: no mount namespace here (unshare -m needs root): not run"
        exit 0
    fi
    SOAK_DIR=$W SOAK_IN_NS=1 exec unshare -m "$0" "$@"
fi
t0=$(date +%s)
mount -t tmpfs -o size="${TMPFS_MB}m" h2t-soak "$W/mnt" ||
    { say "disk-full soak: cannot mount a tmpfs: not run"; exit 0; }
soak_data "$W"
rm -rf "$W/ref"
(soak_extract "$W/ref" "$W/ref.log") || die "the uninterrupted extraction: $(cat "$W/ref.log")"
"$HASH" "$W/ref" soak >"$W/ref.hash" || die "hashing the reference"
avail=$(df -k --output=avail "$W/mnt" | tail -n 1 | tr -d ' ')
dd if=/dev/zero of="$W/mnt/filler" bs=1k count=$((avail - FREE_KB)) status=none 2>/dev/null
say "disk-full soak: $N samples onto a ${TMPFS_MB} MiB tmpfs with $(df -k --output=avail "$W/mnt" | tail -n 1 | tr -d ' ') KiB free; the store needs $(du -k "$W/ref/data.mdb" | cut -f1) KiB"
st=$W/mnt/store
if (soak_extract "$st" "$W/full.log"); then
    die "the extraction succeeded on the full disk; make FREE_KB smaller"
fi
grep -q "no space left on device" "$W/full.log" ||
    die "the error does not say 'no space left on device': $(cat "$W/full.log")"
grep -q "$st" "$W/full.log" || die "the error does not name the store $st: $(cat "$W/full.log")"
say "failed as it should: $(grep -m1 'no space' "$W/full.log")"
if [ -f "$st/data.mdb" ]; then
    "$H2T" verify --store "$st" >"$W/verify.log" 2>&1 || die "verify on the full disk: $(cat "$W/verify.log")"
    partial=$("$HASH" "$st" soak | sed -n 's/.* samples \([0-9]*\)\/.*/\1/p')
    say "store on the full disk verifies clean, holds ${partial:-0} of $N samples"
else
    partial=0
    say "no store was created"
fi
rm -f "$W/mnt/filler"
(soak_extract "$st" "$W/resume.log") || die "resuming after space was freed: $(cat "$W/resume.log")"
"$HASH" "$st" soak >"$W/st.hash" || die "hashing"
cmp -s "$W/ref.hash" "$W/st.hash" ||
    die "the resumed store differs from the uninterrupted one: $(diff "$W/ref.hash" "$W/st.hash")"
t1=$(date +%s)
say "disk-full soak: failed with no space left naming the store at ${partial:-0}/$N samples, verified clean, resumed after freeing space bitwise equal to the uninterrupted run; $((t1 - t0)) s"
umount "$W/mnt"
[ -n "${SOAK_KEEP:-}" ] || rm -rf "$W"
