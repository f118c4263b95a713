"""LangChain RAG retrieval over Chroma with a promptembed embedder.

The one-config swap: an existing pipeline's `HuggingFaceEmbeddings(...)` + `Chroma(...)`
becomes `open_vectorstore("promptembed.toml")`; change the model or template in the TOML.

    python examples/langchain_example.py [path/to/promptembed.toml]
"""

import sys
from pathlib import Path

from langchain_core.documents import Document

from promptembed import load_config
from promptembed.langchain import open_vectorstore

here = Path(__file__).parent
config = load_config(sys.argv[1] if len(sys.argv) > 1 else here / "promptembed.toml")
config = config.model_copy(
    update={"store": config.store.model_copy(update={"collection": "langchain-example"})}
)

store = open_vectorstore(config)  # a langchain_chroma.Chroma, embeddings wired in
docs = [
    Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": p.name})
    for p in sorted((here / "corpus").iterdir())
]
store.add_documents(docs, ids=[d.metadata["source"] for d in docs])  # ids: re-runs upsert

retriever = store.as_retriever(search_kwargs={"k": 3})
for question in ["How do bees tell each other where flowers are?", "如何在家里种番茄？"]:
    print(question)
    for doc in retriever.invoke(question):
        print("  ", doc.metadata["source"])
