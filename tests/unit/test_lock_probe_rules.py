"""The lock probe's mount rules: which filesystems' locks exclude only within one host."""

from __future__ import annotations

import pytest

from releasecache.store.locks import Mount, host_local_reason, mount_of, parse_mountinfo

pytestmark = pytest.mark.unit

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /nfs/nolock rw,relatime shared:5 - nfs srv:/export rw,vers=3,nolock,local_lock=all,addr=10.0.0.1
31 22 0:41 / /nfs/v4 rw,relatime shared:6 - nfs4 srv:/export rw,vers=4.2,local_lock=none
32 22 0:42 / /nfs/v4local rw,relatime shared:7 - nfs4 srv:/x rw,vers=4.1,local_lock=flock
33 22 0:43 / /lustre rw shared:8 - lustre 10.0.0.2@tcp:/fs rw,localflock
34 22 0:44 / /lustre-ok rw shared:9 - lustre 10.0.0.2@tcp:/fs rw,flock
35 22 0:45 / /smb rw shared:10 - cifs //srv/share rw,nobrl
36 22 0:46 / /home/me/remote rw,nosuid shared:11 - fuse.sshfs me@host:/data rw,user_id=1000
37 22 0:47 / /with\\040space rw shared:12 - ext4 /dev/sdb1 rw
38 36 0:48 / /home/me/remote/inner rw shared:13 - tmpfs tmpfs rw
"""


def test_mountinfo_lines_are_parsed_with_their_escapes():
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 10
    assert mounts[8].point == "/with space"
    assert mounts[1] == Mount("/nfs/nolock", "nfs", "srv:/export", mounts[1].options)
    assert "nolock" in mounts[1].options and "relatime" in mounts[1].options


@pytest.mark.parametrize("path, local", [
    ("/data/cache", None),                              # ext4 on the root
    ("/nfs/nolock/cache", "nolock"),                    # NFSv3 without lockd
    ("/nfs/v4/cache", None),                            # NFSv4: real cross-host locks
    ("/nfs/v4local/cache", "local_lock=flock"),        # flock kept on the client only
    ("/lustre/cache", "localflock"),
    ("/lustre-ok/cache", None),
    ("/smb/cache", "nobrl"),
    ("/home/me/remote/cache", "FUSE network filesystem"),
    ("/home/me/remote/inner/cache", None),              # the longest mount point wins
    ("/with space/cache", None),
])
def test_host_local_locks_are_recognised_by_type_and_options(path, local):
    mount = mount_of(path, parse_mountinfo(MOUNTINFO))
    assert mount is not None
    reason = host_local_reason(mount)
    if local is None:
        assert reason is None, reason
    else:
        assert reason is not None and local in reason
