"""config.json from hostile writers, in-process: thousands of mutated configs (structure and raw
bytes) through everything create checks before it forks (spec.load, the init's check_config, the
cgroup path, the flags against the config). Each ends parsed or in a RuntimeFailure of one line
naming config.json; any other exception is a crash. The same inputs through the real CLI, with
the host checked afterwards, are hack/fuzz (tests/test_fuzz_cli.py runs a short pass).
"""
from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings

from fuzzing import CORPUS, as_bytes, inputs, load_seeds, one_line_error
from runtime.errors import RuntimeFailure

SEEDS = load_seeds("config")
EXAMPLES = int(os.environ.get("RUNP_FUZZ_EXAMPLES", "1500"))


@pytest.fixture(scope="module")
def fuzz_bundle(tmp_path_factory, rootfs_template):
    b = tmp_path_factory.mktemp("fuzz") / "bundle"
    b.mkdir()
    (b / "rootfs").mkdir()
    for d in ("proc", "dev", "sys", "tmp"):
        (b / "rootfs" / d).mkdir()
    yield b
    shutil.rmtree(b, ignore_errors=True)


def check_config_bytes(bundle, data: bytes) -> None:
    """What `runp create` does with config.json before anything is made, in-process."""
    from runtime import spec as spec_mod
    from runtime.create import CreateOptions, validate_options
    from runtime.init import check_config
    from runtime.linux import cgroups
    (bundle / "config.json").write_bytes(data)
    try:
        spec = spec_mod.load(str(bundle))
        check_config(spec)
        validate_options(spec, CreateOptions(), foreground=False)
        cgroups.open_manager(spec.linux.cgroups_path, "fuzz")
    except RuntimeFailure as e:
        problem = one_line_error(str(e), ("config.json",))
        assert problem is None, problem


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(doc=inputs(SEEDS))
def test_config_mutations_in_process(fuzz_bundle, doc):
    check_config_bytes(fuzz_bundle, as_bytes(doc))


@pytest.mark.parametrize("path", sorted(p.name for p in CORPUS.glob("config-*.json")))
def test_config_corpus_in_process(fuzz_bundle, path):
    check_config_bytes(fuzz_bundle, (CORPUS / path).read_bytes())
