import pytest

from dist_vpg import pinning
from dist_vpg.config import ConfigError
from tests.helpers import run_ranks


def test_local_ranks_get_disjoint_cores_and_matching_threads():
    cores = [0, 1, 2, 3, 4, 5, 6, 7]
    plans = [pinning.plan(r, 2, "auto", cores=cores) for r in range(2)]
    assert plans[0].cores == (0, 1, 2, 3) and plans[1].cores == (4, 5, 6, 7)
    assert [p.threads for p in plans] == [4, 4] and not plans[0].warning
    three = [pinning.plan(r, 3, "auto", cores=cores) for r in range(3)]
    assert all(len(p.cores) == p.threads == 2 for p in three)
    assert len({c for p in three for c in p.cores}) == 6  # disjoint


def test_more_ranks_than_cores_warns_and_still_runs():
    plans = [pinning.plan(r, 3, "auto", cores=[0, 1]) for r in range(3)]
    assert all(p.threads == 1 for p in plans) and "3 ranks on 2 core(s)" in plans[0].warning


def test_explicit_list_and_none():
    assert pinning.plan(1, 2, [2, 3], cores=[0, 1, 2, 3]).cores == (3,)
    unpinned = pinning.plan(0, 2, "none", cores=[0, 1, 2, 3])
    assert unpinned.cores is None and unpinned.threads == 2
    assert pinning.plan(0, 1, "auto", threads=1, cores=[0, 1]).threads == 1
    with pytest.raises(ConfigError, match="cpu.affinity"):
        pinning.plan(0, 1, [7], cores=[0, 1])


def applied_worker() -> tuple:
    import os

    import psutil
    import torch

    from dist_vpg import distributed

    world = distributed.world_from_env()
    p = pinning.plan(world.local_rank, world.local_world_size, "auto")
    pinning.apply(p)
    return tuple(psutil.Process().cpu_affinity()), torch.get_num_threads(), os.environ["OMP_NUM_THREADS"]


@pytest.mark.dist
def test_two_local_ranks_are_pinned_apart():
    cores = pinning.available_cores()
    if len(cores) < 2:
        pytest.skip(f"needs 2 cores, this machine gives {len(cores)}")
    (a, ta, oa), (b, tb, ob) = run_ranks(2, applied_worker)
    assert set(a).isdisjoint(b) and len(a) == len(b) == len(cores) // 2
    assert ta == tb == len(cores) // 2 and oa == ob == str(len(cores) // 2)
