"""``churnstream api``: serve the HTTP API with uvicorn (uvloop + httptools)."""

from __future__ import annotations

from typing import Any

import typer


def uvicorn_log_config(level: str, log_format: str) -> dict[str, Any]:
    """Uvicorn's loggers through churnstream's formatter, in every worker process."""
    formatter = "JsonFormatter" if log_format == "json" else "KeyValueFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"core.logging.{formatter}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            name: {"handlers": [], "level": level, "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def api_command(
    host: str | None = typer.Option(None, "--host", help="Bind address (default: CHURN_API_HOST)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: CHURN_API_PORT)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
) -> None:
    """Serve the churn risk API: /customers/{id}/risk, /score, /models, /docs and more.

    Needs Redis (REDIS_URL) and the model registry (CHURN_MODEL_DIR); it starts without a
    champion and answers 503 on scoring routes until one is promoted.
    """
    import uvicorn

    from core.settings import get_settings
    from serving.config import get_api_settings

    settings = get_settings()
    api_settings = get_api_settings()
    uvicorn.run(
        "serving.main:create_app",
        factory=True,
        host=host or api_settings.host,
        port=port or api_settings.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_config=uvicorn_log_config(settings.log_level, settings.log_format),
        proxy_headers=True,
        access_log=False,  # serving.access logs requests (CHURN_API_ACCESS_LOG)
        server_header=False,
    )
