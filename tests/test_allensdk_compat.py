"""AllenSDK's cloud-cache and VBN project-cache tests, re-expressed against releasecache.

Each test below is named after the AllenSDK test whose behaviour it checks
(``allensdk/test/api/cloud_cache/*`` and the VBN project cache tests). The
releases are published to the loopback S3 server in AllenSDK's shape (see
``tests/support/allensdk_compat.py``) and reached through :class:`SDKNames`,
which only renames AllenSDK's properties to releasecache's methods. Where a
behaviour differs on purpose, the test asserts releasecache's behaviour and
names the row of ``docs/migration.md`` that explains it.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from releasecache import CloudCache, OutdatedManifestWarning, ProjectCache, TransferConfig
from releasecache.errors import (
    ManifestNotFoundError,
    ManifestError,
    OfflineError,
    ReleaseCacheError,
    UnknownFileError,
)
from tests.support.allensdk_compat import (
    PROJECT_X,
    SDKNames,
    blake2b,
    every_mutation,
    manifest_name,
    publish,
    three_versions,
)

_buckets = (f"sdk-compat-{i}" for i in itertools.count())


@pytest.fixture
def sdk_release(s3_server):
    """Publish an AllenSDK-shaped release into a bucket of its own; returns (bucket, manifest names)."""

    def make(versions, **kwargs):
        bucket = next(_buckets)
        return bucket, publish(s3_server, bucket, versions, **kwargs)

    return make


@pytest.fixture
def sdk_cache(tmp_path, s3_server):
    """``S3CloudCache(cache_dir, bucket, project)`` spelled with releasecache, behind AllenSDK's names."""

    def make(bucket, cache_dir=None, project=PROJECT_X):
        cache = CloudCache.from_s3(cache_dir or tmp_path / "cache", bucket, project,
                                   endpoint_url=s3_server.endpoint_url, progress=False,
                                   transfer_config=TransferConfig(backoff_base=0.01, backoff_max=0.05))
        return SDKNames(cache)

    return make


def _outdated(record):
    return [w for w in record if issubclass(w.category, OutdatedManifestWarning)]


# -- test_cache.py -------------------------------------------------------------------------


def test_list_all_manifests(sdk_release, sdk_cache, s3_server):
    bucket, names = sdk_release({"1.0.0": {"data": {}, "metadata": {}}, "2.0.0": {"data": {}, "metadata": {}}})
    s3_server.admin_client().put_object(Bucket=bucket, Key="junk.txt", Body=b"123456")
    assert sdk_cache(bucket).manifest_file_names == names


def test_list_all_manifests_many(sdk_release, sdk_cache, s3_server):
    """More manifests than one ListObjectsV2 page (1000); sorted by version, not by text."""
    bucket, _ = sdk_release({"0.0.0": {"data": {}, "metadata": {}}})
    client = s3_server.admin_client()
    for i in range(1, 1003):
        client.put_object(Bucket=bucket, Key=f"{PROJECT_X}/manifests/{manifest_name(f'0.0.{i}')}", Body=b"{}")
    names = sdk_cache(bucket).manifest_file_names
    assert len(names) == 1003
    assert names[:3] == [manifest_name("0.0.0"), manifest_name("0.0.1"), manifest_name("0.0.2")]
    assert names[-1] == manifest_name("0.0.1002")  # AllenSDK sorts text: 0.0.999 would come last


def test_loading_manifest(sdk_release, sdk_cache):
    versions = {"1.0.0": {"data": {}, "metadata": {"a.csv": b"a\n", "b.csv": b"b\n"}},
                "2.0.0": {"data": {}, "metadata": {"c.csv": b"c\n", "d.csv": b"d\n"}}}
    bucket, (first, second) = sdk_release(versions)
    cache = sdk_cache(bucket)
    assert cache.current_manifest is None
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(first)
    assert (cache.version, cache.file_id_column) == ("1.0.0", "file_id")
    assert cache.metadata_file_names == ["a.csv", "b.csv"]
    assert cache.current_manifest == first
    cache.load_manifest(second)
    assert cache.version == "2.0.0" and cache.metadata_file_names == ["c.csv", "d.csv"]
    with pytest.raises(ValueError) as info:  # AllenSDK code catches ValueError
        cache.load_manifest(manifest_name("3.0.0"))
    assert isinstance(info.value, ManifestNotFoundError) and isinstance(info.value, ReleaseCacheError)
    assert first in str(info.value) and second in str(info.value)  # the valid names are listed


def test_download_file_multiple_versions_and_re_download(sdk_release, sdk_cache):
    """Two versions of one key are told apart by version id; a removed local copy comes back."""
    bucket, names = sdk_release(three_versions())
    cache = sdk_cache(bucket)
    contents = {}
    for name in names[:2]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutdatedManifestWarning)
            cache.load_manifest(name)
        path = cache.download_data("1")
        contents[name] = path.read_bytes()
        assert blake2b(contents[name]) == cache.data_path("1")["file_attributes"].file_hash
    assert contents[names[0]] == b"first one" and contents[names[1]] == b"first one, edited"
    path = cache.download_data("1")
    path.unlink()
    assert cache.download_data("1").read_bytes() == b"first one, edited"


def test_download_data(sdk_release, sdk_cache, tmp_path):
    bucket, names = sdk_release({"1.0.0": {"data": {"data_file.txt": ("only_data_file", b"1123581321")},
                                           "metadata": {}}})
    cache = sdk_cache(bucket, tmp_path / "data/path/cache")
    cache.load_manifest(names[0])
    expected = tmp_path / "data/path/cache" / f"{PROJECT_X}-1.0.0" / "data/data_file.txt"
    attr = cache.data_path("only_data_file")
    assert attr["local_path"] == expected and attr["exists"] is False
    assert {"local_path", "exists", "file_attributes"} <= set(attr)
    assert cache.download_data("only_data_file") == expected and expected.read_bytes() == b"1123581321"
    attr = cache.data_path("only_data_file")
    assert attr["exists"] is True and attr["local_path"] == expected


def test_download_metadata_by_its_own_name(sdk_release, sdk_cache, tmp_path):
    """Metadata keys that end in .csv (as AllenSDK's test manifests write them) are reachable by that name."""
    bucket, names = sdk_release({"1.0.0": {"data": {}, "metadata": {"metadata_file.csv": b"a,b\n1,2\n"}}})
    cache = sdk_cache(bucket)
    cache.load_manifest(names[0])
    expected = tmp_path / "cache" / f"{PROJECT_X}-1.0.0" / "project_metadata/metadata_file.csv"
    attr = cache.metadata_path("metadata_file.csv")
    assert attr["local_path"] == expected and attr["exists"] is False
    attributes = attr["file_attributes"]
    assert (attributes.url, attributes.file_hash, attributes.local_path) == (
        f"http://{bucket}.s3.amazonaws.com/{PROJECT_X}/project_metadata/metadata_file.csv",
        blake2b(b"a,b\n1,2\n"), expected)
    assert cache.download_metadata("metadata_file.csv") == expected
    assert cache.metadata_path("metadata_file.csv")["exists"] is True


def test_metadata(sdk_release, sdk_cache):
    true_df = pd.DataFrame({"mouse_id": [1, 4, 6, 8], "sex": ["F", "F", "M", "M"], "age": ["P50", "P46", "P23", "P40"]})
    with io.StringIO() as stream:
        true_df.to_csv(stream, index=False)
        body = stream.getvalue().encode()
    bucket, names = sdk_release({"1.0.0": {"data": {}, "metadata": {"metadata_file.csv": body}}})
    cache = sdk_cache(bucket)
    cache.load_manifest(names[0])
    assert true_df.equals(cache.get_metadata("metadata_file.csv"))


def test_latest_manifest(sdk_release, sdk_cache):
    bucket, names = sdk_release(every_mutation())
    cache = sdk_cache(bucket)
    assert cache.latest_downloaded_manifest_file == ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        for version in ("7.0.0", "3.0.0", "2.0.0"):
            cache.load_manifest(manifest_name(version))
    assert cache.latest_manifest_file == manifest_name("15.0.0")
    assert cache.latest_downloaded_manifest_file == manifest_name("7.0.0")


def test_outdated_manifest_warning(sdk_release, sdk_cache):
    """Warned the first time an outdated manifest is loaded; not again for the same latest manifest."""
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket)
    with pytest.warns(OutdatedManifestWarning) as record:
        cache.load_manifest(manifest_name("7.0.0"))
    messages = [str(w.message) for w in _outdated(record)]
    assert len(messages) == 1
    assert "is not the most up to date" in messages[0]
    assert f"CloudCache.compare_manifests('{manifest_name('7.0.0')}', '{manifest_name('15.0.0')}')" in messages[0]
    assert "load_latest_manifest" in messages[0]
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        cache.load_manifest(manifest_name("11.0.0"))
    assert not _outdated(again)


def test_list_all_downloaded(sdk_release, sdk_cache):
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket)
    assert cache.list_all_downloaded_manifests() == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        for version in ("5.0.0", "2.0.0", "3.0.0"):
            cache.load_manifest(manifest_name(version))
            assert cache.current_manifest == manifest_name(version)
    assert set(cache.list_all_downloaded_manifests()) == {manifest_name(v) for v in ("5.0.0", "2.0.0", "3.0.0")}


def test_latest_manifest_warning(sdk_release, sdk_cache):
    """load_latest_manifest warns once when it moves past the newest manifest this cache used before."""
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket)
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(manifest_name("4.0.0"))
    with pytest.warns(OutdatedManifestWarning) as record:
        cache.load_latest_manifest()
    assert len(record) == 1
    message = str(record[0].message)
    assert manifest_name("4.0.0") in message and manifest_name("15.0.0") in message
    assert "It is possible that some data files" in message
    assert f"CloudCache.load_manifest('{manifest_name('4.0.0')}')" in message
    assert cache.current_manifest == manifest_name("15.0.0")


def test_load_last_manifest(sdk_release, sdk_cache, tmp_path):
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cache.load_last_manifest()
    assert not _outdated(record)
    assert cache.current_manifest == manifest_name("15.0.0")
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(manifest_name("7.0.0"))
    expected = f"A more up to date version of the dataset -- {manifest_name('15.0.0')} -- exists online"
    for then_load in ("4.0.0", None):
        cache = sdk_cache(bucket)
        with pytest.warns(OutdatedManifestWarning, match=expected) as record:
            cache.load_last_manifest()
        assert len(_outdated(record)) == 1  # not once more from the load itself
        if then_load:
            assert cache.current_manifest == manifest_name("7.0.0")
            with warnings.catch_warnings(record=True) as again:
                warnings.simplefilter("always")
                cache.load_manifest(manifest_name(then_load))  # the same latest: warned already
            assert not _outdated(again)
        else:
            assert cache.current_manifest == manifest_name("4.0.0")


def test_corrupted_load_last_manifest(sdk_release, sdk_cache, tmp_path):
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket)
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(manifest_name("9.0.0"))
    state = tmp_path / "cache" / "state"
    assert state.is_file()
    expected = f"Loading latest version -- {manifest_name('15.0.0')}"
    for damage in (b"babababa", json.dumps({"last_manifest": {PROJECT_X: "babababa"}}).encode()):
        state.write_bytes(damage)
        cache = sdk_cache(bucket)
        with pytest.warns(UserWarning, match=expected):
            cache.load_last_manifest()
        assert cache.current_manifest == manifest_name("15.0.0")


# -- test_change_log.py --------------------------------------------------------------------


CHANGE_LOG = {
    "2.0.0": ([], ["data/f2.txt deleted"]),
    "3.0.0": ([], ["data/f2.txt renamed data/f4.txt"]),
    "4.0.0": ([], ["data/f3.txt changed"]),
    "5.0.0": ([], ["data/f4.txt created"]),
    "6.0.0": ([], ["data/f1.txt changed", "data/f2.txt deleted"]),
    "7.0.0": ([], ["data/f2.txt deleted", "data/f3.txt renamed data/f5.txt"]),
    "8.0.0": ([], ["data/f2.txt deleted", "data/f5.txt created"]),
    "9.0.0": ([], ["data/f3.txt renamed data/f4.txt", "data/f5.txt created"]),
    "10.0.0": (["project_metadata/metadata_2.csv deleted"], []),
    "11.0.0": (["project_metadata/metadata_2.csv renamed project_metadata/metadata_4.csv"], []),
    "12.0.0": (["project_metadata/metadata_3.csv changed"], []),
    "13.0.0": (["project_metadata/metadata_4.csv created"], []),
    "14.0.0": (["project_metadata/metadata_3.csv renamed project_metadata/metadata_4.csv"],
               ["data/f2.txt deleted"]),
    "15.0.0": (["project_metadata/metadata_1.csv deleted",
                "project_metadata/metadata_2.csv renamed project_metadata/metadata_4.csv",
                "project_metadata/metadata_3.csv deleted"],
               ["data/f1.txt renamed data/f4.txt", "data/f5.txt created", "data/f6.txt created"]),
}


def test_summarize_comparison(sdk_release, sdk_cache):
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket)
    first = manifest_name("1.0.0")
    for version, (metadata, data) in CHANGE_LOG.items():
        log = cache.cache.summarize_comparison(first, manifest_name(version))
        assert sorted(line for _, line in log["metadata_changes"]) == metadata, version
        assert sorted(line for _, line in log["data_changes"]) == data, version
        assert all(line.startswith(f"{path} ") for path, line in log["metadata_changes"] + log["data_changes"])


def test_compare_manifests_string(sdk_release, sdk_cache):
    """The report's text is AllenSDK's, byte for byte."""
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket)
    msg = cache.compare_manifests(manifest_name("1.0.0"), manifest_name("15.0.0"))
    expected = ("Changes going from\n"
                f"{manifest_name('1.0.0')}\n"
                "to\n"
                f"{manifest_name('15.0.0')}\n\n"
                "project_metadata/metadata_1.csv deleted\n"
                "project_metadata/metadata_2.csv renamed project_metadata/metadata_4.csv\n"
                "project_metadata/metadata_3.csv deleted\n"
                "data/f1.txt renamed data/f4.txt\n"
                "data/f5.txt created\n"
                "data/f6.txt created\n")
    assert msg == expected and isinstance(msg, str)
    assert "data/f5.txt created" in msg and msg.splitlines()[-1] == "data/f6.txt created"
    assert f"{msg}" == expected and msg + "" == expected
    # ...and the structured view is still there
    assert [c.path for c in msg.created] == ["data/f5.txt", "data/f6.txt"]
    assert len(msg.to_frame()) == 6 and msg.to_dict()["equivalent"] is False and not msg.equivalent
    same = cache.compare_manifests(manifest_name("1.0.0"), manifest_name("1.0.0"))
    assert same == "The two manifests are equivalent" and same.equivalent


def test_compare_manifests_print(sdk_release, sdk_cache, capsys):
    bucket, _ = sdk_release(every_mutation())
    msg = sdk_cache(bucket).compare_manifests(manifest_name("1.0.0"), manifest_name("4.0.0"))
    print(msg)
    assert capsys.readouterr().out == f"{msg}\n"
    assert "data/f3.txt changed" in msg.splitlines()


# -- test_local_cache.py ------------------------------------------------------------------


def test_local_cache_file_access(sdk_release, sdk_cache, tmp_path):
    bucket, names = sdk_release(three_versions())
    cloud = sdk_cache(bucket)
    with pytest.warns(OutdatedManifestWarning):
        cloud.load_manifest(names[0])
    cloud.download_data("1")
    cloud.download_data("3")
    cloud.load_manifest(names[2])
    cloud.download_data("2")
    local = SDKNames(CloudCache.from_local_cache(tmp_path / "cache", PROJECT_X, progress=False))
    assert set(local.manifest_file_names) == {names[0], names[2]}
    with pytest.warns(OutdatedManifestWarning):  # offline, the newest downloaded manifest is the latest
        local.load_manifest(names[0])
    assert [local.data_path(i)["exists"] for i in "123"] == [True, False, True]
    local.load_manifest(names[2])
    assert [local.data_path(i)["exists"] for i in "123"] == [True, True, False]  # 1 is the same in v1 and v3


# -- test_smart_download.py ---------------------------------------------------------------


def _download_everything(cache, names):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        paths = {}
        for name in names:
            cache.load_manifest(name)
            paths[name] = {i: cache.download_data(i) for i in "123"}
    return paths


def test_smart_file_downloading(sdk_release, sdk_cache):
    """Content that did not change between versions is stored once; each version's path reaches it."""
    bucket, names = sdk_release(three_versions())
    cache = sdk_cache(bucket)
    paths = _download_everything(cache, names)
    v1, v2, v3 = (paths[n] for n in names)
    for i in "123":
        assert v1[i].is_file()
    assert v2["2"].resolve() == v1["2"].resolve() and v2["3"].resolve() == v1["3"].resolve()
    assert v3["1"].resolve() == v1["1"].resolve()  # the same bytes again in 3.0.0
    assert v2["1"].resolve() != v1["1"].resolve() and v3["2"].resolve() != v1["2"].resolve()
    # Deliberate difference (docs/migration.md, "version folders"): every version path is a link into
    # the store, also the first one downloaded; AllenSDK keeps the first copy as a plain file.
    assert all(p.is_symlink() for version in paths.values() for p in version.values())


def test_on_removed_files_and_symlinks(sdk_release, sdk_cache):
    """A removed version path comes back: as a link when the content is still stored."""
    bucket, names = sdk_release(three_versions())
    cache = sdk_cache(bucket)
    paths = _download_everything(cache, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        cache.load_manifest(names[1])
        p2 = paths[names[1]]["2"]
        p2.unlink()
        attr = cache.data_path("2")
        assert attr["exists"] is True and p2.is_symlink() and p2.read_bytes() == b"second two"
        # Deliberate difference: removing v1's path removes a link, not the content, so v1 is still complete.
        cache.load_manifest(names[0])
        paths[names[0]]["2"].unlink()
        assert cache.data_path("2")["exists"] is True
        assert cache.data_path("2")["local_path"].read_bytes() == b"second two"


def test_exists_means_local_path_opens(sdk_release, sdk_cache, tmp_path):
    """exists is True only if local_path can be opened now; a missing blob gives False and downloads again."""
    bucket, names = sdk_release(three_versions())
    cache = sdk_cache(bucket)
    paths = _download_everything(cache, names[:1])
    blob = paths[names[0]]["2"].resolve()
    blob.chmod(0o644)
    blob.unlink()
    attr = cache.data_path("2")
    assert attr["exists"] is False
    with pytest.raises(OSError):
        open(attr["local_path"], "rb")
    assert cache.download_data("2").read_bytes() == b"second two"


def test_local_cache_symlink(sdk_release, sdk_cache, tmp_path):
    bucket, names = sdk_release(three_versions())
    online = sdk_cache(bucket)
    with pytest.warns(OutdatedManifestWarning):
        online.load_manifest(names[0])
    p0 = online.download_data("1")
    online.load_manifest(names[2])
    should_be = tmp_path / "cache" / f"{PROJECT_X}-3.0.0/data/f1.txt"
    assert not should_be.exists()
    local = SDKNames(CloudCache.from_local_cache(tmp_path / "cache", PROJECT_X, progress=False))
    local.load_manifest(names[2])
    attr = local.data_path("1")
    assert attr["exists"] and attr["local_path"] == should_be
    assert attr["local_path"].is_symlink() and attr["local_path"].resolve() == p0.resolve()
    assert local.data_path("2")["exists"] is False
    # Deliberate difference: AllenSDK raises NotImplementedError; here it is the package's OfflineError.
    with pytest.raises(OfflineError):
        local.download_data("2")


# -- test_full_process.py -----------------------------------------------------------------


def test_full_cache_system(sdk_release, sdk_cache):
    m1_v1 = pd.DataFrame({"mouse": [1, 2, 3], "sex": ["F", "F", "M"]})
    m2_v1 = pd.DataFrame({"experiment": [5, 6, 7], "file_id": ["data1", "data2", "data3"]})
    m1_v2 = pd.DataFrame({"mouse": [8, 9, 0], "sex": ["M", "F", "M"]})
    csv = lambda frame: frame.to_csv(index=False).encode()  # noqa: E731
    versions = {
        "1.0.0": {"data": {"data1": ("data1", b"12345678"), "data2": ("data2", b"abcdefghijk"),
                           "data3": ("data3", b"jklmnopqrst")},
                  "metadata": {"metadata1.csv": csv(m1_v1), "metadata2.csv": csv(m2_v1)}},
        "2.0.0": {"data": {"data1": ("data1", b"45678901"), "data2": ("data2", b"lmnopqrstuv")},
                  "metadata": {"metadata1.csv": csv(m1_v2)}},
    }
    bucket, names = sdk_release(versions)
    cache = sdk_cache(bucket)
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(names[0])
    assert cache.get_metadata("metadata1.csv").equals(m1_v1)
    assert cache.get_metadata("metadata2.csv").equals(m2_v1)
    for k in ("data1", "data2", "data3"):
        assert not cache.data_path(k)["exists"]
        path = cache.download_data(k)
        assert blake2b(path.read_bytes()) == blake2b(versions["1.0.0"]["data"][k][1])
        assert cache.data_path(k)["exists"]
    cache.load_manifest(names[1])
    with pytest.raises(ValueError) as info:
        cache.get_metadata("metadata2.csv")
    assert isinstance(info.value, UnknownFileError) and "metadata1.csv" in str(info.value)
    assert cache.get_metadata("metadata1.csv").equals(m1_v2)
    for call in (cache.download_data, cache.data_path):
        with pytest.raises(ValueError) as info:
            call("data3")
        assert isinstance(info.value, UnknownFileError) and "data3" in str(info.value)
    for k in ("data1", "data2"):
        assert not cache.data_path(k)["exists"]
        assert blake2b(cache.download_data(k).read_bytes()) == blake2b(versions["2.0.0"]["data"][k][1])
        assert cache.data_path(k)["exists"]


def test_allensdk_test_manifests_are_refused_whole(s3_server, sdk_cache):
    """Deliberate difference ("strict validation"): AllenSDK's placeholder manifests do not load here."""
    bucket = next(_buckets)
    s3_server.create_public_bucket(bucket)
    document = {"manifest_version": "1", "metadata_file_id_column_name": "file_id", "data_pipeline": "placeholder",
                "project_name": "sam-beckett", "data_files": {},
                "metadata_files": {"a.csv": {"url": "http://www.junk.com", "version_id": "1111",
                                             "file_hash": "abcde"}}}
    s3_server.admin_client().put_object(Bucket=bucket, Key=f"{PROJECT_X}/manifests/{manifest_name('1.0.0')}",
                                        Body=json.dumps(document).encode())
    cache = sdk_cache(bucket)
    with pytest.raises(ManifestError) as info:
        cache.load_manifest(manifest_name("1.0.0"))
    assert isinstance(info.value, ValueError) and "manifest_version '1'" in str(info.value)
    assert cache.list_all_downloaded_manifests() == []  # nothing written


# -- test_utils.py ------------------------------------------------------------------------


@pytest.mark.parametrize("url, bucket, key", [
    ('https://dummy_bucket.s3.amazonaws.com/txt_file.txt?versionId="jklaafdaerew"', "dummy_bucket", "txt_file.txt"),
    ('https://dummy_bucket2.s3-us-west-3.amazonaws.com/txt_file.txt?versionId="x"', "dummy_bucket2", "txt_file.txt"),
    ("https://dummy_bucket.s3.amazonaws.com/my/dir/txt_file.txt", "dummy_bucket", "my/dir/txt_file.txt"),
    ("https://under_score.s3.us-west-2.amazonaws.com/p/k.nwb", "under_score", "p/k.nwb"),
    ("https://under_score.s3.dualstack.us-west-2.amazonaws.com/p/k.nwb", "under_score", "p/k.nwb"),
])
def test_bucket_name_from_url(url, bucket, key):
    from releasecache.manifest import parse_s3_url

    assert parse_s3_url(url) == (bucket, key)


@pytest.mark.parametrize("url", [
    'https://dummy_bucket/txt_file.txt?versionId="jklaafdaerew"',
    'https://dummy_bucket2.s3-us-west-3XamazonawsYcom/txt_file.txt?versionId="jklaafdaerew"',
    "https://Bad..Name.s3.amazonaws.com/p/k",
    "https://weird.host.amazonaws.com/bucket/p/k",  # an AWS host of neither form: never read as path-style
])
def test_bucket_name_from_url_refused(url):
    """AllenSDK warns and returns None; here such URLs are refused with an error that shows the URL."""
    from releasecache.manifest import parse_s3_url
    from releasecache.errors import UnsafePathError

    with pytest.raises(UnsafePathError) as info:
        parse_s3_url(url)
    assert "URL" in str(info.value)


def test_underscore_bucket_reaches_the_right_bucket(sdk_release, sdk_cache, s3_server):
    """A virtual-hosted URL whose bucket has '_' is read from that bucket and key, never another one."""
    bucket, names = sdk_release(three_versions(), url_host="legacy_bucket.s3.amazonaws.com")
    cache = sdk_cache(bucket)
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(names[0])
    attributes = cache.data_path("1")["file_attributes"]
    entry = cache.cache.data_entry("1")
    assert (entry.bucket, entry.key) == ("legacy_bucket", f"{PROJECT_X}/data/f1.txt")
    assert attributes.local_path.name == "f1.txt"
    assert cache.download_data("1").read_bytes() == b"first one"


# -- VBN project cache (test_vbn_from_s3.py, test_behavior_neuropixels_project_cloud_api.py) --


@pytest.fixture
def vbn(tmp_path, vbn_bucket):
    def make(cache_dir=None, **kwargs):
        return ProjectCache.from_s3_cache(cache_dir or tmp_path / "vbn", endpoint_url=vbn_bucket.endpoint_url,
                                          progress=False, **kwargs)
    return make


def test_vbn_metadata_tables(vbn):
    cache = vbn()
    for table in (cache.get_probe_table(), cache.get_channel_table(), cache.get_unit_table(),
                  cache.get_behavior_session_table()):
        assert len(table) > 0
    kept, everything = cache.get_ecephys_session_table(), cache.get_ecephys_session_table(filter_abnormalities=False)
    assert 0 < len(kept) < len(everything) and kept.index.name == everything.index.name == "ecephys_session_id"


def test_vbn_manifest_methods(vbn, vbn_bucket):
    cache = vbn()
    names = vbn_bucket.names
    assert cache.list_manifest_file_names() == names
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(names[0])
    assert cache.latest_downloaded_manifest_file() == names[-1]
    assert cache.latest_manifest_file() == names[-1]
    change_msg = cache.compare_manifests(names[0], names[-1])
    assert isinstance(change_msg, str) and change_msg.startswith(f"Changes going from\n{names[0]}\nto\n{names[-1]}")
    assert "project_metadata/units.csv changed" in change_msg


def test_vbn_probe_nwb_file(vbn, vbn_bucket):
    cache = vbn()
    probes = cache.get_probe_table()
    probe = probes[probes["has_lfp_data"].astype(bool) & (probes["file_id"] >= 0)].iloc[0]
    session = cache.get_ecephys_session(ecephys_session_id=int(probe["ecephys_session_id"]))
    try:
        path = session._probe_meta[probe["name"]].lfp_csd_filepath()
    finally:
        session.close()
    entry = cache.cache.data_entry(int(probe["file_id"]))
    expected = cache.cache.cache_dir / f"{vbn_bucket.project}-{cache.manifest.version}" / entry.relative_path
    assert path == expected and expected.is_file()


def test_vbn_load_out_of_date_manifest_and_file_linkage(vbn, vbn_bucket):
    cache = vbn()
    names = vbn_bucket.names
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(names[0])
    sessions = list(cache.get_ecephys_session_table(filter_abnormalities=False).index)
    cache.prefetch(ecephys_session_ids=sessions, include_lfp=False, metadata=False, progress=False)
    old = {e.relative_path: cache.cache.data_path(e.name)["local_path"] for e in cache.manifest.data_files.values()
           if cache.cache.data_path(e.name)["exists"]}
    assert old and all(str(p).startswith(str(cache.cache.cache_dir / f"{vbn_bucket.project}-{cache.manifest.version}"))
                       for p in old.values())
    cache.load_latest_manifest()
    diff = cache.compare_manifests(names[0], names[-1])
    unchanged = [path for path in old if path in {e.relative_path for e in cache.manifest.data_files.values()}
                 and path not in {c.path for c in diff.changes}]
    assert unchanged
    cache.prefetch(ecephys_session_ids=sessions[:1], include_lfp=False, metadata=False, progress=False)
    for path in unchanged:
        entry = cache.manifest.by_relative_path()[path]
        new = cache.cache.data_path(entry.name)
        assert new["exists"] and new["local_path"] != old[path]
        assert new["local_path"].resolve() == old[path].resolve()  # stored once, linked from both versions


def _republish(s3_server, vbn_release, bucket, versions):
    from releasecache.cache.publish import publish_release
    from releasecache.vbn.project import PROJECT_NAME

    return publish_release(s3_server.publisher(bucket), PROJECT_NAME, {v: vbn_release[v] for v in versions})


def test_vbn_when_data_updated(tmp_path, s3_server, vbn_bucket):
    """A cache opened after a newer release was published warns, naming both manifests."""
    release = vbn_bucket.release
    versions = sorted(release)
    bucket = next(_buckets)
    s3_server.create_public_bucket(bucket)
    _republish(s3_server, release, bucket, versions[:2])

    def open_cache():
        return ProjectCache.from_s3_cache(tmp_path / "upd", bucket=bucket, endpoint_url=s3_server.endpoint_url,
                                          progress=False)

    first = open_cache()
    name2 = first.current_manifest()
    _republish(s3_server, release, bucket, versions[2:])
    name3 = first.cache.list_manifest_file_names(refresh=True)[-1]
    with pytest.warns(OutdatedManifestWarning, match=name3) as record:
        second = open_cache()
    messages = [str(w.message) for w in _outdated(record)]
    assert len(messages) == 1
    assert name2 in messages[0] and f"ProjectCache.load_manifest('{name3}')" in messages[0]
    assert second.current_manifest() == name2


def test_vbn_load_last(vbn, vbn_bucket):
    cache = vbn()
    names = vbn_bucket.names
    assert cache.current_manifest() == names[-1]
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(names[0])
    with pytest.warns(OutdatedManifestWarning, match="ProjectCache.compare_manifests"):
        cache = vbn()
    assert cache.current_manifest() == names[0]


def test_vbn_file_ids_and_tables_indexes(vbn):
    """test_VisualBehaviorNeuropixelsProjectCloudApi: the tables' index names."""
    cache = vbn()
    assert cache.get_behavior_session_table().index.name == "behavior_session_id"
    assert cache.get_ecephys_session_table().index.name == "ecephys_session_id"
    assert cache.get_probe_table().index.name == "ecephys_probe_id"
    assert cache.get_channel_table().index.name == "ecephys_channel_id"
    assert cache.get_unit_table().index.name == "unit_id"


def test_vbn_from_local_cache(vbn, tmp_path, vbn_bucket):
    """from_local_cache(cache_dir, use_static_cache=...) opens what an online cache downloaded."""
    online = vbn()
    online.get_unit_table()
    offline = ProjectCache.from_local_cache(tmp_path / "vbn", use_static_cache=False)
    assert offline.current_manifest() == vbn_bucket.names[-1]
    assert offline.get_unit_table().equals(online.get_unit_table())
    shutil.rmtree(tmp_path / "vbn" / "manifests")
    with pytest.raises(OfflineError):
        ProjectCache.from_local_cache(tmp_path / "vbn")


def test_adapter_is_names_only():
    """SDKNames adds no behaviour: every attribute it serves is releasecache's own."""
    names = SDKNames(object())
    with pytest.raises(AttributeError):
        names.summarize_comparison  # noqa: B018 - reached through .cache, not renamed


# -- beyond AllenSDK's tests: what the issue asks of the same names ------------------------------


def test_warnings_point_at_the_callers_line(sdk_release, sdk_cache, vbn, vbn_bucket):
    """Every warning names this file (the user's line), not a module inside the package."""
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket).cache
    calls = [lambda: cache.load_manifest(manifest_name("4.0.0")),
             lambda: cache.load_latest_manifest(),
             lambda: vbn().load_manifest(vbn_bucket.names[0]),
             lambda: vbn()]  # the project cache opens the last used (outdated) manifest on construction
    for call in calls:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("default")
            call()
        assert record, call
        assert {Path(w.filename).name for w in record} == {Path(__file__).name}, [w.filename for w in record]


def test_outdated_warning_once_per_cache_not_once_per_line(sdk_release, sdk_cache, tmp_path):
    """Python's default filter shows a warning once per line; two caches loading at one line both warn."""
    bucket, _ = sdk_release(every_mutation())
    seen = []
    for i in range(2):
        cache = sdk_cache(bucket, tmp_path / f"c{i}")
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("default")
            for _ in range(2):
                cache.load_manifest(manifest_name("3.0.0"))  # the same line, twice per cache
        seen.append(len(_outdated(record)))
    assert seen == [1, 1]


def test_bare_versions_are_accepted(sdk_release, sdk_cache, vbn, vbn_bucket):
    bucket, _ = sdk_release(every_mutation())
    cache = sdk_cache(bucket).cache
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest("2.0.0")
    assert cache.current_manifest() == manifest_name("2.0.0")
    diff = cache.compare_manifests("1.0.0", "v15.0.0")
    assert diff.splitlines()[1] == manifest_name("1.0.0") and diff.splitlines()[3] == manifest_name("15.0.0")
    with pytest.raises(ManifestNotFoundError) as info:
        cache.load_manifest("99.0.0")
    assert manifest_name("15.0.0") in str(info.value)
    project = vbn()
    versions = [name.rsplit("_v", 1)[1][:-5] for name in vbn_bucket.names]
    with pytest.warns(OutdatedManifestWarning):
        project.load_manifest(versions[0])
    assert project.current_manifest() == vbn_bucket.names[0]
    assert "project_metadata/units.csv changed" in project.compare_manifests(versions[0], versions[-1])


def test_session_and_probe_ids_in_any_integer_spelling(vbn):
    import numpy as np

    from releasecache.errors import UnknownProbeError, UnknownSessionError

    cache = vbn()
    probes = cache.get_probe_table()
    probe = probes[probes["has_lfp_data"].astype(bool) & (probes["file_id"] >= 0)].iloc[0]
    session_id = int(probe["ecephys_session_id"])
    for spelling in (str(session_id), np.int64(session_id), float(session_id)):
        with cache.get_ecephys_session(spelling) as session:
            assert session.ecephys_session_id == session_id
    for bad in ("abc", 1.5, None):
        with pytest.raises(UnknownSessionError) as info:
            cache.get_ecephys_session(bad)
        assert "must be an integer" in str(info.value) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownSessionError, match="file id must be an integer"):
        cache.prefetch(file_ids=["abc"])
    with cache.get_ecephys_session(session_id) as session:
        by_id = session.get_lfp(int(probe.name))
        by_name = session.get_lfp(probe["name"])
        by_digits = session.get_lfp(str(int(probe.name)))
        assert by_id.equals(by_name) and by_id.equals(by_digits)
        with pytest.raises(UnknownProbeError):
            session.get_lfp("probeZ")
        with pytest.raises(UnknownProbeError) as info:
            session.get_lfp(2.5)
        assert "integer" in str(info.value)


def test_wrong_cache_dir_type_names_the_argument(vbn_bucket):
    from releasecache.errors import InvalidArgumentError

    for make in (lambda: ProjectCache.from_s3_cache(123, endpoint_url=vbn_bucket.endpoint_url),
                 lambda: ProjectCache.from_local_cache(["a"]),
                 lambda: CloudCache.from_s3(None, vbn_bucket.bucket, vbn_bucket.project,
                                            endpoint_url=vbn_bucket.endpoint_url)):
        with pytest.raises(InvalidArgumentError) as info:
            make()
        assert "cache_dir" in str(info.value) and isinstance(info.value, TypeError)


def test_construct_local_manifest_adopts_what_an_allensdk_cache_left(sdk_release, sdk_cache, tmp_path, s3_server):
    """A cache opened where AllenSDK kept its files warns, and construct_local_manifest() brings them in."""
    from releasecache import MissingLocalManifestWarning

    bucket, names = sdk_release(three_versions())
    old = tmp_path / "old"
    for version, files in three_versions().items():  # AllenSDK's layout: plain files, its manifests at the top
        for fname, (_, body) in files["data"].items():
            path = old / f"{PROJECT_X}-{version}" / "data" / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
    (old / "_manifest_last_used.txt").write_text(names[0])
    (old / "_downloaded_data.json").write_text("{}")
    with pytest.warns(MissingLocalManifestWarning, match=r"CloudCache\.construct_local_manifest\(\)"):
        cache = sdk_cache(bucket, old)
    report = cache.construct_local_manifest()
    assert len(report.adopted) == 6 and not report.mismatched  # 9 version paths, 6 distinct contents
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sdk_cache(bucket, old)
    assert not [w for w in record if issubclass(w.category, MissingLocalManifestWarning)]
    offline = CloudCache.from_local_cache(old, PROJECT_X, progress=False)
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutdatedManifestWarning)
            offline.load_manifest(name)
        for file_id in "123":
            attr = offline.data_path(file_id)
            assert attr["exists"] and attr["local_path"].is_symlink()
            assert blake2b(offline.download_data(file_id).read_bytes()) == attr["file_attributes"].file_hash


def test_report_corner_cases_that_differ_on_purpose(sdk_release, sdk_cache):
    """docs/migration.md, *Reports*: a copy of existing bytes at a new path is 'created'; a removed path
    whose bytes remain at another existing path is 'deleted' (AllenSDK prints nothing / 'renamed')."""
    versions = {"1.0.0": {"data": {"a.txt": ("1", b"same bytes"), "b.txt": ("2", b"other")}, "metadata": {}},
                "2.0.0": {"data": {"a.txt": ("1", b"same bytes"), "b.txt": ("2", b"other"),
                                   "copy.txt": ("3", b"same bytes")}, "metadata": {}},
                "3.0.0": {"data": {"a.txt": ("1", b"same bytes")}, "metadata": {}}}
    bucket, names = sdk_release(versions)
    cache = sdk_cache(bucket)
    assert cache.compare_manifests(names[0], names[1]).splitlines()[5:] == ["data/copy.txt created"]
    assert cache.compare_manifests(names[1], names[2]).splitlines()[5:] == ["data/b.txt deleted",
                                                                           "data/copy.txt deleted"]


def test_data_path_in_a_read_only_cache(sdk_release, sdk_cache, tmp_path):
    """Read-only, a missing version link cannot be made: local_path is then the stored file, which opens."""
    bucket, names = sdk_release(three_versions())
    cache = sdk_cache(bucket)
    paths = _download_everything(cache, names[:1])
    paths[names[0]]["1"].unlink()
    reader = CloudCache.from_local_cache(tmp_path / "cache", PROJECT_X, read_only=True, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        reader.load_manifest(names[0])
    attr = reader.data_path("1")
    assert attr["exists"] and attr["local_path"].read_bytes() == b"first one"
    assert not paths[names[0]]["1"].exists()  # nothing was written
    assert reader.data_path("2")["local_path"] == paths[names[0]]["2"]  # the link is there: the familiar path


# -- test_file_attributes.py, test_static_local_cache.py ---------------------------------------


def test_cache_file_attributes():
    from releasecache.cache import CacheFileAttributes
    from releasecache.errors import InvalidArgumentError

    attr = CacheFileAttributes("http://my/url", "aaabbb", "12345", Path("/my/local/path"))
    assert (attr.url, attr.version_id, attr.file_hash, attr.local_path) == ("http://my/url", "aaabbb", "12345",
                                                                            Path("/my/local/path"))
    assert str(attr).startswith("CacheFileParameters{") and json.loads(str(attr)[len("CacheFileParameters"):]) == {
        "url": "http://my/url", "version_id": "aaabbb", "file_hash": "12345", "local_path": "/my/local/path"}
    for bad in ((1, "a", "b", Path("/x")), ("u", 2, "b", Path("/x")), ("u", "a", 3, Path("/x")), ("u", "a", "b", "/x")):
        with pytest.raises(ValueError) as info:  # AllenSDK raises ValueError; this is also a TypeError
            CacheFileAttributes(*bad)
        assert isinstance(info.value, InvalidArgumentError) and "must be" in str(info.value)


def test_static_local_cache_access(tmp_path):
    """A mounted bucket (laid out like the bucket) serves metadata and data; files are verified copies."""
    mount = tmp_path / "mount"
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    body = frame.to_csv(index=False).encode()
    files = {f"{PROJECT_X}/project_metadata/meta.csv": body, f"{PROJECT_X}/data/f1.txt": b"mounted bytes"}
    for key, data in files.items():
        (mount / key).parent.mkdir(parents=True, exist_ok=True)
        (mount / key).write_bytes(data)
    document = {"project_name": PROJECT_X, "manifest_version": "1.0.0", "metadata_file_id_column_name": "file_id",
                "data_pipeline": [], "metadata_files": {"meta.csv": {
                    "url": f"https://mounted.s3.amazonaws.com/{PROJECT_X}/project_metadata/meta.csv",
                    "version_id": "v1", "file_hash": blake2b(body)}},
                "data_files": {"1": {"url": f"https://mounted.s3.amazonaws.com/{PROJECT_X}/data/f1.txt",
                                     "version_id": "v1", "file_hash": blake2b(b"mounted bytes")}}}
    (mount / PROJECT_X / "manifests").mkdir()
    (mount / PROJECT_X / "manifests" / manifest_name("1.0.0")).write_text(json.dumps(document))
    cache = SDKNames(CloudCache.from_mirror(tmp_path / "cache", mount, PROJECT_X, progress=False))
    assert cache.manifest_file_names == [manifest_name("1.0.0")]
    cache.load_last_manifest()
    pd.testing.assert_frame_equal(cache.get_metadata("meta.csv"), frame)
    path = cache.download_data("1")
    assert path.read_bytes() == b"mounted bytes" and tmp_path / "cache" in path.parents
