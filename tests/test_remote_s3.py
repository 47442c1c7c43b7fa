"""An S3 remote, proven against an S3-compatible server on 127.0.0.1 (moto), as dvc-s3's own tests do."""
import json
import socket

import pytest

from conftest import git, run
from test_pipeline import ran_stages

moto_server = pytest.importorskip("moto.server", reason="the optional remote requirements are not installed")
boto3 = pytest.importorskip("boto3")
requests = pytest.importorskip("requests")
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


def test_s3_remote_round_trip_and_bad_remotes(reproduced, tmp_path, s3_endpoint):
    project, (endpoint, server) = reproduced, s3_endpoint  # after `dvc repro`
    use_s3(project, endpoint)
    assert "testing" not in (project / ".dvc/config").read_text()
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


@pytest.fixture
def s3_with_credentials(s3_endpoint):
    """The moto server with authentication on: only the access key of an IAM user allowed s3:* is accepted."""
    endpoint, _ = s3_endpoint
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.create_user(UserName="pipeline")
    iam.put_user_policy(UserName="pipeline", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="pipeline")["AccessKey"]
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)  # the server runs in this process


def test_wrong_s3_credentials_fail_with_dvcs_message_and_keep_the_workspace(project, s3_with_credentials):
    endpoint, key_id, secret = s3_with_credentials
    use_s3(project, endpoint)
    for option, value in (("access_key_id", "AKIAWRONGWRONGWRONG1"), ("secret_access_key", "wrong")):
        run(["dvc", "remote", "modify", "--local", "team", option, value], project)
    run(["dvc", "repro", "clean"], project)
    crops = sorted((project / "data/clean").rglob("*.*"))
    wrong = run(["dvc", "push"], project, check=False)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "ERROR" in wrong.stderr and "Forbidden" in wrong.stderr  # S3 answers a HEAD with a bad key by 403 only
    pulled = run(["dvc", "pull", "--force"], project, check=False)
    assert pulled.returncode != 0 and "Traceback" not in pulled.stderr
    assert sorted((project / "data/clean").rglob("*.*")) == crops  # nothing in the workspace is lost
    for option, value in (("access_key_id", key_id), ("secret_access_key", secret)):
        run(["dvc", "remote", "modify", "--local", "team", option, value], project)
    assert run(["dvc", "push"], project).returncode == 0  # the same remote with the right key works
