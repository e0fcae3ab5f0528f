"""Error classification, progress lines, the termination message and the torchrun environment."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from slipway_trainer.distributed import DistContext
from slipway_trainer.errors import InvalidInput, TrainerError, Transient
from slipway_trainer.report import MAX_MESSAGE_CHARS, Progress, write_termination_message
from slipway_trainer.s3 import classify


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (client_error("NoSuchKey", 404), InvalidInput, "object does not exist"),
        (client_error("NoSuchBucket", 404), InvalidInput, "bucket does not exist"),
        (client_error("404", 404), InvalidInput, "does not exist"),
        (client_error("AccessDenied", 403), InvalidInput, "access denied"),
        (client_error("SlowDown", 503), Transient, "SlowDown"),
        (client_error("InternalError", 500), Transient, "retry later"),
        (client_error("Weird", 400), TrainerError, "Weird"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), Transient, "unreachable"),
        (ReadTimeoutError(endpoint_url="http://s3"), Transient, "unreachable"),
        (NoCredentialsError(), InvalidInput, "no S3 credentials"),
    ],
)
def test_s3_errors_map_to_the_contract(exc: Exception, kind: type[TrainerError], words: str) -> None:
    mapped = classify(exc, "read", "s3://b/k")
    assert type(mapped) is kind and words in str(mapped) and "s3://b/k" in str(mapped)


def test_wrapped_s3_errors_are_found_through_the_chain() -> None:
    try:
        try:
            raise client_error("AccessDenied", 403)
        except ClientError as inner:
            raise RuntimeError("upload failed") from inner
    except RuntimeError as outer:
        assert isinstance(classify(outer, "write", "s3://b/k"), InvalidInput)
    plain = ValueError("x")
    assert classify(plain, "write", "s3://b/k") is plain


def test_progress_lines_are_json_with_rank_in_a_gang() -> None:
    out = io.StringIO()
    Progress(out).emit("epoch", epoch=1, loss=float("nan"), nested={"x": float("inf")})
    Progress(out, rank=1, world_size=2).emit("done")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "epoch" and first["loss"] is None and first["nested"] == {"x": None}
    assert "rank" not in first and second["rank"] == 1 and "elapsed" in second


def test_termination_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("SLIPWAY_TERMINATION_LOG", str(path))
    write_termination_message({"reason": "InvalidInput", "message": "x" * 10_000})
    written = json.loads(path.read_text())
    assert len(written["message"]) == MAX_MESSAGE_CHARS and len(path.read_bytes()) < 4096
    write_termination_message({"reason": "Error", "message": "peer closed"}, overwrite=False)
    assert json.loads(path.read_text())["reason"] == "InvalidInput"  # the first failure is kept
    monkeypatch.setenv("SLIPWAY_TERMINATION_LOG", str(tmp_path / "no" / "such" / "dir"))
    write_termination_message({"manifest": "s3://b/m.json"})  # unwritable: no exception


def test_dist_context_from_torchrun_env() -> None:
    assert DistContext.from_env({}) == DistContext(0, 0, 1)
    # The pod's WORLD_SIZE alone (torchrun's --nnodes) does not make this process a member of a gang.
    assert not DistContext.from_env({"WORLD_SIZE": "4"}).is_distributed
    ctx = DistContext.from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert ctx.is_distributed and not ctx.is_main and (ctx.rank, ctx.local_rank, ctx.world_size) == (3, 1, 4)
    with pytest.raises(TrainerError):
        DistContext.from_env({"RANK": "4", "LOCAL_RANK": "0", "WORLD_SIZE": "4"})


def test_bad_command_line_is_invalid_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from slipway_trainer.cli import main

    monkeypatch.setenv("SLIPWAY_TERMINATION_LOG", str(tmp_path / "t"))
    assert main([]) == 65  # argparse alone would exit 2, which the controller would retry
    assert json.loads((tmp_path / "t").read_text())["reason"] == "InvalidInput"
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["event"] == "error" and "--config" in json.loads(line)["message"]
