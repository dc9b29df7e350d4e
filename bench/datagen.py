"""Deterministic benchmark data: files of random bytes, VBN-format manifests, static S3 listings.

Everything is written below ``bench/work/`` and reused across runs when its spec
is unchanged (a stamp file records the spec and the hashes).

Layout::

    work/s3root/<bucket>/<key>                     what nginx serves (and what the references fetch)
    work/listings/<bucket>/list/<prefix>.xml       ListObjectsV2 answers (manifests folder)
    work/listings/<bucket>/versions/<key>.xml      ListObjectVersions answers (one per object)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from xml.sax.saxutils import escape

from servers import listing_file_name

MiB = 1024 * 1024
GiB = 1024 * MiB
CHUNK = 16 * MiB
LAST_MODIFIED = "2023-06-01T00:00:00.000Z"
SDK_PIPELINE = [{"name": "AllenSDK", "version": "2.16.2",
                 "comment": "synthetic benchmark release in the Visual Behavior Neuropixels manifest format"}]


def write_random_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` pseudo-random bytes (seeded, incompressible) and return their blake2b."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(seed))
    hasher = hashlib.blake2b()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        left = size
        while left > 0:
            block = rng.bytes(min(CHUNK, left))
            hasher.update(block)
            fh.write(block)
            left -= len(block)
    os.replace(tmp, path)
    return hasher.hexdigest()


def hash_file(path: Path) -> str:
    hasher = hashlib.blake2b()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            hasher.update(block)
    return hasher.hexdigest()


@dataclass
class Obj:
    """One object of a benchmark bucket."""

    key: str
    size: int
    file_hash: str
    version_id: str
    name: str = ""          # manifest key: metadata name or data file id
    metadata: bool = False

    def url(self, bucket: str) -> str:
        # The real release's URL style; both releasecache and AllenSDK parse it.
        return f"https://{bucket}.s3.us-west-2.amazonaws.com/{self.key}"

    def entry(self, bucket: str) -> dict:
        return {"url": self.url(bucket), "version_id": self.version_id, "file_hash": self.file_hash}

    def to_json(self) -> dict:
        return self.__dict__.copy()


def version_id_for(file_hash: str) -> str:
    return "bv." + file_hash[:32]


def manifest_document(bucket: str, project: str, version: str, objs: Iterable[Obj]) -> dict:
    objs = list(objs)
    return {
        "project_name": project,
        "manifest_version": version,
        "metadata_file_id_column_name": "file_id",
        "data_pipeline": SDK_PIPELINE,
        "metadata_files": {o.name: o.entry(bucket) for o in objs if o.metadata},
        "data_files": {o.name: o.entry(bucket) for o in objs if not o.metadata},
    }


def manifest_name(project: str, version: str) -> str:
    return f"{project}_project_manifest_v{version}.json"


class Bucket:
    """A directory served by nginx as one S3 bucket, plus its static listings."""

    def __init__(self, work: Path, name: str) -> None:
        self.name = name
        self.root = work / "s3root" / name
        self.listings = work / "listings" / name
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def write_manifest(self, project: str, version: str, objs: Iterable[Obj]) -> str:
        name = manifest_name(project, version)
        body = json.dumps(manifest_document(self.name, project, version, objs), indent=1).encode()
        path = self.path(f"{project}/manifests/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        return name

    def write_listings(self, project: str, objs: Iterable[Obj]) -> None:
        """ListObjectsV2 of the manifests folder, and one ListObjectVersions per object key."""
        prefix = f"{project}/manifests/"
        folder = self.path(prefix)
        contents = []
        for p in sorted(folder.glob("*.json")):
            contents.append(
                f"<Contents><Key>{escape(prefix + p.name)}</Key><LastModified>{LAST_MODIFIED}</LastModified>"
                f'<ETag>"{hashlib.md5(p.name.encode()).hexdigest()}"</ETag><Size>{p.stat().st_size}</Size>'
                "<StorageClass>STANDARD</StorageClass></Contents>")
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
               '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
               f"<Name>{self.name}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(contents)}</KeyCount>"
               "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>" + "".join(contents) + "</ListBucketResult>")
        out = self.listings / "list"
        out.mkdir(parents=True, exist_ok=True)
        (out / listing_file_name(prefix)).write_text(xml)
        vdir = self.listings / "versions"
        vdir.mkdir(parents=True, exist_ok=True)
        for o in objs:
            xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                   '<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                   f"<Name>{self.name}</Name><Prefix>{escape(o.key)}</Prefix><KeyMarker></KeyMarker>"
                   "<VersionIdMarker></VersionIdMarker><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
                   f"<Version><Key>{escape(o.key)}</Key><VersionId>{o.version_id}</VersionId><IsLatest>true</IsLatest>"
                   f'<LastModified>{LAST_MODIFIED}</LastModified><ETag>"{o.file_hash[:32]}"</ETag><Size>{o.size}</Size>'
                   "<StorageClass>STANDARD</StorageClass></Version></ListVersionsResult>")
            (vdir / listing_file_name(o.key)).write_text(xml)


def _stamp_ok(stamp: Path, spec: dict, bucket: Bucket) -> list[Obj] | None:
    try:
        saved = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("spec") != spec:
        return None
    objs = [Obj(**o) for o in saved["objects"]]
    for o in objs:
        try:
            if bucket.path(o.key).stat().st_size != o.size:
                return None
        except FileNotFoundError:
            return None
    return objs


def _save_stamp(stamp: Path, spec: dict, objs: list[Obj]) -> None:
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"spec": spec, "objects": [o.to_json() for o in objs]}, indent=0))


def random_objects(bucket: Bucket, files: list[tuple[str, str, int]], seed: int) -> list[Obj]:
    """Write ``(name, key, size)`` data files; return their objects."""
    objs = []
    for i, (name, key, size) in enumerate(files):
        h = write_random_file(bucket.path(key), size, seed * 1_000_003 + i)
        objs.append(Obj(key=key, size=size, file_hash=h, version_id=version_id_for(h), name=name))
    return objs


def csv_object(bucket: Bucket, name: str, key: str, text: str) -> Obj:
    path = bucket.path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(data)
    h = hashlib.blake2b(data).hexdigest()
    return Obj(key=key, size=len(data), file_hash=h, version_id=version_id_for(h), name=name, metadata=True)


# -- datasets --------------------------------------------------------------------------


def http_bulk(work: Path, *, big: int, big_size: int, small: int, small_size: int) -> dict:
    """W1: ``big`` files of ``big_size`` and ``small`` files of ``small_size`` (plus a manifest)."""
    bucket = Bucket(work, "bench-http")
    project = "bench-bulk"
    spec = {"v": 2, "big": big, "big_size": big_size, "small": small, "small_size": small_size}
    stamp = work / "stamps" / "w1.json"
    objs = _stamp_ok(stamp, spec, bucket)
    if objs is None:
        files = [(str(i), f"{project}/big/big_{i}.bin", big_size) for i in range(big)]
        files += [(str(big + i), f"{project}/small/small_{i:04d}.bin", small_size) for i in range(small)]
        objs = random_objects(bucket, files, seed=1)
        _save_stamp(stamp, spec, objs)
    name = bucket.write_manifest(project, "1.0.0", objs)
    bucket.write_listings(project, [])
    return {"bucket": bucket.name, "project": project, "manifest": name, "objects": objs,
            "bytes": sum(o.size for o in objs), "paths": [str(bucket.path(o.key)) for o in objs]}


def one_big_file(work: Path, size: int) -> dict:
    """W5/W6: one file of ``size`` bytes in its own project."""
    bucket = Bucket(work, "bench-http")
    project = "bench-one"
    spec = {"v": 1, "size": size}
    stamp = work / "stamps" / "w5.json"
    objs = _stamp_ok(stamp, spec, bucket)
    if objs is None:
        objs = random_objects(bucket, [("1", f"{project}/big/one_{size}.bin", size)], seed=5)
        _save_stamp(stamp, spec, objs)
    name = bucket.write_manifest(project, "1.0.0", objs)
    bucket.write_listings(project, [])
    return {"bucket": bucket.name, "project": project, "manifest": name, "objects": objs,
            "bytes": sum(o.size for o in objs), "paths": [str(bucket.path(o.key)) for o in objs]}


VBN_PROJECT = "visual-behavior-neuropixels"


def _small_vbn_tables(ecephys: list[tuple[int, int, str]], behavior: list[tuple[int, str]],
                      probes: list[tuple[int, int, str]]) -> dict[str, str]:
    """Tiny metadata CSVs with the columns AllenSDK's loader indexes by."""
    rng = random.Random(7)
    sessions = ["ecephys_session_id,behavior_session_id,mouse_id,session_type,file_id,"
                "abnormal_histology,abnormal_activity,unit_count,probe_count,channel_count"]
    for sid, fid, _ in ecephys:
        sessions.append(f"{sid},{sid + 1000},{500000 + sid % 1000},EPHYS_1_images_G_3uL_reward,{fid},,,"
                        f"{rng.randint(1500, 2500)},6,2304")
    behavior_rows = ["behavior_session_id,ecephys_session_id,mouse_id,session_type,file_id,"
                     "prior_exposures_to_image_set"]
    for bid, (fid, _) in enumerate(behavior, start=1_100_000_000):
        behavior_rows.append(f"{bid},,{600000 + bid % 1000},TRAINING_5_images_G_epilogue_5uL_reward,{fid},"
                             f"{rng.randint(0, 20)}")
    probe_rows = ["ecephys_probe_id,ecephys_session_id,name,sampling_rate,lfp_sampling_rate,has_lfp_data,file_id"]
    for pid, sid, (fid, _) in [(1_200_000_000 + i, p[0], (p[1], p[2])) for i, p in enumerate(probes)]:
        probe_rows.append(f"{pid},{sid},probe{'ABCDEF'[pid % 6]},30000.0,2500.0,True,{fid}")
    channel_rows = ["ecephys_channel_id,ecephys_probe_id,probe_channel_number,structure_acronym"]
    unit_rows = ["unit_id,ecephys_channel_id,quality,firing_rate,snr"]
    cid = 1_300_000_000
    uid = 1_400_000_000
    for i in range(len(probes)):
        for ch in range(384):
            channel_rows.append(f"{cid},{1_200_000_000 + i},{ch},{'VISp' if ch > 200 else 'CA1'}")
            if ch % 3 == 0:
                unit_rows.append(f"{uid},{cid},good,{rng.uniform(0.1, 40):.3f},{rng.uniform(1, 8):.3f}")
                uid += 1
            cid += 1
    return {"ecephys_sessions": "\n".join(sessions) + "\n", "behavior_sessions": "\n".join(behavior_rows) + "\n",
            "probes": "\n".join(probe_rows) + "\n", "channels": "\n".join(channel_rows) + "\n",
            "units": "\n".join(unit_rows) + "\n"}


def small_vbn_release(work: Path, *, sessions: int, session_size: int, probes_per_session: int, probe_size: int,
                      behavior: int, behavior_size: int, bucket_name: str = "visual-behavior-neuropixels-data",
                      stamp_name: str = "w2") -> dict:
    """W2 (and W7): a small release shaped like VBN: 5 metadata CSVs, ecephys session files, probe
    LFP files, behavior-only session files, in the real bucket and key layout."""
    bucket = Bucket(work, bucket_name)
    p = VBN_PROJECT
    spec = {"v": 2, "sessions": sessions, "session_size": session_size, "ppp": probes_per_session,
            "probe_size": probe_size, "behavior": behavior, "behavior_size": behavior_size}
    stamp = work / "stamps" / f"{stamp_name}.json"
    objs = _stamp_ok(stamp, spec, bucket)
    if objs is None:
        files: list[tuple[str, str, int]] = []
        ecephys, probes, behav = [], [], []
        fid = 1
        for s in range(sessions):
            sid = 1_000_000_000 + s
            files.append((str(fid), f"{p}/behavior_ecephys_sessions/{sid}/ecephys_session_{sid}.nwb", session_size))
            ecephys.append((sid, fid, ""))
            fid += 1
            for k in range(probes_per_session):
                pid = 1_200_000_000 + s * probes_per_session + k
                files.append((str(fid), f"{p}/behavior_ecephys_sessions/{sid}/probe_{pid}_lfp.nwb", probe_size))
                probes.append((sid, fid, ""))
                fid += 1
        for b in range(behavior):
            bid = 1_100_000_000 + b
            files.append((str(fid), f"{p}/behavior_only_sessions/{bid}/behavior_session_{bid}.nwb", behavior_size))
            behav.append((fid, ""))
            fid += 1
        objs = random_objects(bucket, files, seed=2)
        for name, text in _small_vbn_tables(ecephys, behav, probes).items():
            objs.append(csv_object(bucket, name, f"{p}/project_metadata/{name}.csv", text))
        _save_stamp(stamp, spec, objs)
    name = bucket.write_manifest(p, "0.5.0", objs)
    bucket.write_listings(p, objs)
    return {"bucket": bucket.name, "project": p, "manifest": name, "objects": objs,
            "bytes": sum(o.size for o in objs), "paths": [str(bucket.path(o.key)) for o in objs]}


def whole_release(work: Path, *, big_size: int, small: int, small_size: int) -> dict:
    """W7: one large session file plus ``small`` behavior files and the 5 metadata CSVs, VBN format."""
    return small_vbn_release(work, sessions=1, session_size=big_size, probes_per_session=0, probe_size=0,
                             behavior=small, behavior_size=small_size, bucket_name="bench-release",
                             stamp_name="w7")


def full_scale_tables_release(work: Path, n_sessions: int | None = None) -> dict:
    """W4: the full-scale metadata tables (from the project's fixtures), served like the real bucket.

    Raises ImportError if the fixtures generator is not available.
    """
    from tests.support.fixtures import vbn  # noqa: F401  (ImportError -> "not available")

    write = getattr(vbn, "write_full_scale_tables")
    bucket = Bucket(work, "bench-vbn-full")
    p = VBN_PROJECT
    out = work / "full_scale_tables"
    stamp = work / "stamps" / "w4.json"
    spec = {"v": 1, "n_sessions": n_sessions}
    objs = _stamp_ok(stamp, spec, bucket)
    if objs is None:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        if n_sessions is None:
            write(out)
        else:
            write(out, n_sessions)
        csvs = {c.stem: c for c in sorted(out.rglob("*.csv"))}
        needed = {"ecephys_sessions", "behavior_sessions", "probes", "channels", "units"}
        if not needed <= set(csvs):
            raise ImportError(f"write_full_scale_tables wrote {sorted(csvs)}, missing {sorted(needed - set(csvs))}")
        objs = []
        for name, path in csvs.items():
            key = f"{p}/project_metadata/{name}.csv"
            dest = bucket.path(key)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            h = hash_file(dest)
            objs.append(Obj(key=key, size=dest.stat().st_size, file_hash=h, version_id=version_id_for(h),
                            name=name, metadata=True))
        _save_stamp(stamp, spec, objs)
    name = bucket.write_manifest(p, "0.5.0", objs)
    bucket.write_listings(p, objs)
    return {"bucket": bucket.name, "project": p, "manifest": name, "objects": objs,
            "bytes": sum(o.size for o in objs), "rows": _count_rows(bucket.path(f"{p}/project_metadata/units.csv"))}


def _count_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(CHUNK), b"")) - 1


def version_switch_sources(work: Path, *, files: int, changed: int, min_size: int, max_size: int) -> dict:
    """W3: two version directories (for releasecache.publish) with ``changed`` of ``files`` data files changed."""
    base = work / "w3src"
    spec = {"v": 1, "files": files, "changed": changed, "min": min_size, "max": max_size}
    stamp = work / "stamps" / "w3.json"
    try:
        saved = json.loads(stamp.read_text())
        if saved["spec"] == spec and (base / "1.1.0" / "file_ids.json").is_file():
            return saved["info"]
    except (OSError, ValueError, KeyError):
        pass
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    project = "bench-switch"
    rng = random.Random(3)
    sizes = [rng.randint(min_size, max_size) for _ in range(files)]
    changed_ids = sorted(rng.sample(range(files), changed))
    ids = {str(i): f"{project}/sessions/{i // 20:04d}/file_{i:05d}.dat" for i in range(files)}
    meta = "id,file_id\n" + "".join(f"{i},{i}\n" for i in range(files))
    for version in ("1.0.0", "1.1.0"):
        root = base / version
        (root / project / "project_metadata").mkdir(parents=True, exist_ok=True)
        (root / project / "project_metadata" / "files.csv").write_text(meta)
        (root / "file_ids.json").write_text(json.dumps(ids))
    import numpy as np

    for i in range(files):
        data = np.random.Generator(np.random.PCG64(10_000 + i)).bytes(sizes[i])
        for version in ("1.0.0", "1.1.0"):
            path = base / version / ids[str(i)]
            path.parent.mkdir(parents=True, exist_ok=True)
            if version == "1.1.0" and i in changed_ids:
                data = np.random.Generator(np.random.PCG64(90_000 + i)).bytes(sizes[i])
            path.write_bytes(data)
    info = {"project": project, "versions": {v: str(base / v) for v in ("1.0.0", "1.1.0")},
            "files": files, "changed_ids": [str(i) for i in changed_ids],
            "changed_bytes": sum(sizes[i] for i in changed_ids), "total_bytes": sum(sizes)}
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"spec": spec, "info": info}))
    return info


def streaming_release(work: Path, *, units_per_probe: int, spike_factor: int) -> dict:
    """W8: the synthetic VBN release (one version), with one ecephys session rewritten at a larger
    scale: ``units_per_probe`` units on each probe (at most 100: the fixture spaces unit ids by 100
    per probe) and ``spike_factor`` times as many spikes per unit, so that, as in the real files, the
    spike data make the file hundreds of MB and the small tables sit far apart in it.

    Uses the project's fixture generator (tests.support.fixtures) for the file format.
    """
    import dataclasses
    import shutil

    from tests.support.fixtures import vbn

    from releasecache.cache.publish import build_manifest

    bucket = Bucket(work, "bench-stream")
    p = VBN_PROJECT
    version = "0.1.0"
    spec = {"v": 2, "units_per_probe": units_per_probe, "spike_factor": spike_factor}
    stamp = work / "stamps" / "w8.json"
    try:
        saved = json.loads(stamp.read_text())
        if saved["spec"] == spec and bucket.path(saved["key"]).is_file():
            return saved["info"]
    except (OSError, ValueError, KeyError):
        pass
    src = work / "w8src"
    shutil.rmtree(src, ignore_errors=True)
    vdir = vbn.build_vbn_release(src, versions=(version,))[version]
    entry = next(e for e in vbn.data_files(0) if e.kind == "ecephys")
    session = entry.session
    probes = tuple(dataclasses.replace(pr, n_units=min(100, max(pr.n_units, units_per_probe)))
                   for pr in session.probes)
    bigger = dataclasses.replace(session, probes=probes)
    path = vdir / entry.key
    import numpy as np

    original = vbn.session_units
    rng = np.random.Generator(np.random.PCG64(8))

    def more_spikes(sess, stage):  # type: ignore[no-untyped-def]
        out = []
        for probe, units in original(sess, stage):
            times, amps = [], []
            for t, a in zip(units.spike_times, units.spike_amplitudes):
                n = len(t) * spike_factor
                times.append(np.sort(rng.uniform(max(0.0, float(t.min())), float(t.max()), n)))
                amps.append(np.resize(a, n) * rng.lognormal(0.0, 0.05, n).astype(a.dtype))
            out.append((probe, dataclasses.replace(units, spike_times=times, spike_amplitudes=amps)))
        return out

    # The fixture's own writer (private to the fixtures package), at the larger scale.
    vbn.session_units = more_spikes
    try:
        vbn._write_ecephys(path, bigger, 0)
    finally:
        vbn.session_units = original
    doc = build_manifest(p, version, vdir, bucket=bucket.name,
                         version_id_for=lambda key, _path, digest: version_id_for(digest))
    dest = bucket.root / p
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(vdir / p, dest)
    name = manifest_name(p, version)
    (dest / "manifests").mkdir(parents=True, exist_ok=True)
    (dest / "manifests" / name).write_text(json.dumps(doc, indent=1))
    bucket.write_listings(p, [])
    info = {"bucket": bucket.name, "project": p, "manifest": name, "key": entry.key,
            "file_id": str(entry.file_id), "ecephys_session_id": int(session.ecephys_session_id),
            "size": path.stat().st_size, "units": sum(pr.n_units for pr in probes)}
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"spec": spec, "key": entry.key, "info": info}))
    shutil.rmtree(src, ignore_errors=True)
    return info
