"""Shell one-liners (busybox sh) that write known lines, optionally paced."""

from __future__ import annotations

LONG_LINE = 40 * 1024


def _loop(body: str, count: int, per_second: int | None) -> str:
    pace = ""
    if per_second:
        pace = f'[ $((i % {per_second})) -eq 0 ] && usleep 1000000; '
    return f"i=1; while [ $i -le {count} ]; do {body}; {pace}i=$((i+1)); done"


def plain(count: int, per_second: int | None = None) -> list[str]:
    """Lines `plain-<i>`; fast when unpaced (seq, not a shell loop)."""
    if per_second is None:
        return ["sh", "-c", f"seq 1 {count} | sed 's/^/plain-/'"]
    return ["sh", "-c", _loop('echo "plain-$i"', count, per_second)]


def long_lines(count: int, per_second: int | None = None, length: int = LONG_LINE) -> list[str]:
    """Lines of exactly `length` characters: `long-<i>-` then x up to the length.

    Docker splits each into 16 KiB pieces; the shipper must put them back together.
    """
    build = f's=$(head -c {length} /dev/zero | tr "\\0" x)'
    body = 'p="long-$i-"; echo "$p${s:${#p}}"'
    return ["sh", "-c", f"{build}; " + _loop(body, count, per_second)]


def binary(count: int, per_second: int | None = None) -> list[str]:
    """Lines with invalid UTF-8 (0xff 0xfe), control bytes and a NUL: `bin-<i> ...`."""
    return ["sh", "-c", _loop(r"printf 'bin-%d \377\376 \001\002\033[31m \000 end\n' $i", count, per_second)]


def expected_binary_text(i: int) -> str:
    """What Docker stores for `binary` line i: invalid bytes become U+FFFD, the rest stays."""
    return f"bin-{i} \ufffd\ufffd \x01\x02\x1b[31m \x00 end"
