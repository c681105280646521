"""The built-in backends' pure rules, one module each (`BackendRules` subclasses and their helpers):
`kubernetes`, `vertex`, `local`. Their units (`shared/adapters/registry.py`) build them from settings."""
