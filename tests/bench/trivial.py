"""The reference: a trivial functions-framework HTTP function, served exactly like our api."""

import functions_framework


@functions_framework.http
def trivial(request):  # type: ignore[no-untyped-def]
    request.get_data()
    return ({"ok": True}, 200)
