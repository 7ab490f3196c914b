"""The HTTP adapter: the FastAPI app and one router per concern, over the use-cases."""
