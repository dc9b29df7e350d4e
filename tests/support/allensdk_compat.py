"""AllenSDK-shaped releases on the loopback S3 server, and a name-only adapter.

AllenSDK's cloud-cache tests publish small releases whose manifests follow the
data-release tool's conventions: a project prefix ``project-x/``, data files
keyed by file id (``"1"``), metadata files keyed by their file name
(``"metadata_1.csv"``), virtual-hosted ``http://<bucket>.s3.amazonaws.com/``
URLs, and manifests named ``project-x_manifest_v<version>.json``. The helpers
here publish releases of that shape (with this suite's own bytes) so that the
behaviours those tests assert can be checked against releasecache.

:class:`SDKNames` only renames: AllenSDK exposes several values as properties
(``cache.latest_manifest_file``) where releasecache has methods. It adds no
behaviour, so every assertion made through it is an assertion about
releasecache itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

PROJECT_X = "project-x"


def blake2b(data: bytes) -> str:
    """The 128-hex blake2b digest AllenSDK's manifests record."""
    return hashlib.blake2b(data).hexdigest()


def three_versions() -> dict[str, dict[str, Any]]:
    """Three versions of three data files: v2 changes f1, v3 changes f2 and f3 (and restores f1)."""
    return {
        "1.0.0": {"data": {"f1.txt": ("1", b"first one"), "f2.txt": ("2", b"second two"),
                           "f3.txt": ("3", b"third three")}, "metadata": {}},
        "2.0.0": {"data": {"f1.txt": ("1", b"first one, edited"), "f2.txt": ("2", b"second two"),
                           "f3.txt": ("3", b"third three")}, "metadata": {}},
        "3.0.0": {"data": {"f1.txt": ("1", b"first one"), "f2.txt": ("2", b"second two, edited"),
                           "f3.txt": ("3", b"third three, edited")}, "metadata": {}},
    }


def every_mutation() -> dict[str, dict[str, Any]]:
    """Fifteen versions that go through every kind of change AllenSDK's change-log test checks.

    Version 1 is the baseline; each later version applies one mutation (or a
    combination) to a fresh copy of it, as the comments say.
    """
    base = {"data": {"f1.txt": ("1", b"d-one"), "f2.txt": ("2", b"d-two"), "f3.txt": ("3", b"d-three")},
            "metadata": {"metadata_1.csv": b"m,1\n", "metadata_2.csv": b"m,2\n", "metadata_3.csv": b"m,3\n"}}
    out: dict[str, dict[str, Any]] = {}

    def version(n: int) -> dict[str, Any]:
        out[f"{n}.0.0"] = copy.deepcopy(base)
        return out[f"{n}.0.0"]

    version(1)
    version(2)["data"].pop("f2.txt")                                    # delete a data file
    v = version(3)
    v["data"]["f4.txt"] = ("4", v["data"].pop("f2.txt")[1])             # rename a data file
    version(4)["data"]["f3.txt"] = ("3", b"d-three, changed")           # change a data file
    version(5)["data"]["f4.txt"] = ("4", b"d-four")                     # add a data file
    v = version(6)
    v["data"].pop("f2.txt")                                             # delete one, change another
    v["data"]["f1.txt"] = ("1", b"d-one, changed")
    v = version(7)
    v["data"].pop("f2.txt")                                             # delete one, rename another
    v["data"]["f5.txt"] = ("5", v["data"].pop("f3.txt")[1])
    v = version(8)
    v["data"].pop("f2.txt")                                             # delete one, add another
    v["data"]["f5.txt"] = ("5", b"d-five")
    v = version(9)
    v["data"]["f4.txt"] = ("4", v["data"].pop("f3.txt")[1])             # rename one, add another
    v["data"]["f5.txt"] = ("5", b"d-five, new")
    version(10)["metadata"].pop("metadata_2.csv")                       # delete a metadata file
    v = version(11)
    v["metadata"]["metadata_4.csv"] = v["metadata"].pop("metadata_2.csv")  # rename a metadata file
    version(12)["metadata"]["metadata_3.csv"] = b"m,3,changed\n"        # change a metadata file
    version(13)["metadata"]["metadata_4.csv"] = b"m,4\n"                # add a metadata file
    v = version(14)
    v["data"].pop("f2.txt")                                             # delete data, rename metadata
    v["metadata"]["metadata_4.csv"] = v["metadata"].pop("metadata_3.csv")
    v = version(15)
    v["data"]["f4.txt"] = ("1", v["data"].pop("f1.txt")[1])             # rename data, add two more
    v["data"]["f5.txt"] = ("5", b"d-five, again")
    v["data"]["f6.txt"] = ("6", b"d-six")
    v["metadata"]["metadata_4.csv"] = v["metadata"].pop("metadata_2.csv")  # rename metadata, delete two
    v["metadata"].pop("metadata_1.csv")
    v["metadata"].pop("metadata_3.csv")
    return out


def manifest_name(version: str, project: str = PROJECT_X) -> str:
    """AllenSDK's test manifests are named ``<project>_manifest_v<version>.json``."""
    return f"{project}_manifest_v{version}.json"


def publish(server: Any, bucket: str, versions: dict[str, dict[str, Any]], *, project: str = PROJECT_X,
            url_host: str | None = None) -> list[str]:
    """Upload every version's files into ``bucket`` (versioned) and a manifest per version.

    URLs are virtual-hosted on ``url_host`` (default ``<bucket>.s3.amazonaws.com``),
    as the data-release tool writes them. Returns the manifest names, oldest first.
    """
    server.create_public_bucket(bucket)
    client = server.admin_client()
    host = url_host or f"{bucket}.s3.amazonaws.com"
    names = []
    for version, files in versions.items():
        uploads = {f"{project}/data/{fname}": (file_id, body) for fname, (file_id, body) in files["data"].items()}
        meta = {f"{project}/project_metadata/{fname}": (fname, body) for fname, body in files["metadata"].items()}
        document: dict[str, Any] = {
            "project_name": project, "manifest_version": version, "metadata_file_id_column_name": "file_id",
            "data_pipeline": [{"name": "AllenSDK", "version": "2.16.2", "comment": "test release"}],
            "metadata_files": {}, "data_files": {},
        }
        for section, items in (("data_files", uploads), ("metadata_files", meta)):
            for key, (name, body) in items.items():
                version_id = client.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]
                document[section][name] = {"url": f"http://{host}/{key}", "version_id": version_id,
                                           "file_hash": blake2b(body)}
        name = manifest_name(version, project)
        client.put_object(Bucket=bucket, Key=f"{project}/manifests/{name}", Body=json.dumps(document).encode())
        names.append(name)
    return names


class SDKNames:
    """AllenSDK's ``S3CloudCache`` attribute names over a releasecache ``CloudCache`` (renames only)."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    # AllenSDK properties that are methods in releasecache
    @property
    def manifest_file_names(self) -> list[str]:
        return self.cache.list_manifest_file_names()

    @property
    def latest_manifest_file(self) -> str:
        return self.cache.latest_manifest_file()

    @property
    def latest_downloaded_manifest_file(self) -> str:
        return self.cache.latest_downloaded_manifest_file()

    @property
    def current_manifest(self) -> str | None:
        return self.cache.current_manifest()

    # same names, same kind
    def __getattr__(self, name: str) -> Any:
        if name in ("version", "file_id_column", "metadata_file_names", "load_manifest", "load_last_manifest",
                    "load_latest_manifest", "list_all_downloaded_manifests", "data_path", "metadata_path",
                    "download_data", "download_metadata", "get_metadata", "compare_manifests",
                    "construct_local_manifest", "cache_dir"):
            return getattr(self.cache, name)
        raise AttributeError(name)
