//! Shared fixtures for the integration tests (see `integration/`).
