"""Entry points: ``rigfit`` (console) and ``python -m app``."""

from __future__ import annotations

import sys

WORKER_SWITCH = "--rigfit-worker"


def main() -> int:
    # A frozen app has no "python -m": the runner starts its llama.cpp worker as "rigfit --rigfit-worker".
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_SWITCH:
        from app.runner.worker import main as worker_main

        return worker_main()
    from app.cli import main as cli_main

    return cli_main()


def gui_main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_SWITCH:
        from app.runner.worker import main as worker_main

        return worker_main()
    from app.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
