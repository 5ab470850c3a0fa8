"""gunicorn entry point: gunicorn hastack_app.wsgi:app"""

from hastack_app import create_app

app = create_app()
