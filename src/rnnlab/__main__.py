"""python -m rnnlab -> rnnlab.cli.main()."""

import sys

if __name__ == "__main__":
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C before main() can catch it: still 130, one line
        print("rnnlab: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
