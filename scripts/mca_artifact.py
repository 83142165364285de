#!/usr/bin/env python3
"""llvm-mca Cortex-A76 table for every binary kernel of an aarch64 artifact (``bhvit-compile --target rpi5``).

The library is stripped: only each kernel's packed-function wrapper (``__tvm_ffi_<name>``) keeps a symbol, and
its compute and parallel bodies sit unnamed after all wrappers. They are found through the code addresses each
wrapper references (``bl`` targets, ``adr`` and ``adrp``+``add`` addresses: how a body is handed to TVM's
parallel launcher), followed transitively; each function's extent comes from the unwind table (``.eh_frame``,
which stripping keeps). In the code reached from each binary kernel (``bit_macs`` > 0 in
metadata.json), the hot loop is the smallest backward-branch loop with the most ``cnt`` instructions; llvm-mca
(``-mcpu=cortex-a76``) gives its cycles per iteration, so bit-MAC/cycle = bits / cycles (128 per ``cnt.16b``, 64
per ``cnt.8b``), against the A76 ceiling of 85 (3 SIMD uops per 128 bit-MACs on 2 pipes). Column ``fp``: the
loop's float instructions. 0: the loop is the reduction alone (the float epilogue runs after it, outside the
measure); more: LLVM unrolled a short reduction and the loop is a whole output tile, its epilogue included.

    python3 scripts/mca_artifact.py artifacts/w3-rpi5 [--json table.json] [--mcpu neoverse-n1 --llvm-mca llvm-mca-19]

Needs ``aarch64-linux-gnu-objdump`` (binutils-aarch64-linux-gnu) and ``llvm-mca`` (package ``llvm``); with
``aarch64-linux-gnu-readelf`` (same package) each function's extent comes from the unwind table, else it ends at
the next referenced address.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels import A76_CEILING, MCA_CPU, mca  # noqa: E402

OBJDUMP = "aarch64-linux-gnu-objdump"
READELF = "aarch64-linux-gnu-readelf"
WRAPPER = "__tvm_ffi_"
_LINE = re.compile(r"^\s*([0-9a-f]+):\t(\S+)(?:\t(.*))?$")
_BRANCHES = ("b", "bl", "cbz", "cbnz", "tbz", "tbnz")


@dataclass(frozen=True)
class Insn:
    addr: int
    op: str
    args: str

    @property
    def target(self) -> int | None:
        """The address a branch or ``adrp`` names (objdump prints it as hex, then ``<symbol+offset>``)."""
        if self.op in _BRANCHES or self.op.startswith("b.") or self.op in ("adr", "adrp"):
            m = re.search(r"(?:^|, )([0-9a-f]+) <", self.args)
            return int(m.group(1), 16) if m else None
        return None

    def text(self) -> str:
        return f"\t{self.op}\t{self.args.split('//')[0].strip()}".rstrip()


def disassemble(library: Path) -> tuple[list[Insn], dict[str, int]]:
    """Every instruction of .text, and the address of each exported wrapper by kernel name."""
    out = subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True)
    out.check_returncode()
    insns, symbols = [], {}
    for line in out.stdout.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.+?)(?:@@Base)?>:$", line)
        if m and m.group(2).startswith(WRAPPER):
            symbols[m.group(2)[len(WRAPPER) :]] = int(m.group(1), 16)
            continue
        m = _LINE.match(line)
        if m:
            insns.append(Insn(int(m.group(1), 16), m.group(2), m.group(3) or ""))
    return insns, symbols


def function_ranges(library: Path) -> list[tuple[int, int]]:
    """``(start, end)`` of every function with an unwind entry (``.eh_frame`` FDEs: a stripped library keeps
    them), sorted; empty when ``readelf`` cannot read them."""
    if shutil.which(READELF) is None:
        return []
    out = subprocess.run([READELF, "--debug-dump=frames", str(library)], capture_output=True, text=True)
    return sorted((int(a, 16), int(b, 16)) for a, b in re.findall(r"pc=([0-9a-f]+)\.\.([0-9a-f]+)", out.stdout))


def _references(code: list[Insn]) -> set[int]:
    """Code addresses a function passes on: ``bl``, ``adr`` and tail-call ``b`` targets, ``adrp`` page + ``add``
    offset pairs (a page counts until its register is written again or a call clobbers it)."""
    refs, pages = set(), {}
    inside = range(code[0].addr, code[-1].addr + 4) if code else range(0)
    for insn in code:
        if insn.op in ("bl", "adr") and insn.target is not None:
            refs.add(insn.target)
        elif insn.op == "b" and insn.target is not None and insn.target not in inside:  # a tail call
            refs.add(insn.target)
        elif insn.op == "add":
            m = re.match(r"(\w+), (\w+), #0x([0-9a-f]+)$", insn.args.split("//")[0].strip())
            if m and m.group(2) in pages:
                refs.add(pages[m.group(2)] + int(m.group(3), 16))
        if insn.op in ("bl", "blr"):  # the callee may overwrite x0-x18 and x30; x19-x28 are callee-saved
            pages = {reg: page for reg, page in pages.items() if reg in _CALLEE_SAVED}
        elif insn.op == "adrp" and insn.target is not None:
            pages[insn.args.split(",")[0]] = insn.target
        elif _writes_first_operand(insn.op):
            pages.pop(_x_register(insn.args.split(",")[0].strip()), None)
    return refs


_CALLEE_SAVED = {f"x{n}" for n in range(19, 29)}
# instructions whose first operand is only read (stores, compares, branches, prefetches)
_READS_FIRST = {"cmp", "cmn", "tst", "ccmp", "ccmn", "fcmp", "fcmpe", "fccmp", "br", "ret", "prfm"}


def _writes_first_operand(op: str) -> bool:
    return not (op in _READS_FIRST or op in _BRANCHES or op.startswith(("st", "b.")))


def _x_register(reg: str) -> str:
    """``wN`` (the low half) as ``xN``: writing it rewrites the whole register."""
    return "x" + reg[1:] if re.fullmatch(r"w\d+", reg) else reg


def kernel_code(
    insns: list[Insn], symbols: dict[str, int], max_callers: int = 1, ranges: list[tuple[int, int]] = ()
) -> dict[str, list[Insn]]:
    """Per exported kernel, the instructions of every function reachable from its wrapper through functions that
    at most ``max_callers`` functions reference (helpers that many call, such as error reporting, are left out;
    a body shared by two identical kernels needs ``max_callers=2``). A function ends where its unwind entry in
    ``ranges`` ends, else at the next address some function references (a reference into the middle of a
    function, or a forward branch taken for a tail call, then cuts it short)."""
    index = {insn.addr: i for i, insn in enumerate(insns)}
    wrappers = set(symbols.values())
    starts = sorted(wrappers | {r for r in _references(insns) if r in index})

    def function(start: int) -> list[Insn]:
        end = next((e for s, e in ranges if s <= start < e), None)
        if end is not None:
            stop = next((i for i in range(index[start], len(insns)) if insns[i].addr >= end), len(insns))
            return insns[index[start] : stop]
        i = starts.index(start)
        return insns[index[start] : index[starts[i + 1]] if i + 1 < len(starts) else len(insns)]

    while True:  # tail calls split the functions they land in: repeat until no new start appears
        found = {r for start in starts for r in _references(function(start)) if r in index} - set(starts)
        if not found:
            break
        starts = sorted(set(starts) | found)
    callers: dict[int, int] = {}
    for start in starts:
        for ref in _references(function(start)):
            callers[ref] = callers.get(ref, 0) + 1
    code = {}
    for name, start in symbols.items():
        seen, todo, body = set(), [start], []
        while todo:
            addr = todo.pop()
            if addr in seen:
                continue
            seen.add(addr)
            part = function(addr)
            body += part
            own = [r for r in _references(part) if r in index and r not in wrappers]
            todo += [r for r in own if callers.get(r, 0) <= max_callers]
        code[name] = body
    return code


def hot_loop(code: list[Insn]) -> list[str]:
    """The smallest backward-branch loop with the most ``cnt`` (the branch itself left out)."""
    by_addr = {insn.addr: i for i, insn in enumerate(code)}
    best: list[Insn] = []
    for j, insn in enumerate(code):
        start = by_addr.get(insn.target) if insn.op not in ("bl", "adr", "adrp") else None
        if start is None or start >= j:
            continue
        body = code[start:j]
        score = (sum(i.op == "cnt" for i in body), -len(body))
        if score[0] and (not best or score > (sum(i.op == "cnt" for i in best), -len(best))):
            best = body
    return [i.text() for i in best if i.target is None]


def table(artifact: Path, cpu: str = MCA_CPU, exe: str | None = None) -> list[dict]:
    meta = json.loads((artifact / "metadata.json").read_text())
    binary = {name: k for name, k in meta.get("kernels", {}).items() if k.get("bit_macs")}
    if not binary:
        raise SystemExit(f"{artifact}: metadata.json lists no binary kernels (rebuild the artifact with this kit)")
    insns, symbols = disassemble(artifact / meta["library"])
    ranges = function_ranges(artifact / meta["library"])
    code, shared = (kernel_code(insns, symbols, callers, ranges) for callers in (1, 2))
    rows = []
    for name, info in sorted(binary.items()):
        body = hot_loop(code.get(name, [])) or hot_loop(shared.get(name, []))
        row = {"kernel": name, "op": info["op"]}
        rows.append(row | (mca(body, cpu, exe) if body else {"error": "no loop with cnt found"}))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path, help="artifact directory of an aarch64 (rpi5) build")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument(
        "--mcpu",
        default=MCA_CPU,
        help=f"llvm-mca's scheduling model (default {MCA_CPU}, which LLVM 14 and 19 give the Cortex-A57's model; "
        "neoverse-n1, the A76's server twin, has a model of its own in LLVM 19, not in 14)",
    )
    ap.add_argument("--llvm-mca", help="the llvm-mca to run (default: llvm-mca, else the newest llvm-mca-N)")
    args = ap.parse_args()
    if shutil.which(OBJDUMP) is None:
        ap.error(f"{OBJDUMP} not found: apt-get install binutils-aarch64-linux-gnu")
    if args.llvm_mca and shutil.which(args.llvm_mca) is None:
        ap.error(f"{args.llvm_mca} not found")
    rows = table(args.artifact, args.mcpu, args.llvm_mca)
    ceiling = f"% of {A76_CEILING:.0f}"
    tool = next((r["tool"] for r in rows if "tool" in r), args.llvm_mca or "llvm-mca")
    print(f"{tool} -mcpu={args.mcpu}")
    print(f"{'kernel':52s} {'instr':>5s} {'cnt':>4s} {'fp':>4s} {'cyc/it':>7s} {'bitMAC/cyc':>10s} {ceiling:>7s}")
    for r in rows:
        if "error" in r:
            print(f"{r['kernel']:52s} {r['error']}")
            continue
        print(
            f"{r['kernel']:52s} {r['instructions']:5d} {r['cnt']:4d} {r['fp']:4d} {r['cycles_per_iter']:7.1f} "
            f"{r['bit_mac_per_cycle']:10.1f} {r['pct_of_a76_ceiling']:7.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
