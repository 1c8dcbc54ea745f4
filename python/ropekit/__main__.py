"""python3 -m ropekit: the library's version, as `ropekit --version`, and where it was found."""
import sys


def main(argv):
    if argv and argv != ["--version"]:
        if argv[0] in ("-h", "--help"):
            print("usage: python3 -m ropekit [--version]\n\nPrints the version of the ropekit "
                  "library (as `ropekit --version`) and the file it was loaded from.")
            return 0
        print(f"usage: python3 -m ropekit [--version] (unexpected: {' '.join(argv)})",
              file=sys.stderr)
        return 2
    try:
        import ropekit  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        print(str(e), file=sys.stderr)
        return 2
    if ropekit.import_error is not None:
        print(str(ropekit.import_error), file=sys.stderr)
        return 2
    print(f"ropekit {ropekit.library_version()}")
    print(f"library: {ropekit.library_path} (found: {ropekit.library_found_by})")
    print(f"package: {ropekit.__path__[0]} (python ropekit {ropekit.__version__})")
    print(f"kernels: {ropekit.isa_resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
