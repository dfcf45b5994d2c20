"""The live control plane: store (SQLAlchemy), API (FastAPI), auth, the service loop."""
