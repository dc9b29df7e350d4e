"""When an S3 remote lists manifests with a plain GET instead of building a boto3 client."""

from __future__ import annotations

import pytest

from releasecache.remote import S3Remote
from releasecache.remote.s3 import BOTO_ONLY_ENV


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in BOTO_ONLY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


def test_anonymous_custom_endpoint_lists_path_style():
    remote = S3Remote("my-bucket", endpoint_url="http://127.0.0.1:9000/")
    assert remote.listing_url() == "http://127.0.0.1:9000/my-bucket"


def test_anonymous_aws_lists_virtual_hosted_in_its_region():
    assert S3Remote("visual-behavior-neuropixels-data").listing_url() == \
        "https://visual-behavior-neuropixels-data.s3.us-west-2.amazonaws.com"
    assert S3Remote("data", region="eu-central-1").listing_url() == "https://data.s3.eu-central-1.amazonaws.com"


@pytest.mark.parametrize("options", [
    {"anonymous": False},
    {"aws_access_key_id": "AKIA", "aws_secret_access_key": "x"},
    {"profile_name": "lab"},
])
def test_signed_requests_are_left_to_boto3(options):
    assert S3Remote("my-bucket", endpoint_url="http://127.0.0.1:9000", **options).listing_url() is None


@pytest.mark.parametrize("name", BOTO_ONLY_ENV)
def test_settings_only_boto3_honours_leave_the_listing_to_it(monkeypatch, name):
    monkeypatch.setenv(name, "http://elsewhere.example" if "ENDPOINT_URL" in name else "true")
    assert S3Remote("my-bucket").listing_url() is None


def test_an_aws_config_that_changes_the_endpoint_leaves_the_listing_to_boto3(monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[default]\nservices = s3-local\n[services s3-local]\ns3 =\n  endpoint_url = http://x\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert S3Remote("my-bucket").listing_url() is None
    config.write_text("[default]\nregion = us-west-2\n")
    assert S3Remote("my-bucket").listing_url() == "https://my-bucket.s3.us-west-2.amazonaws.com"


def test_without_a_region_boto3_finds_it_and_lists():
    assert S3Remote("my-bucket", region=None).listing_url() is None
    assert S3Remote("my-bucket", region=None, endpoint_url="http://127.0.0.1:9000").listing_url() is not None


def test_a_bucket_that_is_not_a_dns_label_is_left_to_boto3():
    assert S3Remote("my.dotted.bucket").listing_url() is None
    assert S3Remote("my.dotted.bucket", endpoint_url="http://127.0.0.1:9000").listing_url() == \
        "http://127.0.0.1:9000/my.dotted.bucket"
