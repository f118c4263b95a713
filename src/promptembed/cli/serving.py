"""`promptembed serve`: the OpenAI-compatible embeddings server."""

from __future__ import annotations

from typing import Annotated

import typer

from promptembed.cli.base import (
    ConfigOpt,
    DeviceOpt,
    ModelOpt,
    app,
    build_config,
    fail,
)
from promptembed.config import ServerConfig


@app.command("serve")
def serve_cmd(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8080).")] = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow a host beyond loopback without an API key (anyone may use it).",
        ),
    ] = False,
) -> None:
    """Serve the OpenAI embeddings API (POST /v1/embeddings) with dynamic batching."""
    try:
        cfg = build_config(config, model=model, device=device)
        given = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        if insecure:
            given["insecure"] = True
        server = ServerConfig.model_validate({**cfg.server.model_dump(), **given})
        cfg = cfg.model_copy(update={"server": server})
        cfg.server.check_binding()
        cfg.server.resolved_api_key()

        from promptembed.engine.embedder import PromptEmbedder  # torch: only when it runs
        from promptembed.server import run  # the `server` extra: named if missing

        # Loaded before binding, so that a bad model, cache or calibration file is one line.
        embedder = PromptEmbedder(config=cfg.embedder)
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    run(cfg, embedder=embedder)
