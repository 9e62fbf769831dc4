"""The API's routes, one small module per resource; :func:`api.app.create_app` includes them."""
