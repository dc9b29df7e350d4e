"""Structural NWB diffs: exactly the changes the fixture's changelog lists, locally and streamed from S3."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

from releasecache.audit.nwb import diff_nwb
from releasecache.errors import NwbLayoutError

PREFIX = "visual-behavior-neuropixels"
E1 = f"behavior_ecephys_sessions/1044385384/ecephys_session_1044385384.nwb"
E1_LFP_A = "behavior_ecephys_sessions/1044385384/probe_probeA_lfp.nwb"


def _path(release, version, relative):
    return release[version] / PREFIX / relative


def test_amplitude_fix_in_e1(vbn_release):
    d = diff_nwb(_path(vbn_release, "0.1.0", E1), _path(vbn_release, "0.2.0", E1), path=E1,
                 old_version="0.1.0", new_version="0.2.0")
    assert d.paths == ["units/amplitude", "units/spike_amplitudes", "units/waveform_mean"]
    for change in d.changes:
        assert change.kind == "changed" and change.type == "dataset"
        assert change.values is not None and change.values.scale == pytest.approx(0.8)  # divided by 1.25
        assert change.shape is None and change.dtype is None and not change.attributes
    assert d["units/spike_amplitudes"].values.differing == d["units/spike_amplitudes"].values.elements
    assert d.datasets_compared > 100
    text = str(d)
    assert "units/spike_amplitudes changed" in text and "divided by 1.25" in text
    assert "`units/waveform_mean` changed" in d.to_markdown()
    assert list(d.to_frame().index) == d.paths
    assert json.loads(json.dumps(d.to_dict()))["changes"][0]["values"]["scale"] == pytest.approx(0.8)


def test_electrode_validity_and_lfp_scaling(vbn_release):
    d = diff_nwb(_path(vbn_release, "0.2.0", E1), _path(vbn_release, "0.3.0", E1))
    assert d.paths == ["general/extracellular_ephys/electrodes/valid_data"]
    values = d.changes[0].values
    assert values.differing == 14 and values.examples[0] == (370, True, False)  # channels 370-383 of probeA
    lfp = diff_nwb(_path(vbn_release, "0.2.0", E1_LFP_A), _path(vbn_release, "0.3.0", E1_LFP_A))
    assert lfp.paths == ["acquisition/probe_1044506933_lfp/probe_1044506933_lfp_data/data"]
    assert lfp.changes[0].values.scale == pytest.approx(0.5)


def test_unchanged_file_and_path_filter(vbn_release):
    same = diff_nwb(_path(vbn_release, "0.1.0", E1), _path(vbn_release, "0.1.0", E1))
    assert not same and "same groups, datasets" in str(same)
    only_units = diff_nwb(_path(vbn_release, "0.1.0", E1), _path(vbn_release, "0.2.0", E1), paths=["units"])
    assert only_units.paths == ["units/amplitude", "units/spike_amplitudes", "units/waveform_mean"]
    assert only_units.objects_old < same.objects_old
    electrodes = diff_nwb(_path(vbn_release, "0.1.0", E1), _path(vbn_release, "0.2.0", E1),
                          paths=["general/extracellular_ephys"])
    assert not electrodes


def test_structure_attributes_links_and_small_blocks(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    with h5py.File(a, "w") as f:
        f.create_dataset("g/x", data=np.arange(1000.0), chunks=(64,))
        f.create_dataset("g/gone", data=[1, 2])
        f.create_dataset("g/shape", data=np.zeros(3))
        f.create_dataset("g/text", data=np.array([b"a", b"b"], dtype="S1"))
        f["g"].attrs["unit"] = "V"
        f["link"] = h5py.SoftLink("/g/x")
    with h5py.File(b, "w") as f:
        x = np.arange(1000.0)
        x[900] = -1.0
        f.create_dataset("g/x", data=x, chunks=(64,))
        f.create_dataset("g/new", data=[1])
        f.create_dataset("g/shape", data=np.zeros(4))
        f.create_dataset("g/text", data=np.array([b"a", b"c"], dtype="S1"))
        f["g"].attrs["unit"] = "mV"
        f["link"] = h5py.SoftLink("/g/shape")
    d = diff_nwb(a, b, block_bytes=256)  # many blocks: only the one holding element 900 is compared element-wise
    by_path = {c.path: c for c in d.changes}
    assert set(by_path) == {"g", "g/gone", "g/new", "g/shape", "g/text", "g/x", "link"}
    assert by_path["g"].attributes == {"unit": ("V", "mV")}
    assert by_path["g/gone"].kind == "removed" and by_path["g/new"].kind == "added"
    assert by_path["g/shape"].shape == ((3,), (4,)) and by_path["g/shape"].values is None
    assert by_path["g/x"].values.differing == 1 and by_path["g/x"].values.examples == [(900, 900.0, -1.0)]
    assert by_path["g/x"].values.scale is None  # one changed element is no scale factor
    assert by_path["g/text"].values.examples == [(1, "b", "c")]
    assert by_path["link"].target == ("g/x", "g/shape")
    structure_only = diff_nwb(a, b, compare_values=False)
    assert "g/x" not in structure_only and structure_only.datasets_compared == 0


def test_not_hdf5(tmp_path):
    bad = tmp_path / "bad.nwb"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(NwbLayoutError, match="not a readable HDF5"):
        diff_nwb(bad, bad)


def test_streamed_from_s3_at_both_pinned_versions(vbn_bucket):
    """The same diff from two RemoteFile streams of the same key at two version ids; less than both files read."""
    from releasecache.remote.s3 import S3Remote
    from releasecache.transfer.stream import RemoteFile

    remote = S3Remote(vbn_bucket.bucket, endpoint_url=vbn_bucket.endpoint_url, anonymous=True)
    v1, v2, _ = vbn_bucket.manifests
    old = v1.by_relative_path()[E1]
    new = v2.by_relative_path()[E1]
    assert old.key == new.key and old.version_id != new.version_id
    # small blocks: on a 1.2 MB fixture file the default 256 KiB blocks would cover it whole
    small = dict(block_size=16 * 1024, max_readahead=64 * 1024)
    with RemoteFile(remote, old.location, **small) as fa, RemoteFile(remote, new.location, **small) as fb:
        d = diff_nwb(fa, fb, paths=["units"])
    assert d.paths == ["units/amplitude", "units/spike_amplitudes", "units/waveform_mean"]
    assert d.bytes_read_old < d.size_old and d.bytes_read_new < d.size_new
    assert "streamed: old" in str(d)
    with RemoteFile(remote, old.location) as fa, RemoteFile(remote, new.location) as fb:
        full = diff_nwb(fa, fb)
    assert full.paths == d.paths
    local = hashlib.blake2b(_path(vbn_bucket.release, "0.2.0", E1).read_bytes()).hexdigest()
    assert local == new.file_hash  # the stream read the pinned 0.2.0 bytes
