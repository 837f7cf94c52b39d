"""``zookeeper://[user:password@]host:port[,host:port…]/chroot[?options]``: flags in ZooKeeper.

One znode per flag, ``<chroot>/<name>``, holding the document text as UTF-8.
Any ZooKeeper client may write it: ``zkCli.sh set /experiments/x 1`` puts the
text ``1`` there, which the store delivers raw (the client reads a bare number
as a percentage). The package, one concept per module:

``store``     :class:`ZooKeeperStore`: reads, compare-and-set writes with their
              history, the connection and its deadlines
``_mirror``   the store's one set of watches, fanned out to subscribers
``_wire``     the znode layout, ``multiRead`` and kazoo's handler
``_options``  the URL, the ACL it asks for, keeping secrets out of kazoo's logs

``?readonly=1`` is applied by :func:`flagstaff.stores.open_store`, which wraps
the store in a :class:`~flagstaff.stores.wrappers.ReadOnlyStore`.
"""

from __future__ import annotations

from flagstaff.stores.zookeeper.store import MAX_ZNODE_BYTES, ZooKeeperStore

__all__ = ["MAX_ZNODE_BYTES", "ZooKeeperStore"]
