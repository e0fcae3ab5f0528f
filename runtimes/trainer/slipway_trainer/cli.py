"""`python -m slipway_trainer --config <JSON>`: exit codes and the termination message, per the contract."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from typing import NoReturn

from slipway_trainer.config import load_config_arg
from slipway_trainer.distributed import DistContext
from slipway_trainer.errors import EXIT_OK, InvalidInput, TrainerError
from slipway_trainer.report import Progress, write_termination_message
from slipway_trainer.s3 import classify


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would exit 2, which the controller would retry; a malformed command line is invalid input.
        raise InvalidInput(f"bad command line: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="slipway-trainer", description="Train a model and write it, with its manifest, to S3.")
    p.add_argument("--config", required=True, help="the TrainingJob's config as JSON, or @path to a JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    progress = Progress(sys.stdout)  # progress lines own stdout ...
    with contextlib.redirect_stdout(sys.stderr):  # ... anything a library prints goes to stderr instead
        return _main(argv, progress)


def _main(argv: list[str] | None, progress: Progress) -> int:
    try:
        ctx = DistContext.from_env(os.environ)
        progress.rank, progress.world_size = ctx.rank, ctx.world_size
        cfg = load_config_arg(_parser().parse_args(argv).config)
        from slipway_trainer.runner import run  # after parsing: `--help` should not pay for importing pandas

        manifest_uri = run(cfg, ctx, progress)
    except TrainerError as e:
        return _fail(progress, e)
    except Exception as e:  # noqa: BLE001 -- the last line of defence: report, then exit non-zero
        traceback.print_exc()
        mapped = classify(e, "use", "S3")  # a boto error that escaped the S3 wrapper still maps to 65/75
        return _fail(progress, mapped if isinstance(mapped, TrainerError) else TrainerError(f"{type(e).__name__}: {e}"))
    progress.emit("done", manifest=manifest_uri)
    if ctx.local_rank == 0:  # one message per pod; every pod of the gang points at the same manifest
        write_termination_message({"manifest": manifest_uri})
    return EXIT_OK


def _fail(progress: Progress, e: TrainerError) -> int:
    progress.emit("error", reason=e.reason, exitCode=e.exit_code, message=str(e))
    # Every failing process may write, the first one wins: under torchrun the pod's exit status is torchrun's
    # own (1), so the reason and the worker's exit code travel in the message.
    write_termination_message({"reason": e.reason, "message": str(e), "exitCode": e.exit_code}, overwrite=False)
    return e.exit_code
