"""Install detectron2 from PyPI's ``sal-detectron2`` wheel on any CPython 3.

Detectron2 publishes no wheel on PyPI. ``sal-detectron2==0.7.2`` is upstream
detectron2 repackaged, but its only wheel is tagged cp310 and carries a compiled
``_C`` extension built for CPython 3.10. Its Python code runs unchanged on newer
interpreters, so we re-tag the wheel ``py3-none-any`` and drop ``_C``; what needs
``_C`` (rotated boxes, deformable conv, the fast COCO evaluator) is then
unavailable, and nothing in this project uses it. Users with their own source
build of detectron2 never reach this script (scripts/setup.sh keeps theirs).
"""
import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

PACKAGE = "sal-detectron2==0.7.2"


def run(*args: str, cwd=None) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=cwd)


def retag_wheel(unpacked: pathlib.Path) -> None:
    """Make the unpacked wheel pure-Python: new tag, no compiled extension."""
    dist_info = next(unpacked.glob("*.dist-info"))
    wheel_file = dist_info / "WHEEL"
    text = re.sub(r"^Tag: .*$", "Tag: py3-none-any", wheel_file.read_text(), flags=re.M)
    text = re.sub(r"^Root-Is-Purelib: .*$", "Root-Is-Purelib: true", text, flags=re.M)
    wheel_file.write_text(text)
    for extension in unpacked.glob("detectron2/_C*.so"):
        extension.unlink()
    record = dist_info / "RECORD"
    kept = [line for line in record.read_text().splitlines() if not re.match(r"detectron2/_C.*\.so,", line)]
    record.write_text("\n".join(kept) + "\n")


def build_wheel(dest: pathlib.Path, py: str = sys.executable) -> pathlib.Path:
    """Download sal-detectron2's wheel, re-tag it py3-none-any into ``dest``; return its path.

    scripts/device_wheels.sh uses this too, for the wheels carried to a GPU machine.
    """
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        run(py, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
            "--python-version", "3.10", "-d", str(tmp / "dl"), PACKAGE)
        wheel = next((tmp / "dl").glob("*.whl"))
        run(py, "-m", "wheel", "unpack", "-d", str(tmp / "unpacked"), str(wheel))
        unpacked = next((tmp / "unpacked").iterdir())
        retag_wheel(unpacked)
        (tmp / "out").mkdir()
        run(py, "-m", "wheel", "pack", "-d", str(tmp / "out"), str(unpacked))
        retagged = next((tmp / "out").glob("*.whl"))
        return pathlib.Path(shutil.move(str(retagged), str(dest / retagged.name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel-dir", help="only build the re-tagged wheel into this folder; do not install it")
    args = parser.parse_args()
    if args.wheel_dir:
        print(build_wheel(pathlib.Path(args.wheel_dir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        retagged = build_wheel(pathlib.Path(tmp))
        # Its dependencies (fvcore, iopath, pycocotools, ...) come from PyPI as usual.
        run(sys.executable, "-m", "pip", "install", "-q", str(retagged))


if __name__ == "__main__":
    main()
