"""Serial numba kernels loaded from native object code, without importing numba.

A process that calls one compiled kernel pays for ``import numba`` and numba's target context
(0.35-0.45 s on an idle machine, docs/performance.md) even when the kernel itself comes
from numba's cache. The kernels named in :data:`SPECS` are therefore also kept as ELF object
files that numba compiled earlier: a thin ``numba.cfunc`` wrapper turns pointers into arrays
(``numba.carray``) and calls the existing ``@njit`` kernel, which numba links into the
wrapper's library; that library's final LLVM module, with the wrapper's Python error
handling replaced by a plain entry point that returns numba's status code, is emitted as an
object file. A later process loads it and calls it through ctypes: on Linux x86-64 with a
small loader of its own (:func:`load_elf`: the sections copied, the relocations applied,
about 1 ms), elsewhere, or for an object that loader does not handle, with llvmlite's MCJIT
(``add_object_file``; importing llvmlite costs 0.05-0.25 s). The formulas stay written
once: the object holds the very kernel the numba path runs, and tests check that both give
bit-identical results.

What is kept, and where: ``<kernel cache>/native/<kernel>-<key>.native`` beside numba's own
cache (:func:`fhnpde.backends.kernel_cache_dir`), one file per kernel, written atomically.
The key covers everything that changes the code: the package's source fingerprint and
version, numba's, llvmlite's and numpy's versions, the CPU (:func:`cpu_identity`), the
kernel's signature and the wrapper's format, and numba's settings from the environment. A missing,
stale, corrupt or unloadable entry falls back to the numba path, which then writes the
entry; a kernel whose object would need numba's runtime (memory allocation, Python objects)
is refused, and the refusal is kept so that the build is not tried again.

A native kernel is called like the numba kernel. Arguments of another type or layout than
its signature (a non-contiguous array, say) and a non-zero status (an exception inside the
kernel) go to the numba kernel with the original arguments, so the result or the exception
is numba's.

``FHNPDE_NATIVE=0`` turns the native path off.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

#: the format of the wrapper and the entry (part of every key)
FORMAT = 3
MAGIC = b"FHNPDE-NATIVE 1\n"

#: argument kinds: scalars (``i`` int64, ``b`` bool, ``f`` float64), ``p4`` a tuple of four
#: floats (anything else there goes to numba), C-contiguous arrays ``f8:N`` / ``i8:N`` of N
#: dimensions
_ARRAY_DTYPES = {"f8": "float64", "i8": "int64"}


@dataclass(frozen=True)
class Spec:
    """A kernel that can load natively: its module, its name, its argument kinds (see
    above), the kinds of the tuple it returns (empty: it returns nothing), and the arguments
    it overwrites although they are inputs (saved before each call, for the numba fallback)."""

    module: str
    name: str
    args: tuple[str, ...]
    returns: tuple[str, ...] = ()
    scratch: tuple[int, ...] = ()


SPECS = {
    (s.module, s.name): s
    for s in (
        Spec("fhnpde.solvers.explicit_numba", "explicit_advance_serial",
             ("i", "f8:1", "f8:1", "f8:1", "p4", "f", "f", "f", "i", "i", "i", "f8:1",
              "f8:1"), scratch=(1, 2)),
        Spec("fhnpde.solvers.explicit_numba", "explicit4_advance_serial",
             ("i", "f8:1", "f8:1", "f8:1", "p4", "f", "f", "f", "i", "i", "i", "i", "i",
              "f8:1", "f8:1"), scratch=(1, 2)),
        Spec("fhnpde.solvers.crank_nicolson_numba", "cn_cable_advance",
             ("i", "f8:1", "f8:1", "f8:1", "f8:2", "f8:1", "f8:1", "f8:1", "f8:1", "f8:1", "f",
              "f", "i", "f", "f", "i", "i", "f8:1", "f8:1", "f8:1", "f", "f", "f", "i", "b",
              "b", "f8:1", "f8:1", "i8:1", "f8:2", "i8:1"), returns=("i", "i", "i", "f")),
        Spec("fhnpde.solvers.staggered_numba", "staggered_cable_advance",
             ("i", "f8:1", "f8:1", "f8:1", "f8:2", "f8:1", "f8:1", "f8:1", "f8:1", "f8:1", "f",
              "f", "i", "f", "f", "i", "i", "f8:1", "f8:1", "f8:1", "f", "f", "f8:1", "f8:1",
              "f8:2"), returns=("i", "i", "i", "f")),
        Spec("fhnpde.solvers.sdirk_numba", "sdirk_cable_advance",
             ("i", "f8:1", "f8:1", "f8:1", "f8:2", "f8:1", "f8:1", "f8:1", "f8:1", "f8:1",
              "f8:1", "f", "f", "i", "f", "f", "i", "i", "f8:1", "f8:1", "f8:1", "f", "f", "f",
              "i", "b", "b", "f8:1", "f8:1", "i8:1", "f8:2", "f8:2", "i8:1"),
             returns=("i", "i", "i", "f")),
    )
}


def enabled() -> bool:
    return os.environ.get("FHNPDE_NATIVE", "1") != "0"


# --- the key -----------------------------------------------------------------------------


def _dist_version(name: str) -> str:
    """A package's version from its ``*.dist-info`` folder (importlib.metadata costs 0.07 s),
    else the modification time of its ``__init__.py``."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return "absent"
    pkg = list(spec.submodule_search_locations)[0]
    try:
        for entry in _dist_infos(os.path.dirname(pkg)):
            if entry.startswith(name + "-"):
                return entry[len(name) + 1: -len(".dist-info")]
        return f"mtime-{os.stat(os.path.join(pkg, '__init__.py')).st_mtime_ns}"
    except OSError:
        return "unknown"


_DIST_INFOS: dict[str, list[str]] = {}


def _dist_infos(site: str) -> list[str]:
    """The ``*.dist-info`` folders in ``site``, listed once a process (numba, llvmlite and
    numpy are usually in the same one)."""
    found = _DIST_INFOS.get(site)
    if found is None:
        found = _DIST_INFOS[site] = [e.name for e in os.scandir(site)
                                     if e.name.endswith(".dist-info")]
    return found


def _llvm():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


_CPUINFO_KEYS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags")


def cpu_identity() -> str:
    """The CPU the code is compiled for: on Linux x86 the first processor's vendor, family,
    model, stepping and feature flags from ``/proc/cpuinfo`` (what LLVM's host CPU name and
    features are derived from, read without loading LLVM), else LLVM's host CPU name and
    features (through llvmlite)."""
    fields = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                name = line.split(":", 1)[0].strip()
                if name in _CPUINFO_KEYS:
                    fields.append(" ".join(line.split()))
    except OSError:
        pass
    if any(field.startswith("flags") for field in fields):
        return "\n".join(fields)
    llvm = _llvm()
    return f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"


def key(spec: Spec) -> str:
    """The hash of everything that changes the kernel's object code (see the module doc):
    SHA-256 of its parts, remembered with them (:func:`fhnpde.backends.memoised`), so that a
    process whose parts are those of an earlier one neither hashes nor imports OpenSSL."""
    from .backends import formula_fingerprint, memoised
    from .version import __version__

    settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("NUMBA_")
                      and k not in ("NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS",
                                    "NUMBA_THREADING_LAYER"))
    parts = [FORMAT, formula_fingerprint(), __version__, _dist_version("numba"),
             _dist_version("llvmlite"), _dist_version("numpy"), cpu_identity(), spec.module,
             spec.name, spec.args, spec.returns, settings]
    text = json.dumps(parts)

    def digest() -> str:
        import hashlib

        return hashlib.sha256(text.encode()).hexdigest()[:20]

    return memoised(f"native key {spec.module}.{spec.name}", text, digest)


def entry_path(spec: Spec, k: str | None = None) -> str:
    from .backends import kernel_cache_dir

    return os.path.join(kernel_cache_dir(), "native", f"{spec.name}-{k or key(spec)}.native")


# --- loading (no numba) --------------------------------------------------------------------

#: the execution engines of the loaded objects (their code lives as long as they do)
_ENGINES: list = []


def read_entry(path: str, k: str) -> tuple[dict, bytes] | None:
    """The metadata and object bytes of an entry, None if missing, corrupt or not for ``k``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if not data.startswith(MAGIC):
        return None
    head, sep, obj = data[len(MAGIC):].partition(b"\n")
    try:
        meta = json.loads(head)
    except ValueError:
        return None
    if not sep or not isinstance(meta, dict) or meta.get("key") != k:
        return None
    if "refused" not in meta and checksum(obj) != meta.get("crc32"):
        return None
    return meta, obj


def checksum(obj: bytes) -> int:
    """The CRC-32 of an object (zlib's: a damaged or cut entry does not load; a key says
    which code it is, so no cryptographic hash is needed here)."""
    import zlib

    return zlib.crc32(obj)


def _resolve(llvm, names) -> bool:
    """Make every undefined symbol of an object resolvable; False if one is not (the C
    library's and the math library's functions are found in the process)."""
    import ctypes

    process = None
    for name in names:
        if llvm.address_of_symbol(name):
            continue
        if process is None:
            process = ctypes.CDLL(None)
        try:
            address = ctypes.cast(getattr(process, name), ctypes.c_void_p).value
        except AttributeError:
            return False
        llvm.add_symbol(name, address)
    return True


#: ELF constants (x86-64 relocatable objects)
_SHF_WRITE, _SHF_ALLOC = 0x1, 0x2
_SHT_RELA, _SHT_NOBITS, _SHT_X86_64_UNWIND = 4, 8, 0x70000001
_SHN_UNDEF, _SHN_ABS, _SHN_COMMON = 0, 0xFFF1, 0xFFF2
_R_X86_64_64, _R_X86_64_PC32, _R_X86_64_PLT32, _R_X86_64_PC64 = 1, 2, 4, 24


class _Unsupported(Exception):
    """An object the small loader does not handle (llvmlite loads it instead)."""


def _elf_sections(obj: bytes):
    import struct

    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        raise _Unsupported("not a little-endian ELF64 object")
    e_type, e_machine = struct.unpack_from("<HH", obj, 0x10)
    if e_type != 1 or e_machine != 62:  # ET_REL, EM_X86_64
        raise _Unsupported("not an x86-64 relocatable object")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
    return [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize)
            for i in range(shnum)]


def load_elf(obj: bytes, meta: dict):
    """The address of the entry point of an x86-64 ELF object, loaded without LLVM: its
    sections copied into fresh memory, its relocations applied (absolute and PC-relative,
    what LLVM's large code model emits), the memory then made read-only and executable.

    Raises :class:`_Unsupported` for anything else (another machine, a writable section,
    another relocation, a symbol the process lacks); the caller then uses llvmlite.
    Unwind tables (``.eh_frame``) are not registered: nothing unwinds through the kernels.
    """
    import ctypes
    import mmap
    import struct

    if sys.platform != "linux":
        raise _Unsupported("the small loader runs on Linux")
    sections = _elf_sections(obj)
    # lay out the sections to load, in one block
    base, size = {}, 0
    for i, sh in enumerate(sections):
        if not sh[2] & _SHF_ALLOC or sh[5] == 0 or sh[1] == _SHT_X86_64_UNWIND:
            continue
        if sh[2] & _SHF_WRITE:
            raise _Unsupported("a writable section")
        align = max(1, sh[8])
        size = (size + align - 1) // align * align
        base[i] = size
        size += sh[5]
    symtab = next((sh for sh in sections if sh[1] == 2), None)
    if symtab is None:
        raise _Unsupported("no symbol table")
    strtab = sections[symtab[6]]

    def name_of(offset):
        start = strtab[4] + offset
        return obj[start: obj.index(b"\0", start)].decode()

    symbols = [struct.unpack_from("<IBBHQQ", obj, off)  # name, info, other, shndx, value, size
               for off in range(symtab[4], symtab[4] + symtab[5], symtab[9])]
    common, common_size = {}, 0
    for j, (_, _, _, shndx, value, sym_size) in enumerate(symbols):
        if shndx == _SHN_COMMON:  # zero-initialised data (numba's environment pointers)
            align = max(1, value)
            common_size = (common_size + align - 1) // align * align
            common[j] = common_size
            common_size += sym_size
    process = ctypes.CDLL(None)
    for name in meta.get("undefined", ()):
        if not hasattr(process, name):
            raise _Unsupported(f"the process lacks {name}")
    memory = mmap.mmap(-1, max(size, 1), prot=mmap.PROT_READ | mmap.PROT_WRITE)
    start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    data = ctypes.create_string_buffer(max(common_size, 1))
    for i, offset in base.items():
        sh = sections[i]
        if sh[1] != _SHT_NOBITS:
            memory[offset: offset + sh[5]] = obj[sh[4]: sh[4] + sh[5]]

    def address(j):
        name, _, _, shndx, value, _ = symbols[j]
        if shndx == _SHN_UNDEF:
            try:
                return ctypes.cast(getattr(process, name_of(name)), ctypes.c_void_p).value
            except AttributeError:
                raise _Unsupported(f"the process lacks {name_of(name)}") from None
        if shndx == _SHN_COMMON:
            return ctypes.addressof(data) + common[j]
        if shndx == _SHN_ABS:
            return value
        if shndx not in base:
            raise _Unsupported("a symbol in a section that is not loaded")
        return start + base[shndx] + value

    for sh in sections:
        if sh[1] != _SHT_RELA or sh[7] not in base:
            continue
        target = base[sh[7]]
        for off in range(sh[4], sh[4] + sh[5], sh[9]):
            r_offset, r_info, addend = struct.unpack_from("<QQq", obj, off)
            kind, where = r_info & 0xFFFFFFFF, target + r_offset
            value = address(r_info >> 32) + addend
            if kind == _R_X86_64_64:
                struct.pack_into("<Q", memory, where, value & 0xFFFFFFFFFFFFFFFF)
            elif kind == _R_X86_64_PC64:
                struct.pack_into("<q", memory, where, value - (start + where))
            elif kind in (_R_X86_64_PC32, _R_X86_64_PLT32):
                delta = value - (start + where)
                if not -2**31 <= delta < 2**31:
                    raise _Unsupported("a 32-bit displacement out of range")
                struct.pack_into("<i", memory, where, delta)
            else:
                raise _Unsupported(f"relocation type {kind}")
    entry = next((j for j, sym in enumerate(symbols)
                  if sym[3] in base and name_of(sym[0]) == meta["entry"]), None)
    if entry is None:
        raise _Unsupported("no entry point")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if libc.mprotect(start, len(memory), mmap.PROT_READ | mmap.PROT_EXEC) != 0:
        raise _Unsupported("memory cannot be made executable here")
    _ENGINES.append((memory, data))  # the code lives as long as the process
    return address(entry)


def load_object(obj: bytes, meta: dict, loader: str = "any"):
    """The address of the entry point of an object (None if it cannot be loaded): by the
    small ELF loader (:func:`load_elf`, no LLVM), else by llvmlite's MCJIT (``loader``:
    ``"elf"`` or ``"llvm"`` for one of them only)."""
    if loader in ("any", "elf"):
        try:
            return load_elf(obj, meta)
        except _Unsupported:
            if loader == "elf":
                return None
    llvm = _llvm()
    if not _resolve(llvm, meta.get("undefined", ())):
        return None
    target = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target)
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    address = engine.get_function_address(meta["entry"])
    if not address:
        return None
    _ENGINES.append(engine)
    return address


def load(spec: Spec):
    """The native kernel of ``spec`` (a :class:`NativeKernel`), or None (no entry, a stale
    or corrupt one, a refused kernel, or an object that does not load)."""
    if not enabled():
        return None
    k = key(spec)
    found = read_entry(entry_path(spec, k), k)
    if found is None or "refused" in found[0]:
        return None
    try:
        address = load_object(found[1], found[0])
    except Exception:  # any failure of llvmlite on a damaged object: the numba path
        return None
    return None if address is None else NativeKernel(spec, address)


def refused(spec: Spec) -> bool:
    """True when an entry records that ``spec``'s kernel cannot run natively."""
    k = key(spec)
    found = read_entry(entry_path(spec, k), k)
    return found is not None and "refused" in found[0]


class NativeKernel:
    """A loaded kernel, called with the numba kernel's arguments (see the module doc).

    The call is a Python function generated for the kernel's signature: it checks the
    arguments, packs them into one block of 8-byte slots (``struct``) and calls the entry
    point with the block's address, so that a solver calling a kernel once an output
    interval pays little for it (measured below in docs/performance.md)."""

    def __init__(self, spec: Spec, address: int):
        import ctypes

        import numpy as np

        self.spec = spec
        self.fallback = None  # the numba kernel, set on first need
        count = max(1, len(spec.returns))
        self.ri, self.rf = (ctypes.c_int64 * count)(), (ctypes.c_double * count)()
        types = ["q", "q"]  # the slots of the argument block (struct codes)
        lines, checks = [], []
        cargs = ["_ri_address", "_rf_address"]
        names = [f"a{j}" for j in range(len(spec.args))]
        every = ", ".join(names)
        self.tuples = {}  # argument index -> (the tuple, its ctypes copy)
        for j, kind in enumerate(spec.args):
            a = names[j]
            if kind in ("i", "b"):
                types.append("q")
                checks.append(f"isinstance({a}, _INTS)")
                cargs.append(f"int({a})")
            elif kind == "f":
                types.append("d")
                checks.append(f"isinstance({a}, float)")
                cargs.append(a)
            elif kind == "p4":
                types.append("q")
                self.tuples[j] = (None, None, 0)
                lines.append(f"    held = _tuples[{j}]")
                lines.append(f"    if held[0] is not {a}:")
                lines.append(f"        held = _self.hold({j}, {a})")
                lines.append("        if held is None:")
                lines.append(f"            return _self.numba()({every})")
                cargs.append("held[2]")
            else:
                dtype, ndim = kind.split(":")
                dims = int(ndim)
                types += ["q"] * (1 + dims)
                # C-contiguous by numpy's flag (an empty array's strides may read (0, 0))
                checks.append(f"type({a}) is _ndarray and {a}.dtype == _{dtype} and "
                              f"{a}.ndim == {dims} and (f := {a}.flags).c_contiguous and "
                              "f.writeable")
                # the data's address: through a ctypes view (0.25 us) rather than
                # __array_interface__ (1.0-1.7 us, a dict built per call), which an empty
                # array (no byte to view) still takes
                cargs.append(f"(_addressof(_char.from_buffer({a})) if {a}.size else "
                             f"{a}.__array_interface__['data'][0])")
                cargs += [f"{a}.shape[{d}]" for d in range(dims)]
        body = [f"def call({every}):"]
        if checks:  # one test of every argument, one call of numba's kernel if any fails
            body.append("    if not (" + "\n            and ".join(f"({c})" for c in checks)
                        + "):")
            body.append(f"        return _self.numba()({every})")
        body += lines
        saved = ", ".join(f"{names[i]}.copy()" for i in spec.scratch)
        body.append(f"    saved = ({saved},)" if saved else "    saved = ()")
        body.append(f"    _pack(_block, 0, {', '.join(cargs)})")
        body.append("    status = _function(_address)")
        body.append("    if status != 0 and status != -2:  # numba's OK (and OK, None)")
        body.append(f"        return _self.failed(saved, ({every},))")
        results = [f"_ri[{j}]" if kind in ("i", "b") else f"_rf[{j}]"
                   for j, kind in enumerate(spec.returns)]
        body.append(f"    return ({', '.join(results)},)" if results else "    return None")
        import struct

        layout = struct.Struct("<" + "".join(types))
        self.block = ctypes.create_string_buffer(layout.size)
        scope = {"_INTS": (int, np.integer), "_ndarray": np.ndarray, "_self": self,
                 "_function": ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)(address),
                 "_pack": layout.pack_into, "_block": self.block,
                 "_address": ctypes.addressof(self.block),
                 "_ri": self.ri, "_rf": self.rf, "_tuples": self.tuples,
                 "_ri_address": ctypes.addressof(self.ri),
                 "_rf_address": ctypes.addressof(self.rf),
                 "_addressof": ctypes.addressof, "_char": ctypes.c_char,
                 **{f"_{k}": np.dtype(v) for k, v in _ARRAY_DTYPES.items()}}
        exec(compile("\n".join(body) + "\n", f"<fhnpde.native {spec.name}>", "exec"), scope)
        self.call = scope["call"]
        self.function = scope["_function"]

    def __call__(self, *args):
        return self.call(*args)

    def hold(self, j: int, value):
        """Keep a ctypes copy of the tuple argument ``j`` (four floats), or None if it is
        not one (numba's kernel is then called)."""
        import ctypes

        if (type(value) is not tuple or len(value) != 4
                or not all(type(x) is float for x in value)):
            return None
        copy = (ctypes.c_double * 4)(*value)
        held = self.tuples[j] = (value, copy, ctypes.addressof(copy))
        return held

    def failed(self, saved, args):
        """The kernel raised (a non-zero status): numba's kernel runs on the arguments as
        they were, and raises or answers as it would have."""
        for i, a in zip(self.spec.scratch, saved, strict=True):
            args[i][...] = a
        return self.numba()(*args)

    def numba(self):
        if self.fallback is None:
            from .backends import kernels

            self.fallback = getattr(kernels(self.spec.module), self.spec.name)
        return self.fallback


# --- building (with numba) -----------------------------------------------------------------


def _wrapper_source(spec: Spec) -> tuple[str, list[str]]:
    """The Python source of the cfunc wrapper and the numba type of each of its arguments."""
    params, body, types = ["ri", "rf"], [], ["int64*", "float64*"]
    call = []
    for j, kind in enumerate(spec.args):
        a = f"a{j}"
        if kind == "i":
            params.append(a)
            types.append("int64")
            call.append(a)
        elif kind == "b":
            params.append(a)
            types.append("int64")
            call.append(f"({a} != 0)")
        elif kind == "f":
            params.append(a)
            types.append("float64")
            call.append(a)
        elif kind == "p4":
            params.append(a)
            types.append("float64*")
            call.append(f"({a}[0], {a}[1], {a}[2], {a}[3])")
        else:
            dtype, ndim = kind.split(":")
            dims = [f"{a}_n{d}" for d in range(int(ndim))]
            params += [a + "_p", *dims]
            types += [{"f8": "float64*", "i8": "int64*"}[dtype]]
            types += ["int64"] * int(ndim)
            shape = "(" + ", ".join(dims) + ",)"
            body.append(f"    {a} = carray({a}_p, {shape})")
            call.append(a)
    line = f"kernel({', '.join(call)})"
    if spec.returns:
        body.append(f"    r = {line}")
        for j, kind in enumerate(spec.returns):
            target = "rf" if kind == "f" else "ri"
            body.append(f"    {target}[{j}] = r[{j}]")
    else:
        body.append(f"    {line}")
    source = f"def wrapper({', '.join(params)}):\n" + "\n".join(body) + "\n"
    return source, types


_LLVM_TYPES = {"int64": "i64", "float64": "double"}


def _undefined_symbols(obj: bytes) -> list[str]:
    """The undefined symbols of an ELF64 little-endian object (what ``nm -u`` lists)."""
    import struct

    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        raise ValueError("not a little-endian ELF64 object")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize)
                for i in range(shnum)]
    names = []
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sh[6]]
        for off in range(sh[4], sh[4] + sh[5], sh[9]):
            name, info, _, shndx = struct.unpack_from("<IBBH", obj, off)
            if shndx == 0 and name:
                end = obj.index(b"\0", strtab[4] + name)
                names.append(obj[strtab[4] + name: end].decode())
    return sorted(set(names))


#: symbols of numba's runtime and of Python's C API: an object that still needs them after
#: the wrapper's error handling is gone allocates or raises through numba, and is refused
_RUNTIME_PREFIXES = ("NRT_", "numba_", "Py", "_Py")


def compile_object(spec: Spec, kernel) -> tuple[dict, bytes]:
    """Compile the wrapper of ``kernel`` (a numba dispatcher) and emit its object code:
    ``(metadata, object)``; the metadata holds ``refused`` (and no object) where the
    kernel's code needs numba's runtime."""
    import re

    import numpy as np
    from numba import carray, cfunc, types
    from numba.core.registry import cpu_target

    source, names = _wrapper_source(spec)
    scope = {"carray": carray, "kernel": kernel, "np": np}
    exec(compile(source, f"<fhnpde.native {spec.name}>", "exec"), scope)
    typed = [types.CPointer(getattr(types, n[:-1])) if n.endswith("*") else getattr(types, n)
             for n in names]
    wrapper = cfunc(types.void(*typed), error_model="numpy")(scope["wrapper"])
    # numba names the C wrapper "cfunc." + the name of the function it wraps
    if not wrapper.native_name.startswith("cfunc."):
        raise RuntimeError(f"unexpected cfunc name {wrapper.native_name!r}")
    inner = wrapper.native_name[len("cfunc."):]
    ir = str(wrapper._library._final_module)
    # drop the C wrapper (its error handling calls into numba and Python)
    pattern = re.compile(r"^define [^\n]*@\"?" + re.escape(wrapper.native_name)
                         + r"\"?\(.*?^}\n", re.M | re.S)
    ir, count = pattern.subn("", ir)
    if count != 1:
        raise RuntimeError(f"the cfunc wrapper of {spec.name} was not found in its module")
    # numba's decref calls the destructor of a memory block whose count drops to zero; the
    # objects have no allocation (checked below), so every block is the caller's (none)
    ir = re.sub(r"^declare [^\n]*@NRT_MemInfo_call_dtor\(ptr\)[^\n]*$",
                "define internal void @NRT_MemInfo_call_dtor(ptr %m) {\n"
                "  call void @llvm.trap()\n  unreachable\n}", ir, flags=re.M)
    if "@llvm.trap()" in ir and "declare void @llvm.trap()" not in ir:
        ir += "\ndeclare void @llvm.trap()\n"
    # the entry takes one block of 8-byte slots, one an argument (a ctypes call converts
    # each argument it is given: 20 of them cost 20-30 us, one block packed by struct 2 us)
    entry = f"fhnpde_native_{spec.name}"
    types = [("ptr" if n.endswith("*") else _LLVM_TYPES[n]) for n in names]
    loads = "".join(f"  %s{j} = getelementptr i64, ptr %block, i64 {j}\n"
                    f"  %a{j} = load {t}, ptr %s{j}, align 8\n" for j, t in enumerate(types))
    args = ", ".join(f"{t} %a{j}" for j, t in enumerate(types))
    ir += (f"\ndefine i32 @{entry}(ptr %block) {{\n{loads}"
           "  %ret = alloca [4 x i64], align 8\n"
           "  %exc = alloca ptr, align 8\n"
           f"  %st = call i32 @\"{inner}\"(ptr %ret, ptr %exc, {args})\n"
           "  ret i32 %st\n}\n")
    llvm = _llvm()
    module = llvm.parse_assembly(ir)
    module.verify()
    obj = bytes(cpu_target.target_context.codegen()._tm.emit_object(module))
    undefined = _undefined_symbols(obj)
    runtime = [s for s in undefined if s.startswith(_RUNTIME_PREFIXES)]
    meta = {"key": key(spec), "entry": entry}
    if runtime:
        meta["refused"] = f"the object needs numba's runtime: {', '.join(runtime)}"
        return meta, b""
    meta.update(undefined=undefined, crc32=checksum(obj))
    return meta, obj


def write_entry(path: str, meta: dict, obj: bytes) -> None:
    """Write an entry atomically (a temporary file in the same folder, then a rename)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.native")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + json.dumps(meta).encode() + b"\n" + obj)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def build(spec: Spec, kernel) -> bool:
    """Compile and keep the entry of ``spec`` (True if an object was written). Nothing
    breaks the run: a cache that cannot be written or a wrapper that does not compile
    leaves the kernel to numba."""
    try:
        meta, obj = compile_object(spec, kernel)
        write_entry(entry_path(spec, meta["key"]), meta, obj)
    except Exception as exc:  # the numba path runs on; say why once, for whoever looks
        if os.environ.get("FHNPDE_NATIVE_DEBUG"):
            print(f"fhnpde.native: {spec.name} not kept: {exc!r}", file=sys.stderr)
        return False
    return "refused" not in meta


# --- the kernels of a module -------------------------------------------------------------


class Kernels:
    """A kernel module whose :data:`SPECS` kernels load natively where an entry exists.

    Attribute access gives the native kernel, or (importing numba) the module's own; a
    kernel of :data:`SPECS` that had no entry gets one written. Loading a native kernel is
    charged to the open :class:`fhnpde.backends.CompileClock` objects, as numba's loading
    would be."""

    def __init__(self, module: str):
        self._module = module
        self._native: dict[str, object] = {}
        self._tried: set[str] = set()

    def load(self, name: str):
        """The kernel ``name``, loaded now (for a solver's set-up, outside its time loop)."""
        return getattr(self, name)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        spec = SPECS.get((self._module, name))
        if spec is not None and name not in self._tried and enabled():
            self._tried.add(name)
            t0 = time.perf_counter()
            found = load(spec)
            from .backends import charge_compile

            charge_compile(time.perf_counter() - t0)
            if found is not None:
                self._native[name] = found
                return found
            from .backends import kernels

            kernel = getattr(kernels(self._module), name)
            if not refused(spec):
                from numba.core.compiler_lock import global_compiler_lock

                with global_compiler_lock:  # counted by the CompileClock objects
                    build(spec, kernel)
            self._native[name] = kernel
            return kernel
        if name in self._native:
            return self._native[name]
        from .backends import kernels

        return getattr(kernels(self._module), name)


def kernels(module: str) -> Kernels:
    """The kernels of ``module`` with native loading (see :class:`Kernels`)."""
    return _MODULES.setdefault(module, Kernels(module))


_MODULES: dict[str, Kernels] = {}
