"""The seed systems' own APIs, as thin layers over flagstaff.

=====================================  ==================================================
:mod:`flagstaff.compat.hanoi`          hanoi / rollout: ``Rollout(backend)`` and its backends
:mod:`flagstaff.compat.reddit`         reddit's ``r2.config.feature`` API over a pluggable world
:mod:`flagstaff.compat.zkswitch`       the ZooKeeper experiment switch (``DataWatcher``)
:mod:`flagstaff.compat.migrate`        importing the seeds' stored data as flagstaff flags
=====================================  ==================================================

Each layer stores its flags as ordinary flagstaff documents, with the seed's
bucketing mode (``"bucketing": "hanoi"``, ``"reddit"``, ``"modulo100"``…) so every
user keeps the bucket the original system gave them. Nothing in the core imports
this package. See ``docs/compat.md`` and ``docs/migration.md``.
"""
