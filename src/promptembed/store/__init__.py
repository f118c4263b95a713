"""The store: Chroma collections, the guard on every write and read, and the read path.

* :mod:`~promptembed.store.guard`: may this collection take this embedder's vectors?
* :mod:`~promptembed.store.precomputed`: were these precomputed vectors made by it?
* :mod:`~promptembed.store.collections`: clients, existing collections, the write lock.
* :mod:`~promptembed.store.function`: promptembed's Chroma embedding function (imports
  chromadb; registered with Chroma as ``promptembed``) and opening a collection for writing.
* :mod:`~promptembed.store.reading`: ranked hits from an existing collection.

Knows no framework adapter.
"""
