"""Entry points: ``rigfit`` (console) and ``python -m app``."""

from __future__ import annotations

import sys

WORKER_SWITCH = "--rigfit-worker"
TEMPLATE_SWITCH = "--rigfit-template-sandbox"  # app.runner.template_sandbox.SWITCH
RPC_SERVER_SWITCH = "--rigfit-rpc-server"


def _child(argv: list[str]) -> int | None:
    """A frozen app has no "python -m": it starts its llama.cpp worker as "rigfit --rigfit-worker",
    its chat-template helper as "rigfit --rigfit-template-sandbox" and an RPC server as
    "rigfit --rigfit-rpc-server ARGS"."""
    if len(argv) > 1 and argv[1] == WORKER_SWITCH:
        from app.runner.worker import main as worker_main

        return worker_main()
    if len(argv) > 1 and argv[1] == TEMPLATE_SWITCH:
        from app.runner.template_sandbox import main as template_main

        return template_main()
    if len(argv) > 1 and argv[1] == RPC_SERVER_SWITCH:
        from app.runner.rpc_server import main as server_main

        return server_main(argv[2:])
    return None


def main() -> int:
    code = _child(sys.argv)
    if code is not None:
        return code
    from app.cli import main as cli_main

    return cli_main()


def gui_main() -> int:
    code = _child(sys.argv)
    if code is not None:
        return code
    from app.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
