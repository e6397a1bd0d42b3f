"""Check a built edgepack wheel before it is installed: ``python scripts/check_wheel.py WHEEL``.

What a wheel that PyPI accepts and old distributions can load must be:

* tagged ``cp310-abi3`` (one wheel for every CPython >= 3.10) and ``manylinux`` x86_64 with a
  glibc floor of at most 2.28 (``manylinux2014`` = 2.17 is what ``maturin --zig`` gives);
* its ``_core`` extension needs no ``GLIBC_x.y`` symbol version above that floor (read from the
  ELF ``.gnu.version_r`` section, independently of the tag maturin chose), and is stripped;
* it ships the LICENSE and the type information (``_core.pyi``, ``py.typed``).

Needs ``pyelftools`` (a dependency of ``auditwheel``, which CI installs for ``auditwheel show``).
Prints one line per fact and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import zipfile
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

#: The newest glibc a wheel may need: manylinux_2_28 (RHEL 8, Debian 10+, Ubuntu 18.10+).
MAX_FLOOR = (2, 28)

TAG = re.compile(
    r"^edgepack-[^-]+-cp310-abi3-(?P<plat>(?:manylinux[0-9a-z_]*x86_64\.?)+)\.whl$"
)


def _plat_floor(plat: str) -> tuple[int, int]:
    """The lowest glibc any of the wheel's platform tags promises to run on."""
    floors = []
    for tag in plat.split("."):
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", tag)
        if m:
            floors.append((int(m[1]), int(m[2])))
        elif tag == "manylinux2014_x86_64":
            floors.append((2, 17))
        elif tag == "manylinux2010_x86_64":
            floors.append((2, 12))
        elif tag == "manylinux1_x86_64":
            floors.append((2, 5))
        else:
            raise SystemExit(f"unknown platform tag {tag!r}")
    return min(floors)


def glibc_versions(elf_bytes: bytes) -> list[tuple[int, int]]:
    """Every ``GLIBC_x.y`` version the library needs from libc / libm / libpthread / ..."""
    elf = ELFFile(io.BytesIO(elf_bytes))
    found: set[tuple[int, int]] = set()
    for section in elf.iter_sections():
        if not isinstance(section, GNUVerNeedSection):
            continue
        for _needed, auxes in section.iter_versions():
            for aux in auxes:
                m = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", aux.name)
                if m:
                    found.add((int(m[1]), int(m[2])))
    return sorted(found)


def is_stripped(elf_bytes: bytes) -> bool:
    elf = ELFFile(io.BytesIO(elf_bytes))
    return elf.get_section_by_name(".symtab") is None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path)
    args = ap.parse_args(argv)
    wheel: Path = args.wheel

    m = TAG.match(wheel.name)
    if not m:
        raise SystemExit(f"FAIL tag: {wheel.name} is not edgepack-*-cp310-abi3-manylinux*_x86_64")
    floor = _plat_floor(m["plat"])
    if floor > MAX_FLOOR:
        raise SystemExit(f"FAIL tag: {wheel.name} needs glibc {floor}, more than {MAX_FLOOR}")
    print(f"ok   tag {m['plat']} (glibc floor {floor[0]}.{floor[1]}), cp310-abi3")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        so_names = [n for n in names if re.fullmatch(r"edgepack/_core\.abi3\.so", n)]
        if len(so_names) != 1:
            raise SystemExit(f"FAIL contents: expected edgepack/_core.abi3.so, found {so_names}")
        so = z.read(so_names[0])
        for want in ("edgepack/_core.pyi", "edgepack/py.typed", "edgepack/__init__.py"):
            if want not in names:
                raise SystemExit(f"FAIL contents: {want} is missing from the wheel")
        lic = [n for n in names if re.fullmatch(r"edgepack-[^/]+\.dist-info/(licenses/)?LICENSE", n)]
        if not lic or b"Apache License" not in z.read(lic[0]):
            raise SystemExit("FAIL contents: no Apache-2.0 LICENSE in the wheel's dist-info")
        wheel_meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        tags = [ln.split(": ", 1)[1] for ln in z.read(wheel_meta).decode().splitlines()
                if ln.startswith("Tag: ")]
    print(f"ok   contents: _core.abi3.so, _core.pyi, py.typed, {lic[0]}; WHEEL tags {tags}")

    versions = glibc_versions(so)
    if not versions:
        raise SystemExit("FAIL glibc: found no GLIBC_ symbol versions (not a glibc build?)")
    top = versions[-1]
    if top > floor:
        raise SystemExit(
            f"FAIL glibc: _core.abi3.so needs GLIBC_{top[0]}.{top[1]}, above the tag's "
            f"floor {floor[0]}.{floor[1]}"
        )
    print(f"ok   glibc: highest symbol version the .so needs is GLIBC_{top[0]}.{top[1]} "
          f"(<= {floor[0]}.{floor[1]})")

    if not is_stripped(so):
        raise SystemExit("FAIL strip: _core.abi3.so still has a .symtab section")
    print(f"ok   stripped: _core.abi3.so is {len(so):,} bytes, no .symtab")
    return 0


if __name__ == "__main__":
    sys.exit(main())
