"""An S3 remote, proven against an S3-compatible server on 127.0.0.1 (moto), as dvc-s3's own tests do."""
import socket

import pytest

from conftest import git, run
from test_pipeline import ran_stages

moto_server = pytest.importorskip("moto.server", reason="the optional remote requirements are not installed")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("dvc_s3", reason="the optional remote requirements are not installed")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch):
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bloodcells")
    yield endpoint, server
    server.stop()


def use_s3(repo, endpoint, bucket="bloodcells"):
    run(["dvc", "remote", "add", "-f", "-d", "team", f"s3://{bucket}/cache"], repo)
    run(["dvc", "remote", "modify", "team", "endpointurl", endpoint], repo)
    for key in ("access_key_id", "secret_access_key"):  # --local: credentials never reach git
        run(["dvc", "remote", "modify", "--local", "team", key, "testing"], repo)


def test_s3_remote_round_trip_and_bad_remotes(project, tmp_path, s3_endpoint):
    endpoint, server = s3_endpoint
    use_s3(project, endpoint)
    assert "testing" not in (project / ".dvc/config").read_text()
    run(["dvc", "repro"], project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "baseline with an S3 remote")
    run(["dvc", "push", "--run-cache"], project)

    clone = tmp_path / "clone-b"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    use_s3(clone, endpoint)  # each clone sets its own credentials
    run(["dvc", "pull", "--run-cache"], clone)
    assert "up to date" in run(["dvc", "status"], clone).stdout
    assert ran_stages(run(["dvc", "repro"], clone).stdout) == set()
    for name in ("resnet", "efficientnet", "alexnet"):
        assert (clone / f"models/{name}.pt").read_bytes() == (project / f"models/{name}.pt").read_bytes()

    model = (clone / "models/resnet.pt").read_bytes()
    use_s3(clone, endpoint, bucket="no-such-bucket")
    missing = run(["dvc", "push"], clone, check=False)
    assert missing.returncode != 0 and "ERROR" in missing.stderr and "Traceback" not in missing.stderr
    use_s3(clone, endpoint)
    server.stop()
    down = run(["dvc", "pull", "--force"], clone, check=False)
    assert down.returncode != 0 and "Traceback" not in down.stderr
    assert (clone / "models/resnet.pt").read_bytes() == model  # nothing in the workspace is lost
    server.start()  # the fixture stops it again
