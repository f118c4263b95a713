"""Ingest: files to chunks to the store, run locally or on Ray through one pipeline.

* :mod:`~promptembed.ingest.readers`: decoding files (text, Markdown, PDF, HTML).
* :mod:`~promptembed.ingest.planning`: finding files, source keys, chunking, the plan.
* :mod:`~promptembed.ingest.pipeline`: embedding and writing the plan, idempotent and
  safe to kill.
"""
