"""The contract between producers and workers: what both sides share, and nothing that runs.

Messages and the Celery task names (:mod:`.messages`), segment ids (:mod:`.ids`), the
vocabularies as ``StrEnum``s (:mod:`.states`), the Redis key names (:mod:`.keys`), the
segmenter both sides cut with (:mod:`.segmenter`), the enqueue protocol and its Celery
implementation (:mod:`.enqueue`, :mod:`.broker`), the job ledger (:mod:`.ledger`), the segment
payload store (:mod:`.payloads`), the settings (:mod:`.config`) and the one boundary every Redis
call crosses (:mod:`.redis_boundary`).

Dependencies point one way: ``producers`` and ``worker`` import ``pipeline``; ``pipeline``
imports ``storage`` (its errors and settings reader) and neither of them. Importing it builds
no Celery app and reads no environment.
"""
