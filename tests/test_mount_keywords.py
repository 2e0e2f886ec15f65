"""Every mount option keyword of config.md's list is a flag, a propagation or a mount
attribute, never filesystem data (issue #15): passed as data, "defaults", "silent", "loud",
"iversion" or "acl" make a tmpfs mount fail with EINVAL. Each keyword is mounted in a real
container and observed in its /proc/self/mountinfo, side by side with runc 1.1.5 where runc
knows the keyword (it lacks nosymfollow/symfollow, which came in runc 1.2).
"""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import run_container

RUNC = shutil.which("runc")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

# keyword -> (per-mount options that must show in mountinfo, superblock options that must
# show, options that must not show); runc 1.1.5 knows every keyword but the *symfollow ones
KEYWORDS = {
    "defaults": ((), (), ("ro",)),
    "silent": ((), (), ()),
    "loud": ((), (), ()),
    "iversion": ((), (), ()),
    "noiversion": ((), (), ()),
    "acl": ((), (), ()),
    "noacl": ((), (), ()),
    "lazytime": ((), ("lazytime",), ()),
    "nolazytime": ((), (), ("lazytime",)),
    "nosymfollow": (("nosymfollow",), (), ()),
    "symfollow": ((), (), ("nosymfollow",)),
    "rro": (("ro",), (), ()),
    "rnosuid": (("nosuid",), (), ()),
    "rnodev": (("nodev",), (), ()),
    "rnoexec": (("noexec",), (), ()),
    "rnoatime": (("noatime",), (), ()),
    "rstrictatime": ((), (), ("relatime", "noatime")),
    "rnodiratime": (("nodiratime",), (), ()),
    "rnosymfollow": (("nosymfollow",), (), ()),
    "rprivate": ((), (), ("shared:",)),
    "runbindable": ((), (), ()),  # the optional fields say "unbindable": checked below
}
RUNC_LACKS = {"nosymfollow", "symfollow", "rnosymfollow"}
# runc 1.1.5 passes "defaults" to the filesystem as data (EINVAL); runc 1.2 knows it
RUNC_DATA = {"defaults"}


def mountinfo_line(cmd: list[str], bundle, option: str, src) -> tuple[int, str]:
    """`run` a container with /kw mounted with `option`; its mountinfo line. A recursive
    keyword goes on an rbind of the host directory `src` (runc 1.1.5 applies mount
    attributes to bind mounts only), any other on a tmpfs."""
    if option.startswith("r"):
        m = {"type": "bind", "source": str(src), "options": ["rbind", option]}
    else:
        m = {"type": "tmpfs", "source": "tmpfs", "options": ["nosuid", option]}
    bundle.config["mounts"].append({"destination": "/kw", **m})
    bundle.set_args("sh", "-c", "grep ' /kw ' /proc/self/mountinfo")
    p = run_container(cmd, bundle, prefix="kw")
    return p.returncode, (p.stdout or p.stderr).decode()


def fields(line: str) -> tuple[set[str], set[str], str]:
    """The per-mount options, the superblock options and the optional fields of a line."""
    pre, post = line.split(" - ", 1)
    pre_f = pre.split()
    return set(pre_f[5].split(",")), set(post.split()[2].split(",")), " ".join(pre_f[6:])


@pytest.mark.parametrize("option", sorted(KEYWORDS))
def test_keyword_is_a_flag(runp, make_bundle, tmp_path, option):
    src = tmp_path / "src"
    src.mkdir()
    code, line = mountinfo_line(runp.cmd(), make_bundle(), option, src)
    assert code == 0, line
    per_mount, sb, optional = fields(line)
    want_mnt, want_sb, absent = KEYWORDS[option]
    assert set(want_mnt) <= per_mount, line
    assert set(want_sb) <= sb, line
    for a in absent:
        assert a not in per_mount and a not in sb and a not in optional, line
    assert ("unbindable" in optional) == (option == "runbindable"), line
    if RUNC is None or option in RUNC_LACKS:
        return
    code, theirs = mountinfo_line([RUNC, "--root", str(tmp_path / "runc-root")], make_bundle(),
                                  option, src)
    if option in RUNC_DATA:
        assert code != 0 and "invalid argument" in theirs, theirs
        return
    assert code == 0, theirs
    t_mnt, t_sb, t_optional = fields(theirs)
    assert (t_mnt, t_sb) == (per_mount, sb), (line, theirs)
