"""Gang placement: all-or-nothing, fewest nodes, one pod where possible, best fit."""

from helpers import fleet

from kraft.cluster.state import ClusterState


def test_best_fit_picks_the_fullest_node_that_fits():
    c = ClusterState(fleet(nodes=3, gpus=8))
    pool = c.pools[0]
    c.allocate(((0, 6),))  # node0: 2 free
    c.allocate(((1, 3),))  # node1: 5 free
    assert c.place(pool, 2) == ((0, 2),)
    assert c.place(pool, 4) == ((1, 4),)
    assert c.place(pool, 6) == ((2, 6),)


def test_multi_node_gang_prefers_one_pod_and_whole_nodes():
    c = ClusterState(fleet(nodes=4, gpus=4, pods=2))  # pods of 4 nodes: nodes 0-3, 4-7
    pool = c.pools[0]
    c.allocate(((0, 1),))  # pod 0 now has 3 idle nodes, pod 1 has 4
    placement = c.place(pool, 12)  # 3 whole nodes: pod 0 is the tightest that holds it
    assert sorted(n for n, _ in placement) == [1, 2, 3]
    assert all(k == 4 for _, k in placement)
    placement = c.place(pool, 16)  # 4 whole nodes: only pod 1
    assert {c.node_pod[n] for n, _ in placement} == {1}


def test_gang_spans_pods_only_when_it_must_and_is_all_or_nothing():
    c = ClusterState(fleet(nodes=2, gpus=4, pods=3))
    pool = c.pools[0]
    placement = c.place(pool, 20)  # 5 nodes: needs 3 pods
    assert sum(k for _, k in placement) == 20 and len(placement) == 5
    c.allocate(placement)
    assert c.place(pool, 8) is None  # 4 free GPUs left: nothing partial is handed out
    assert c.place(pool, 4) is not None


def test_remainder_goes_to_a_partly_used_node():
    c = ClusterState(fleet(nodes=4, gpus=4))
    pool = c.pools[0]
    c.allocate(((0, 2),))
    placement = c.place(pool, 6)  # one whole node + 2 GPUs on node0
    assert sorted(placement) == [(0, 2), (1, 4)]


def test_release_restores_indexes():
    c = ClusterState(fleet(nodes=2, gpus=4))
    pool = c.pools[0]
    p = c.place(pool, 8)
    c.allocate(p)
    assert c.free_gpus == 0 and pool.idle_nodes == 0
    c.release(p)
    assert c.free_gpus == 8 and pool.idle_nodes == 2 and c.place(pool, 8) is not None
