"""Entry points: ``rigfit`` (console) and ``python -m app``."""

from __future__ import annotations

import sys

WORKER_SWITCH = "--rigfit-worker"
TEMPLATE_SWITCH = "--rigfit-template-sandbox"  # app.runner.template_sandbox.SWITCH


def _helper_process() -> int | None:
    """A frozen app has no "python -m": its helper processes start as the app with a switch."""
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_SWITCH:
        from app.runner.worker import main as worker_main

        return worker_main()
    if len(sys.argv) > 1 and sys.argv[1] == TEMPLATE_SWITCH:
        from app.runner.template_sandbox import main as template_main

        return template_main()
    return None


def main() -> int:
    code = _helper_process()
    if code is not None:
        return code
    from app.cli import main as cli_main

    return cli_main()


def gui_main() -> int:
    code = _helper_process()
    if code is not None:
        return code
    from app.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
