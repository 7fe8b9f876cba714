"""HTTP: the public endpoints (one-click unsubscribe, sign-up) and the editor's preview."""
