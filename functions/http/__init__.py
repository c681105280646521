"""The HTTP adapter: the api's route table (`routes`), its handlers (`handlers`), the dispatcher and its
error answers (`api`), the request/response plumbing (`wire`), the response models (`models`) and the
OpenAPI document built from the table (`openapi`); the embedded server's ASGI adapter (`asgi`) and its
bounded HTTP/1.1 connections (`protocol`). The deployed entry points (`functions/main.py`) and the
embedded server (`functions/dev/embedded.py`) serve it."""
