"""Prefect flows and tasks that wire pipeline/, model/ and storage/ together; the CLI."""

from flows.redaction import install_log_redaction

install_log_redaction()
