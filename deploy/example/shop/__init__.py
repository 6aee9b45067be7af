"""An example Celery project tracked by taskjobs: what ``docker compose up`` runs."""
