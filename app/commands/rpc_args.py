"""``--rpc HOST:PORT[=WHAT][@LINK],...``: llama.cpp RPC servers whose devices join the rig.

Shared by ``detect``, ``plan``, ``fit``, ``run``, ``bench`` and ``serve``. The text is checked as
argparse reads it (host, port 1 to 65535, each server once, at most 64), like the other numbers of
the command line: a bad one is one line and exit code 2 before anything else is done. Each server is
asked for its devices (memory) at once, with a timeout; one that does not answer is a one-line error
(exit code 2). The
devices follow the rig's local GPUs, in the order given (``--split`` counts them in that order;
Rigfit hands llama.cpp its own order, RPC devices first).
"""

from __future__ import annotations

import argparse

from app.core.errors import RigfitError
from app.core.rig import Rig
from app.hardware.rpc import RpcSpec, add_rpc_servers, parse_specs

RPC_HELP = (
    "llama.cpp RPC servers whose devices join the rig, e.g. 10.0.0.5:50052 or "
    "'10.0.0.5:50052=RTX 4090@10GbE,127.0.0.1:50053=CPU' (=what the device is, @the network link)"
)


def rpc_text(text: str) -> str:
    """An argparse ``type``: ``text`` when it parses as ``--rpc`` servers, else argparse's one line."""
    try:
        parse_specs(text)
    except RigfitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_rpc_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpc", type=rpc_text, metavar="HOST:PORT[,...]", default=None, help=RPC_HELP)


def rpc_specs(args: argparse.Namespace) -> tuple[RpcSpec, ...]:
    text = getattr(args, "rpc", None)
    return parse_specs(text) if text else ()


def with_rpc(rig: Rig, args: argparse.Namespace) -> Rig:
    """The rig plus the ``--rpc`` servers' devices (asked now)."""
    specs = rpc_specs(args)
    return add_rpc_servers(rig, specs) if specs else rig
