"""The system libraries the Linux package takes from the user's system, and the Debian packages that hold them.

The rule: the bundle carries what came with Python packages (Qt from the PySide6-Essentials wheel,
numpy's OpenBLAS, llama.cpp) and libpython; every library of the build machine's own system folders
stays out and becomes a ``Depends`` of the .deb instead. Bundling system libraries looks more
portable but is not: a Mesa or NVIDIA GL driver loaded into the process needs the system's newer
libstdc++, zlib, zstd, libffi or libxcb, and finds the bundle's older copy already loaded; a bundled
fontconfig reads the system's newer configuration and complains. ``rigfit.spec`` drops them and
``build_linux.py`` checks that every library a bundled binary links to is either bundled or named here.

Package names are Debian 12's; where Ubuntu 24.04 renamed a package in the 64-bit time_t transition,
the new name comes first as an alternative.
"""

from __future__ import annotations

from app.ui.xcb_libs import XCB_LIBRARIES  # the window's own check; no Qt is imported

# soname -> the dependency that provides it (a Debian "Depends" alternative list).
SYSTEM_LIBRARIES: dict[str, str] = {
    # glibc (the version floor is added by build_linux.py from the build machine)
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
    "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6",
    "librt.so.1": "libc6",
    "libutil.so.1": "libc6",
    "ld-linux-x86-64.so.2": "libc6",
    "ld-linux-aarch64.so.1": "libc6",
    "libcrypt.so.1": "libcrypt1",
    # The C++ runtime and OpenMP (llama.cpp's CPU backend uses OpenMP)
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libgomp.so.1": "libgomp1",
    # What Python's own extension modules link to
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
    "libbz2.so.1.0": "libbz2-1.0",
    "liblzma.so.5": "liblzma5",
    "libffi.so.8": "libffi8",
    "libuuid.so.1": "libuuid1",
    "libsqlite3.so.0": "libsqlite3-0",  # llama-cpp-python imports diskcache, which imports sqlite3
    "libssl.so.3": "libssl3t64 | libssl3",
    "libcrypto.so.3": "libssl3t64 | libssl3",
    # OpenGL / EGL (libglvnd): the GPU driver plugs in below these
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libdrm.so.2": "libdrm2",
    # Qt's xcb platform plugin (https://doc.qt.io/qt-6/linux-requirements.html)
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    # Qt's Wayland platform plugin
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    # Fonts, D-Bus (portal dialogs, accessibility), GLib's event loop
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0t64 | libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0t64 | libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0t64 | libglib2.0-0",
    "libgio-2.0.so.0": "libglib2.0-0t64 | libglib2.0-0",
}

# What Qt's X11 window needs on a bare Debian 12, found with ldd on a debootstrap minbase root: the
# table the window checks at start (app/ui/xcb_libs.py, Qt-free), so the two cannot drift apart.
# They are always Depends, even where no bundled binary names them: a Qt build may dlopen some of
# them instead of linking, and apt must bring them all for the window to open.
WINDOW_SONAMES: tuple[str, ...] = tuple(XCB_LIBRARIES)
ALWAYS: tuple[str, ...] = tuple(sorted({SYSTEM_LIBRARIES[s] for s in WINDOW_SONAMES}))


def is_system_library(soname: str) -> bool:
    """True when ``soname`` comes from the user's system (listed above), not from the bundle."""
    return soname in SYSTEM_LIBRARIES


def depends_for(sonames: set[str], libc_floor: str | None = None) -> list[str]:
    """The ``Depends`` entries for the system libraries that the bundle links to, sorted and unique.

    ``libc_floor`` (the build machine's glibc, e.g. ``"2.36"``) becomes ``libc6 (>= 2.36)``: the bundle's
    binaries may use any symbol that glibc had.
    """
    unknown = sorted(s for s in sonames if s not in SYSTEM_LIBRARIES)
    if unknown:
        raise KeyError(
            f"no Debian package known for {', '.join(unknown)}: add them to packaging/linux_deps.py"
        )
    entries = {SYSTEM_LIBRARIES[s] for s in sonames} | set(ALWAYS) | {"libc6"}
    out = []
    for entry in sorted(entries):
        if entry == "libc6" and libc_floor:
            entry = f"libc6 (>= {libc_floor})"
        out.append(entry)
    return out
