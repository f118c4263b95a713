"""LlamaIndex retrieval over Chroma with a promptembed embedder.

The one-config swap: `VectorStoreIndex(..., embed_model=HuggingFaceEmbedding(...))` over a
ChromaVectorStore becomes `open_index("promptembed.toml")`.

    python examples/llama_index_example.py [path/to/promptembed.toml]
"""

import sys
from pathlib import Path

from llama_index.core import Document
from llama_index.core.node_parser import SentenceSplitter

from promptembed import load_config
from promptembed.llama_index import open_index

here = Path(__file__).parent
config = load_config(sys.argv[1] if len(sys.argv) > 1 else here / "promptembed.toml")
config = config.model_copy(
    update={"store": config.store.model_copy(update={"collection": "llama-index-example"})}
)

index = open_index(config)  # VectorStoreIndex over ChromaVectorStore, PromptEmbedding inside
if index.vector_store._collection.count() == 0:
    docs = [
        Document(text=path.read_text(encoding="utf-8"), metadata={"source": path.name})
        for path in sorted((here / "corpus").iterdir())
    ]
    # All nodes in one insert: embedded in batches, not one document per call.
    nodes = SentenceSplitter(chunk_size=256, chunk_overlap=32).get_nodes_from_documents(docs)
    index.insert_nodes(nodes)

retriever = index.as_retriever(similarity_top_k=3)
for question in ["Why do volcanoes explode?", "绿茶应该用多少度的水泡？"]:
    print(question)
    for hit in retriever.retrieve(question):
        print(f"   {hit.score:.3f} {hit.node.metadata['source']}")
