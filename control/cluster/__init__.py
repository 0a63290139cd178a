"""Several nodes on one Redis (issue 13, item 2; docs/cluster.md).

Absent unless `cluster.redis_url` is set: the embedded single node uses none of it.
- `control.cluster.placement`: which node holds a meeting (the pure choice, `choose_node`,
  and the atomic claim in Redis, `Placements`);
- `control.cluster.nodes`: this node's registration with a heartbeat and a TTL, and the
  list of the living ones (`NodeRegistry`);
- `control.cluster.bus`: events every node must hear (`ClusterBus`, Redis pub/sub);
- `control.cluster.service`: the three on one connection, for the app (`Cluster`).
"""
