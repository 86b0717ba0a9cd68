#!/bin/sh
# make install into a temporary DESTDIR, then compile and link a program against the installed
# headers and library through the installed pkg-config file (test common_install).
#
#   tests/install_check.sh WORKDIR
#
# Checks: the binary, libh2tdb.a, h2tdb.pc and every public header land under
# DESTDIR/PREFIX; a program that includes every installed header and opens, writes and reads
# a store builds with `pkg-config --cflags --libs h2tdb` alone (no -I into the source tree)
# and runs; the installed binary answers `version`; deploy/h2tdb.service passes
# `systemd-analyze verify` where systemd is installed. Exit status 0 when all hold.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
work=$1
dest=$work/dest
prefix=/opt/h2t
unset MAKEFLAGS MAKELEVEL MFLAGS
make -s -C "$src" install DESTDIR="$dest" PREFIX="$prefix" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; exit 1; }
for f in bin/h2tdb lib/libh2tdb.a lib/pkgconfig/h2tdb.pc include/h2tdb/storage/store.h \
    include/h2tdb/common/err.h include/h2tdb/solver/solver.h include/h2tdb/client/client.h; do
    [ -f "$dest$prefix/$f" ] || { echo "install_check: $prefix/$f not installed" >&2; exit 1; }
done
grep -qx "prefix=$prefix" "$dest$prefix/lib/pkgconfig/h2tdb.pc" ||
    { echo "install_check: h2tdb.pc does not name prefix $prefix" >&2; exit 1; }

# every installed header, included the way a user does
hdrs=$(cd "$dest$prefix/include/h2tdb" && find . -name '*.h' | sed 's,^\./,,' | sort)
{
    for h in $hdrs; do printf '#include "%s"\n' "$h"; done
    cat <<'EOC'
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    (void)argc;
    h2t_store *st;
    if (h2t_store_open(argv[1], H2T_STORE_CREATE, &st) < 0) {
        fprintf(stderr, "open: %s\n", h2t_err_detail());
        return 1;
    }
    uint32_t src;
    int reused;
    h2t_source s = {.name = "toy", .n_samples = 2, .n_classes = 1,
                    .class_names = (char *[]){"all"}, .labels = (uint32_t[]){0, 0},
                    .split = (uint8_t[]){H2T_SPLIT_TRAIN, H2T_SPLIT_TEST}};
    int rc = h2t_store_source_put(st, &s, &src, &reused);
    h2t_store_close(st);
    if (rc < 0) {
        fprintf(stderr, "source_put: %s\n", h2t_err_detail());
        return 1;
    }
    printf("source %u reused %d\n", src, reused);
    return 0;
}
EOC
} >"$work/prog.c"
export PKG_CONFIG_PATH="$dest$prefix/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
flags=$(pkg-config --cflags --libs h2tdb)
# shellcheck disable=SC2086
${CC:-cc} -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$work/prog" "$work/prog.c" $flags
out=$("$work/prog" "$work/store")
[ "$out" = "source 1 reused 0" ] || { echo "install_check: program said '$out'" >&2; exit 1; }
ver=$("$dest$prefix/bin/h2tdb" version)
case $ver in "h2tdb "*) ;; *) echo "install_check: version said '$ver'" >&2; exit 1 ;; esac
# the systemd unit, pointed at the installed binary, passes systemd's own check
if command -v systemd-analyze >/dev/null 2>&1; then
    sed "s|/usr/local/bin/h2tdb|$dest$prefix/bin/h2tdb|" "$src/deploy/h2tdb.service" \
        >"$work/h2tdb.service"
    systemd-analyze verify "$work/h2tdb.service" >"$work/verify.log" 2>&1 ||
        { cat "$work/verify.log" >&2; exit 1; }
    [ ! -s "$work/verify.log" ] || { cat "$work/verify.log" >&2; exit 1; }
else
    echo "install_check: systemd-analyze not installed, unit not verified"
fi
echo "install_check: ok ($(echo "$hdrs" | wc -l) headers)"
