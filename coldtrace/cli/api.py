"""`coldtrace api`: serve the HTTP API."""

from __future__ import annotations

import argparse

from coldtrace.settings import Settings


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from coldtrace.bootstrap import api_app, api_collector
    from coldtrace.settings import port_taken

    host, port = args.host or settings.api_host, args.port or settings.api_port
    _check_tls_files(settings)
    # Bound here, before the app starts: a port taken is then one line, not uvicorn's log.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise port_taken("API_PORT", host, port, exc) from None
    app = api_app(settings)
    api_collector()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        ssl_certfile=settings.api_tls_certfile,  # HTTPS when both are set
        ssl_keyfile=settings.api_tls_keyfile,
    )
    uvicorn.Server(config).run([sock])
    return 0


def _check_tls_files(settings: Settings) -> None:
    """The HTTPS certificate and key load, or one line naming them (uvicorn would raise a
    bare FileNotFoundError, with a traceback, once the app had started)."""
    import ssl

    from coldtrace.settings import ENV_PREFIX, ConfigError

    cert, key = settings.api_tls_certfile, settings.api_tls_keyfile
    if cert is None or key is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"{ENV_PREFIX}API_TLS_CERTFILE / _KEYFILE: cannot load {cert} with {key} "
            f"({reason}): give the server's PEM certificate and its private key"
        ) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api", help="serve the HTTP API (OpenAPI at /docs)")
    p.add_argument("--host", help="default COLDTRACE_API_HOST")
    p.add_argument("--port", type=int, help="default COLDTRACE_API_PORT")
    p.set_defaults(func=cmd_api)
