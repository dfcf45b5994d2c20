"""The live view of capacity: free GPUs per node, pod and pool, indexed for fast placement."""

from kraft.cluster.state import ClusterState, Placement, Pool

__all__ = ["ClusterState", "Placement", "Pool"]
