"""Render resources/icons/rigfit.svg into the raster icons installers want: .ico, .icns or .png.

    python packaging/render_icons.py OUT.ico|OUT.icns|OUT.png [--size N]

The repository keeps one vector icon; the PyInstaller spec calls this on Windows (.ico for the
executables and the installer) and on macOS (.icns for the .app). Qt (already a dependency)
rasterises the SVG. The two containers are written here by hand: Qt's ICO writer stores a single
image, and both formats are a short header in front of PNG images, which every Windows since Vista
and every macOS since 10.7 reads.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "rigfit.svg"
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS element types holding PNG data, by pixel size (the @2x types share sizes with plain ones).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic09", 512),
    (b"ic10", 1024),
)


def _app() -> object:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtGui

    return QtGui.QGuiApplication.instance() or QtGui.QGuiApplication([sys.argv[0]])


def render_png(size: int, svg: Path = SVG) -> bytes:
    """The icon as PNG bytes, ``size`` × ``size`` pixels, transparent around the rounded square."""
    _app()
    from PySide6 import QtCore, QtGui, QtSvg

    renderer = QtSvg.QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not an SVG that Qt can render")
    image = QtGui.QImage(size, size, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(image)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QtCore.QByteArray()
    buffer = QtCore.QBuffer(data)
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):  # type: ignore[call-overload]  # the stubs say bytes, PySide wants str
        raise ValueError("Qt could not encode the icon as PNG")
    buffer.close()
    return bytes(data.data())


def ico_bytes(sizes: tuple[int, ...] = ICO_SIZES, svg: Path = SVG) -> bytes:
    """A Windows .ico with one PNG image per size (ICONDIR, ICONDIRENTRY × n, images)."""
    images = [render_png(s, svg) for s in sizes]
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries = b""
    for size, png in zip(sizes, images, strict=True):
        dim = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(png), offset)
        offset += len(png)
    return header + entries + b"".join(images)


def icns_bytes(svg: Path = SVG) -> bytes:
    """A macOS .icns with PNG elements from 16 to 1024 pixels (big-endian type + length + data)."""
    body = b""
    for kind, size in ICNS_TYPES:
        png = render_png(size, svg)
        body += kind + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    size = 256
    if "--size" in args:
        i = args.index("--size")
        size = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(args[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".ico":
        out.write_bytes(ico_bytes())
    elif suffix == ".icns":
        out.write_bytes(icns_bytes())
    elif suffix == ".png":
        out.write_bytes(render_png(size))
    else:
        print(f"render_icons: write .ico, .icns or .png, not {out.name}", file=sys.stderr)
        return 2
    print(f"render_icons: {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
