"""Raw Chroma with promptembed's registered embedding function.

The one-config swap: `client.get_or_create_collection(name, embedding_function=...)`
becomes `open_collection("promptembed.toml")`. Later, any process that imports
`promptembed.chroma` can reopen the collection without passing the function.

    python examples/chroma_example.py [path/to/promptembed.toml]
"""

import sys
from pathlib import Path

from promptembed import load_config
from promptembed.chroma import open_collection

here = Path(__file__).parent
config = load_config(sys.argv[1] if len(sys.argv) > 1 else here / "promptembed.toml")
config = config.model_copy(
    update={"store": config.store.model_copy(update={"collection": "chroma-example"})}
)

collection = open_collection(config)  # documents/query_texts are embedded by promptembed
paths = sorted((here / "corpus").iterdir())
collection.upsert(
    ids=[p.name for p in paths],
    documents=[p.read_text(encoding="utf-8") for p in paths],
    metadatas=[{"source": p.name} for p in paths],
)
for question in ["What is a vector database?", "How should I train for a marathon?"]:
    result = collection.query(query_texts=[question], n_results=3)
    print(question)
    for source, distance in zip(result["ids"][0], result["distances"][0]):
        print(f"   {1 - distance:.3f} {source}")
